"""ISLR 10.9.2: handwritten digits, a multilayer network against multinomial logistic regression, and a CNN.

The book's network reads the 784 pixels (scaled to [0, 1]) through hidden layers of 256 and
128 ReLU units with dropout 0.4 and 0.3, and 10 outputs with the softmax (cross-entropy); it is
trained with RMSprop for 30 epochs in batches of 128, holding out 20% of the training digits
for validation. Multinomial logistic regression is the same network with no hidden layer.
The book trains on MNIST's 60,000 digits and reports test errors of 1.8% (network with dropout)
and 7.2% (multinomial logistic), Table 10.1. A CNN of two of the book's conv/pool blocks (32 and
64 filters; the book's CNN is for CIFAR-100) is added on the same digits.

This lab uses the 5,000 real MNIST digits nnfit ships (4,000 for training, 1,000 for testing),
so its accuracies are lower than the book's full-data figures; with the full data on disk,
``nf.datasets.read_mnist(folder)`` gives the same structure for the same code.
"""

from __future__ import annotations

from .report import Report, number

BOOK = {"network_accuracy": 1 - 0.018, "logistic_accuracy": 1 - 0.072}  # ISLR 2nd ed., Table 10.1
EPOCHS = {"network": 30, "logistic": 30, "cnn": 10}


def fit_network(images, hidden, dropout, epochs, seed):
    """A network on the flattened pixels (``hidden=[]``: multinomial logistic regression), the book's way."""
    import torch
    from torch import nn

    from ..train import metrics
    from ..train.learner import setup
    from ..modules import MLP

    return (setup(MLP, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.RMSprop, metrics=[metrics.Accuracy()])
            .set_hparams(input_size=images.x[0].numel(), hidden=hidden, output_size=10, dropout=dropout)
            .set_opt_hparams(lr=0.001)
            .fit((images.x.flatten(1), images.y), epochs=epochs, batch_size=128, valid_data=0.2, seed=seed,
                 verbose=False, threads=1))


def fit_cnn(images, epochs, seed):
    """``nf.modules.CNN`` with two blocks (32 and 64 filters), 128 hidden units, dropout 0.5."""
    import torch
    from torch import nn

    from ..train import metrics
    from ..train.learner import setup
    from ..modules import CNN

    return (setup(CNN, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.RMSprop, metrics=[metrics.Accuracy()])
            .set_hparams(input_shape=tuple(images.x.shape[1:]), output_size=10, channels=(32, 64), hidden=128, dropout=0.5)
            .set_opt_hparams(lr=0.001)
            .fit((images.x, images.y), epochs=epochs, batch_size=128, valid_data=0.2, seed=seed, verbose=False, threads=1))


def accuracy(fitted, images, flatten: bool) -> float:
    """Test accuracy from the predicted class codes (argmax of the scores)."""
    x = images.x.flatten(1) if flatten else images.x
    return float((fitted.predict(x).argmax(dim=1) == images.y).float().mean())


def run(out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None, digits=None) -> dict:
    """The three models on the bundled digits (or on ``digits``, an ``ImageData`` such as read_mnist's)."""
    from ..datasets import load

    report = Report(stream)
    digits = load("mnist") if digits is None else digits
    epochs = dict(EPOCHS) if epochs is None else {key: epochs for key in EPOCHS}
    network = fit_network(digits.train, [256, 128], [0.4, 0.3], epochs["network"], seed)
    logistic = fit_network(digits.train, [], 0.0, epochs["logistic"], seed)
    cnn = fit_cnn(digits.train, epochs["cnn"], seed)
    figures = {"network_accuracy": accuracy(network, digits.test, True),
               "logistic_accuracy": accuracy(logistic, digits.test, True),
               "cnn_accuracy": accuracy(cnn, digits.test, False)}

    report.say(f"ISLR 10.9.2, MNIST digits: {digits.source}, {len(digits.train.y)} training digits (20% of them for "
               f"validation) and {len(digits.test.y)} test digits (seed {seed})")
    report.say("  the book trained on all 60,000 digits: its figures are for 12 times more data")
    report.say()
    report.table(
        ["test accuracy", "nnfit", "book", "epochs"],
        [["network 256-128, dropout 0.4 / 0.3", number(figures["network_accuracy"]), number(BOOK["network_accuracy"]),
          epochs["network"]],
         ["multinomial logistic (no hidden layer)", number(figures["logistic_accuracy"]),
          number(BOOK["logistic_accuracy"]), epochs["logistic"]],
         ["CNN, 2 conv/pool blocks (32, 64)", number(figures["cnn_accuracy"]), "-", epochs["cnn"]]],
    )
    report.finish(figures)
    if out is None:
        return figures
    from .. import plot

    predicted = cnn.predict(digits.test.x).argmax(dim=1)
    names = digits.classes
    report.plots(out, {
        "mnist_network_learning_curves.png": network.plot(),
        "mnist_cnn_confusion_matrix.png": plot.confusion_matrix([names[i] for i in digits.test.y.tolist()],
                                                                [names[i] for i in predicted.tolist()], levels=names,
                                                                title="MNIST test digits: the CNN"),
        "mnist_digits.png": _digits_figure(digits.test, predicted, names),
    })
    return figures


def _digits_figure(images, predicted, names, count: int = 24):
    """The first test digits with their true and predicted labels."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, count // 3, figsize=(count // 3 * 1.2, 4.2))
    for k, axis in enumerate(axes.flat):
        axis.imshow(images.x[k, 0].numpy(), cmap="gray_r")
        truth, guess = names[int(images.y[k])], names[int(predicted[k])]
        axis.set_title(f"{guess}" if truth == guess else f"{guess} ({truth})", fontsize=9,
                       color="black" if truth == guess else "red")
        axis.axis("off")
    figure.suptitle("Test digits: the CNN's prediction (the truth in brackets when wrong)")
    figure.tight_layout()
    return figure
