"""Documents to tensors: a bag of words or sequences of word indices, learned on training text.

ISLR's IMDb lab codes each review two ways: a binary bag of words over the 10,000 most
frequent words (one column per word, 1 if the document has it) for a network or the lasso, and
the sequence of its words' indices, padded to one length, for an embedding and an LSTM.
``Vectorizer`` does both. Its vocabulary is learned by ``fit`` on the training documents only and
re-applied by ``transform`` to new ones, as ``nf.Design`` does for factors; ``save``/``load``
keep it in a JSON file (data only, nothing that runs), so a fitted model's vocabulary goes with it.

Words are runs of letters, digits and apostrophes, lower-cased (``pattern`` changes that). In a
sequence, 0 is padding and 1 stands for every word outside the vocabulary (unseen in training,
or too rare); the vocabulary's words get 2, 3, ... by decreasing frequency.

>>> import nnfit as nf
>>> docs = ["The cat sat.", "The dog sat down.", "A cat, a dog!"]
>>> words = nf.text.Vectorizer(max_words=4).fit(docs)
>>> words.vocabulary_
['a', 'cat', 'dog', 'sat']
>>> words.transform(["a cat and a bird"])
tensor([[1., 1., 0., 0.]])
>>> seqs = nf.text.Vectorizer(max_words=4, mode="sequence", max_length=6).fit(docs)
>>> seqs.transform(["a cat and a bird"])          # padded at the front; 1 = not in the vocabulary
tensor([[0, 2, 3, 1, 2, 1]])
"""

from __future__ import annotations

import json
import re
from collections import Counter

from .errors import ArgumentError, ArgumentTypeError, DataError, ModelFileError

PAD, UNKNOWN = 0, 1
_FORMAT = "nnfit.text.Vectorizer/1"


class Vectorizer:
    """Bag of words (``mode="binary"`` or ``"count"``) or padded word-index sequences (``"sequence"``).

    Parameters
    ----------
    max_words : int
        The vocabulary: the ``max_words`` most frequent words of the training documents (ties
        broken alphabetically). 10,000 in the book.
    mode : str
        "binary" (1 if the document has the word), "count" (how many times), or "sequence".
    max_length : int
        Sequence mode: documents longer than this keep their last ``max_length`` words
        (``truncate="pre"``, Keras's default) or their first (``truncate="post"``); shorter ones
        are padded with 0 at the front (``pad="pre"``) or the end (``pad="post"``).
    lowercase : bool
        Lower-case before splitting into words.
    pattern : str
        The regular expression of one word.

    >>> import nnfit as nf
    >>> austen = nf.datasets.load("austen")
    >>> bag = nf.text.Vectorizer(max_words=5_000).fit(austen["text"])
    >>> bag.transform(austen["text"][:3]).shape
    torch.Size([3, 5000])
    """

    def __init__(self, max_words: int = 10_000, mode: str = "binary", max_length: int = 500, lowercase: bool = True,
                 pattern: str = r"[A-Za-z0-9']+", pad: str = "pre", truncate: str = "pre"):
        for name, value in (("max_words", max_words), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name} must be a positive whole number, not {value!r}.")
        if mode not in ("binary", "count", "sequence"):
            raise ArgumentError(f"Unknown mode {mode!r}; choose one of: binary, count, sequence.")
        for name, value in (("pad", pad), ("truncate", truncate)):
            if value not in ("pre", "post"):
                raise ArgumentError(f"{name} must be 'pre' or 'post', not {value!r}.")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ArgumentError(f"pattern {pattern!r} is not a regular expression: {error}.") from None
        self.max_words, self.mode, self.max_length = max_words, mode, max_length
        self.lowercase, self.pattern, self.pad, self.truncate = lowercase, pattern, pad, truncate

    # -- learning ------------------------------------------------------------------------------
    def words(self, document) -> list[str]:
        """The words of one document, as the vectorizer reads them.

        >>> import nnfit as nf
        >>> nf.text.Vectorizer().words("Don't panic: 42 towels!")
        ["don't", 'panic', '42', 'towels']
        """
        if not isinstance(document, str):
            raise DataError(f"A document must be text, not {type(document).__name__} ({document!r}).")
        return re.findall(self.pattern, document.lower() if self.lowercase else document)

    def fit(self, documents) -> "Vectorizer":
        """Learn the vocabulary from training documents (an iterable of strings)."""
        documents = _documents(documents)
        if not documents:
            raise DataError("Vectorizer.fit needs at least one document.")
        counts = Counter()
        for document in documents:
            counts.update(self.words(document))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: self.max_words]
        self.vocabulary_ = sorted(word for word, _ in ranked) if self.mode != "sequence" else [w for w, _ in ranked]
        self.counts_ = {word: counts[word] for word in self.vocabulary_}
        self.n_documents_ = len(documents)
        self._index()
        return self

    def _index(self):
        offset = 0 if self.mode != "sequence" else 2  # sequences: 0 padding, 1 unknown
        self.index_ = {word: offset + i for i, word in enumerate(self.vocabulary_)}

    @property
    def n_features(self) -> int:
        """Columns of a bag of words, or the size of the index range of a sequence (for an embedding)."""
        self._check_fitted()
        return len(self.vocabulary_) + (2 if self.mode == "sequence" else 0)

    # -- applying ------------------------------------------------------------------------------
    def transform(self, documents, sparse: bool = False):
        """Documents to a tensor: float32 (n, words) for a bag, int64 (n, max_length) for sequences.

        ``sparse=True`` (a bag of words) gives a scipy CSR matrix instead, for the lasso on many
        documents (scipy is then imported).
        """
        import torch

        self._check_fitted()
        documents = _documents(documents)
        if self.mode == "sequence":
            if sparse:
                raise ArgumentError("sparse=True is for a bag of words; sequences are dense (n, max_length).")
            out = torch.zeros(len(documents), self.max_length, dtype=torch.int64)
            for row, document in enumerate(documents):
                codes = [self.index_.get(word, UNKNOWN) for word in self.words(document)]
                codes = codes[-self.max_length:] if self.truncate == "pre" else codes[: self.max_length]
                if codes:
                    where = slice(self.max_length - len(codes), None) if self.pad == "pre" else slice(0, len(codes))
                    out[row, where] = torch.tensor(codes, dtype=torch.int64)
            return out
        rows, columns, values = [], [], []
        for row, document in enumerate(documents):
            found = Counter(self.index_[word] for word in self.words(document) if word in self.index_)
            for column, count in found.items():
                rows.append(row)
                columns.append(column)
                values.append(1.0 if self.mode == "binary" else float(count))
        if sparse:
            try:
                from scipy import sparse as scipy_sparse
            except ImportError:
                from .errors import MissingDependencyError

                raise MissingDependencyError("transform(sparse=True) needs scipy: pip install scipy") from None

            return scipy_sparse.csr_matrix((values, (rows, columns)), shape=(len(documents), len(self.vocabulary_)))
        out = torch.zeros(len(documents), len(self.vocabulary_), dtype=torch.float32)
        if rows:
            out[torch.tensor(rows), torch.tensor(columns)] = torch.tensor(values, dtype=torch.float32)
        return out

    def fit_transform(self, documents, sparse: bool = False):
        """``fit`` then ``transform`` on the same documents."""
        documents = _documents(documents)
        return self.fit(documents).transform(documents, sparse=sparse)

    def decode(self, codes) -> list[str]:
        """The words of one sequence of indices (padding left out; 1 reads as "<unknown>")."""
        self._check_fitted()
        if self.mode != "sequence":
            raise ArgumentError("decode reads sequences of word indices; this vectorizer makes a bag of words.")
        words = {code: word for word, code in self.index_.items()}
        return [words.get(int(code), "<unknown>") for code in codes if int(code) != PAD]

    # -- files ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything the fitted vectorizer knows, as JSON-ready data."""
        self._check_fitted()
        return {"format": _FORMAT, "max_words": self.max_words, "mode": self.mode, "max_length": self.max_length,
                "lowercase": self.lowercase, "pattern": self.pattern, "pad": self.pad, "truncate": self.truncate,
                "vocabulary": list(self.vocabulary_), "counts": [self.counts_[w] for w in self.vocabulary_],
                "n_documents": self.n_documents_}

    @classmethod
    def from_state(cls, state: dict) -> "Vectorizer":
        """A fitted vectorizer from ``state()``'s data."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ModelFileError(f"Not a saved nnfit text vectorizer (expected format {_FORMAT!r}).")
        try:
            vectorizer = cls(max_words=state["max_words"], mode=state["mode"], max_length=state["max_length"],
                             lowercase=state["lowercase"], pattern=state["pattern"], pad=state["pad"],
                             truncate=state["truncate"])
            vocabulary, counts = list(state["vocabulary"]), list(state["counts"])
        except (KeyError, TypeError, ArgumentError) as error:
            raise ModelFileError(f"A saved text vectorizer with a missing or wrong field: {error}") from None
        if (len(vocabulary) != len(counts) or len(set(vocabulary)) != len(vocabulary)
                or not all(isinstance(w, str) for w in vocabulary) or len(vocabulary) > vectorizer.max_words):
            raise ModelFileError("A saved text vectorizer whose vocabulary is damaged (repeated, non-text or too many words).")
        vectorizer.vocabulary_ = vocabulary
        vectorizer.counts_ = dict(zip(vocabulary, counts))
        vectorizer.n_documents_ = state.get("n_documents")
        vectorizer._index()
        return vectorizer

    def save(self, path) -> None:
        """Write the vocabulary and settings to a JSON file (atomically: never half-written)."""
        from .files import atomic_write

        atomic_write(path, json.dumps(self.state(), ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path) -> "Vectorizer":
        """Read a vectorizer that ``save`` wrote.

        >>> import os, tempfile, nnfit as nf
        >>> path = os.path.join(tempfile.mkdtemp(), "words.json")
        >>> nf.text.Vectorizer(max_words=3).fit(["b a b c c c"]).save(path)
        >>> nf.text.Vectorizer.load(path).vocabulary_
        ['a', 'b', 'c']
        """
        try:
            with open(path, encoding="utf-8") as handle:
                state = json.load(handle)
        except OSError as error:
            raise ModelFileError(f"Cannot read {str(path)!r}: {error.strerror or error}.") from None
        except (ValueError, UnicodeDecodeError):
            raise ModelFileError(f"{str(path)!r} is not a saved nnfit text vectorizer (not JSON).") from None
        return cls.from_state(state)

    def _check_fitted(self):
        if not hasattr(self, "vocabulary_"):
            raise ArgumentError("This Vectorizer has not learned a vocabulary yet: call fit(training_documents) first.")

    def __repr__(self):
        learned = f", {len(self.vocabulary_)} words learned" if hasattr(self, "vocabulary_") else ""
        extra = f", max_length={self.max_length}" if self.mode == "sequence" else ""
        return f"Vectorizer(max_words={self.max_words}, mode={self.mode!r}{extra}{learned})"


def _documents(documents) -> list:
    if isinstance(documents, str):
        raise ArgumentTypeError("Give a list (or Series) of documents, not one string; wrap it as [text].")
    if hasattr(documents, "tolist"):
        documents = documents.tolist()
    try:
        return list(documents)
    except TypeError:
        raise ArgumentTypeError(f"documents must be an iterable of strings, not {type(documents).__name__}.") from None
