import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

import nnfit as nf
from nnfit.errors import ArgumentError, ArgumentTypeError, DataError, ModelFileError

DOCS = ["The cat sat on the mat.", "The dog sat; the dog ran!", "A cat and a dog.", "Don't run, cat."]


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def test_vocabulary_is_the_most_frequent_training_words():
    counts = Counter(w for d in DOCS for w in words(d))
    expected = sorted(sorted(counts, key=lambda w: (-counts[w], w))[:5])
    vectorizer = nf.text.Vectorizer(max_words=5).fit(DOCS)
    assert vectorizer.vocabulary_ == expected == ["a", "cat", "dog", "sat", "the"]
    assert vectorizer.counts_ == {w: counts[w] for w in expected}


def test_binary_and_count_bags_by_hand():
    new = ["the cat, the cat, the zebra", "nothing known here"]
    binary = nf.text.Vectorizer(max_words=5).fit(DOCS)
    counts = nf.text.Vectorizer(max_words=5, mode="count").fit(DOCS)
    expected_counts = np.array([[Counter(words(d))[w] for w in binary.vocabulary_] for d in new], dtype=np.float32)
    np.testing.assert_array_equal(counts.transform(new).numpy(), expected_counts)
    np.testing.assert_array_equal(binary.transform(new).numpy(), (expected_counts > 0).astype(np.float32))
    sparse = binary.transform(new, sparse=True)
    np.testing.assert_array_equal(sparse.toarray(), (expected_counts > 0).astype(np.float64))
    assert binary.transform(new).dtype == torch.float32


def test_sequences_pad_truncate_and_map_unseen_words_to_one():
    vectorizer = nf.text.Vectorizer(max_words=3, mode="sequence", max_length=4).fit(DOCS)
    # frequencies: the 4, cat 3, dog 3 (then a, sat ... left out); indices 2, 3, 4 by rank
    assert vectorizer.vocabulary_ == ["the", "cat", "dog"] and vectorizer.n_features == 5
    codes = vectorizer.transform(["the zebra", "dog cat the dog cat the"])
    full = [vectorizer.index_.get(w, 1) for w in words("dog cat the dog cat the")]
    assert full == [4, 3, 2, 4, 3, 2]
    assert codes.tolist() == [[0, 0, 2, 1], [2, 4, 3, 2]]
    assert codes.tolist()[1] == full[-4:]  # truncate="pre" keeps the last words
    post = nf.text.Vectorizer(max_words=3, mode="sequence", max_length=4, pad="post", truncate="post").fit(DOCS)
    assert post.transform(["the zebra", "dog cat the dog cat the"]).tolist() == [[2, 1, 0, 0], full[:4]]
    assert codes.dtype == torch.int64
    assert vectorizer.decode(codes[0]) == ["the", "<unknown>"]


def test_vocabulary_comes_from_training_documents_only():
    training, testing = ["alpha beta beta"], ["gamma gamma gamma beta"]
    vectorizer = nf.text.Vectorizer(max_words=10, mode="sequence", max_length=4).fit(training)
    assert vectorizer.vocabulary_ == ["beta", "alpha"]
    assert vectorizer.transform(testing).tolist() == [[1, 1, 1, 2]]


def test_save_and_load_keep_the_vocabulary(tmp_path):
    vectorizer = nf.text.Vectorizer(max_words=4, mode="sequence", max_length=6).fit(DOCS)
    path = tmp_path / "words.json"
    vectorizer.save(path)
    again = nf.text.Vectorizer.load(path)
    assert again.vocabulary_ == vectorizer.vocabulary_ and again.mode == "sequence"
    assert torch.equal(again.transform(DOCS), vectorizer.transform(DOCS))
    state = json.loads(path.read_text())
    state["vocabulary"] = ["a", "a", "b", "c"]
    path.write_text(json.dumps(state))
    with pytest.raises(ModelFileError, match="vocabulary is damaged"):
        nf.text.Vectorizer.load(path)
    path.write_text("not json")
    with pytest.raises(ModelFileError, match="is not a saved nnfit text vectorizer"):
        nf.text.Vectorizer.load(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelFileError, match="expected format 'nnfit.text.Vectorizer/1'"):
        nf.text.Vectorizer.load(path)


def test_errors():
    with pytest.raises(ArgumentError) as error:
        nf.text.Vectorizer().transform(DOCS)
    assert str(error.value) == "This Vectorizer has not learned a vocabulary yet: call fit(training_documents) first."
    with pytest.raises(ArgumentTypeError, match="not one string; wrap it as"):
        nf.text.Vectorizer().fit("one document")
    with pytest.raises(DataError, match="A document must be text, not float"):
        nf.text.Vectorizer().fit(["fine", float("nan")])
    with pytest.raises(ArgumentError, match="Unknown mode 'tfidf'; choose one of: binary, count, sequence."):
        nf.text.Vectorizer(mode="tfidf")
    with pytest.raises(ArgumentError, match="sparse=True is for a bag of words"):
        nf.text.Vectorizer(mode="sequence").fit(DOCS).transform(DOCS, sparse=True)
