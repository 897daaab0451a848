"""ISLR 10.9.5, document classification, on a corpus nnfit can ship: which Austen novel is this paragraph from?

The book classifies IMDb reviews (positive or negative) two ways. A bag of words: each document
becomes 10,000 binary features, one per frequent word, fed to a network with two hidden layers
of 16 ReLU units (RMSprop, 20 epochs, batches of 512; here 10 epochs in batches of 64, as
2,400 documents make few batches of 512) and to the lasso (glmnet's logistic
regression); both reach about 88% test accuracy. A sequence model: each document becomes the
indices of its last 500 words, an embedding of 32 numbers per word feeds an LSTM of 32 units
(about 87%).

IMDb's licence does not let nnfit ship it, so this lab runs the same pipeline on the bundled
labelled corpus (``nf.datasets.load("austen")``: 3,000 paragraphs, 500 from each of six novels,
a six-class problem where a majority-class guess gets one in six right) with 80% of each novel's
paragraphs for training. The book's figures are printed for reference only: they are for IMDb,
two classes. With aclImdb on disk, ``nf.datasets.read_imdb(folder)`` gives frames the same code
can take (``text`` and ``sentiment`` columns).

The vocabulary is learned from the training paragraphs only (``nf.text.Vectorizer``). The lasso
is scikit-learn's L1 logistic regression (liblinear, one class against the rest), its penalty
chosen by 4-fold cross-validation on the training paragraphs.
"""

from __future__ import annotations

import numpy as np

from .report import Report, number

BOOK = {"network_accuracy": 0.88, "lasso_accuracy": 0.88, "lstm_accuracy": 0.87}  # IMDb, ISLR 2nd ed. 10.4-10.5
EPOCHS = {"network": 10, "lstm": 25}  # the book: 20 and 10, on 10 times more documents
MAX_WORDS = 10_000
MAX_LENGTH = 100  # the paragraphs have at most 200 words; the book's reviews were cut to 500
PENALTIES = (0.1, 0.3, 1.0, 3.0, 10.0)  # liblinear's C = 1 / lambda


def data(seed: int = 1, corpus=None, label: str = "novel"):
    """(training, testing) frames: 80% of each class's documents for training."""
    from ..datasets import load
    from ..sampling import split

    corpus = load("austen") if corpus is None else corpus
    return split(corpus, prop=0.8, seed=seed, strata=label)


def codes(frame, label):
    import torch

    return torch.tensor(frame[label].cat.codes.to_numpy(), dtype=torch.int64)


def fit_network(X, y, n_classes, epochs, seed):
    """Two hidden layers of 16 ReLU units on the bag of words (the book's IMDb network)."""
    import torch
    from torch import nn

    from ..train import metrics
    from ..train.learner import setup
    from ..modules import MLP

    return (setup(MLP, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.RMSprop, metrics=[metrics.Accuracy()])
            .set_hparams(input_size=X.shape[1], hidden=[16, 16], output_size=n_classes)
            .set_opt_hparams(lr=0.001)
            .fit((X, y), epochs=epochs, batch_size=64, seed=seed, verbose=False, threads=1))


def fit_lstm(S, y, vocabulary_size, n_classes, epochs, seed):
    """An embedding of 32 per word and an LSTM of 32 units (the book's), dropout 0.5 before the output.

    Adam (learning rate 0.002) in batches of 16: with 2,400 documents, the book's RMSprop in
    batches of 128 makes too few steps to learn much.
    """
    import torch
    from torch import nn

    from ..train import metrics
    from ..train.learner import setup
    from ..modules import LSTM

    return (setup(LSTM, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[metrics.Accuracy()])
            .set_hparams(vocab_size=vocabulary_size, output_size=n_classes, embedding_dim=32, hidden_size=32, dropout=0.5)
            .set_opt_hparams(lr=0.002)
            .fit((S, y), epochs=epochs, batch_size=16, seed=seed, verbose=False, threads=1))


def _l1_logistic(C: float):
    """scikit-learn's L1 logistic regression (liblinear), one class against the rest."""
    try:
        import sklearn
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("The documents lab's lasso needs scikit-learn: pip install scikit-learn") from None
    version = tuple(int(part) for part in sklearn.__version__.split(".")[:2] if part.isdigit())
    # scikit-learn 1.8 deprecated penalty="l1" in favour of l1_ratio=1; earlier ones need penalty.
    l1 = {"l1_ratio": 1.0} if version >= (1, 8) else {"penalty": "l1"}
    # liblinear visits coordinates in a random order: a fixed random_state makes the fit repeatable.
    return OneVsRestClassifier(LogisticRegression(C=C, solver="liblinear", random_state=0, **l1))


def lasso(X, y, X_test, seed: int = 1, folds: int = 4):
    """(test predictions, chosen C, cross-validated accuracy of each C) of the L1 logistic regression."""
    import warnings

    y = np.asarray(y)
    fold = np.random.default_rng(seed).permutation(np.arange(len(y)) % folds)
    scores = []
    with warnings.catch_warnings():  # liblinear's convergence notes on small folds: the CV score judges the fit
        warnings.filterwarnings("ignore", message="Liblinear failed to converge")
        for C in PENALTIES:
            right = 0
            for k in range(folds):
                model = _l1_logistic(C).fit(X[fold != k], y[fold != k])
                right += int((model.predict(X[fold == k]) == y[fold == k]).sum())
            scores.append(right / len(y))
        best = PENALTIES[int(np.argmax(scores))]
        return _l1_logistic(best).fit(X, y).predict(X_test), best, scores


def run(out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None, corpus=None, label: str = "novel",
        text: str = "text") -> dict:
    """Bag of words (network, lasso) and embedding + LSTM on the bundled corpus (or ``corpus``)."""
    from ..text import Vectorizer

    report = Report(stream)
    epochs = dict(EPOCHS) if epochs is None else {key: epochs for key in EPOCHS}
    training, testing = data(seed, corpus, label)
    levels = list(training[label].cat.categories)
    y, y_test = codes(training, label), codes(testing, label)

    bag = Vectorizer(MAX_WORDS, mode="binary").fit(training[text])
    network = fit_network(bag.transform(training[text]), y, len(levels), epochs["network"], seed)
    network_codes = network.predict(bag.transform(testing[text])).argmax(dim=1)
    lasso_codes, penalty, cv_scores = lasso(bag.transform(training[text], sparse=True), y.numpy(),
                                            bag.transform(testing[text], sparse=True), seed)
    words = Vectorizer(MAX_WORDS, mode="sequence", max_length=MAX_LENGTH).fit(training[text])
    lstm = fit_lstm(words.transform(training[text]), y, words.n_features, len(levels), epochs["lstm"], seed)
    lstm_codes = lstm.predict(words.transform(testing[text])).argmax(dim=1)

    majority = int(np.bincount(y.numpy(), minlength=len(levels)).argmax())
    figures = {
        "network_accuracy": float((network_codes == y_test).float().mean()),
        "lasso_accuracy": float((lasso_codes == y_test.numpy()).mean()),
        "lstm_accuracy": float((lstm_codes == y_test).float().mean()),
        "majority_accuracy": float((y_test == majority).float().mean()),
        "lasso_C": penalty, "lasso_cv_accuracy": dict(zip(PENALTIES, cv_scores)), "vocabulary": len(bag.vocabulary_),
    }
    source = "the bundled corpus (nf.datasets.load('austen'))" if corpus is None else "the corpus given"
    report.say(f"ISLR 10.9.5, documents: {label} from the words of each paragraph, {source}: {len(levels)} classes, "
               f"{len(training)} training and {len(testing)} test documents (seed {seed})")
    report.say(f"  bag of words: the {len(bag.vocabulary_)} most frequent training words (at most {MAX_WORDS}), binary; "
               f"sequences: the last {MAX_LENGTH} words' indices")
    report.say()
    report.table(
        ["test accuracy", "nnfit", "book (IMDb, 2 classes)", "epochs"],
        [["bag of words, network 16-16", number(figures["network_accuracy"]), number(BOOK["network_accuracy"], 2),
          epochs["network"]],
         [f"bag of words, lasso (C = {penalty:g} by CV)", number(figures["lasso_accuracy"]),
          number(BOOK["lasso_accuracy"], 2), "-"],
         ["embedding 32 + LSTM 32", number(figures["lstm_accuracy"]), number(BOOK["lstm_accuracy"], 2), epochs["lstm"]],
         ["majority class (a guess)", number(figures["majority_accuracy"]), "0.50", "-"]],
    )
    report.finish(figures)
    if out is None:
        return figures
    from .. import plot

    truth = [levels[i] for i in y_test.tolist()]
    report.plots(out, {
        "documents_network_confusion_matrix.png": plot.confusion_matrix(
            truth, [levels[i] for i in network_codes.tolist()], levels=levels, title="Test paragraphs: bag of words, network"),
        "documents_network_learning_curves.png": network.plot(),
        "documents_lstm_learning_curves.png": lstm.plot(),
    })
    return figures
