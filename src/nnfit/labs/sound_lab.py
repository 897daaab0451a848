"""Sound: spectrograms (``torch.stft``) and a CNN that tells four kinds of sound apart.

The course lists audio processing among deep learning's uses; ISLR has no sound lab and nnfit
ships no recorded, labelled audio, so this lab makes its sounds: SYNTHETIC half-second clips
sampled at 8 kHz, generated with numpy from the seed, in four classes,

- ``tone``: a steady note (200-2,000 Hz) with two quieter harmonics, fading in and out;
- ``chirp``: a note sliding up or down by 500-2,500 Hz over the clip;
- ``pulses``: a note switched on and off 3 to 6 times;
- ``noise``: white noise through a random band-pass filter (a hiss or a rumble);

each buried in white noise at a random signal-to-noise ratio between -5 and 10 dB, at a random
loudness. ``nf.modules.Spectrogram`` turns each clip into a log-power image (128 frequencies by
33 frames); ``nf.modules.CNN`` with two conv/pool blocks classifies the images; the linear
baseline is multinomial logistic regression on the same spectrogram pixels. There are no book
figures to print beside these.
"""

from __future__ import annotations

import numpy as np

from .report import Report, number

CLASSES = ["tone", "chirp", "pulses", "noise"]
RATE = 8000  # samples per second
LENGTH = 4000  # half a second
N_FFT, HOP = 256, 125  # 129 frequency bins (the Nyquist one dropped: 128), 33 frames
EPOCHS = {"cnn": 12, "logistic": 30}


def sounds(n_per_class: int, seed: int = 1):
    """(waves float32 (n, 4000), labels int64 (n,)): synthetic clips, classes in ``CLASSES`` order, shuffled."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH) / RATE
    waves, labels = [], []
    for label, kind in enumerate(CLASSES):
        for _ in range(n_per_class):
            f = rng.uniform(200, 2000)
            if kind == "tone":
                signal = sum(a * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi))
                             for k, a in ((1, 1.0), (2, 0.4), (3, 0.2)) if k * f < RATE / 2)
                signal = signal * np.sin(np.pi * t / t[-1]) ** 0.5
            elif kind == "chirp":
                sweep = rng.uniform(500, 2500) * rng.choice([-1, 1])
                start = np.clip(f, 200 + max(0, -sweep), 3800 - max(0, sweep))
                phase = 2 * np.pi * (start * t + sweep * t ** 2 / (2 * t[-1]))
                signal = np.sin(phase + rng.uniform(0, 2 * np.pi))
            elif kind == "pulses":
                beeps = rng.integers(3, 7)
                gate = (np.floor(t / t[-1] * (2 * beeps)) % 2 == 0).astype(float)
                signal = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * gate
            else:
                spectrum = np.fft.rfft(rng.standard_normal(LENGTH))
                freqs = np.fft.rfftfreq(LENGTH, 1 / RATE)
                low = rng.uniform(100, 2500)
                spectrum[(freqs < low) | (freqs > low + rng.uniform(300, 1500))] = 0
                signal = np.fft.irfft(spectrum, LENGTH)
            signal = signal / np.sqrt(np.mean(signal ** 2))
            snr_db = rng.uniform(-5, 10)
            noise = rng.standard_normal(LENGTH) * 10 ** (-snr_db / 20)
            waves.append((signal + noise) * rng.uniform(0.05, 1.0))
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.asarray(waves, dtype=np.float32)[order], np.asarray(labels, dtype=np.int64)[order]


def spectrograms(waves):
    """(n, 1, 128, 33) log-power images of the clips (the Nyquist bin dropped)."""
    import torch

    from ..modules import Spectrogram

    with torch.no_grad():
        return Spectrogram(n_fft=N_FFT, hop_length=HOP)(torch.as_tensor(waves))[:, :, : N_FFT // 2]


def fit_cnn(images, y, epochs, seed):
    import torch
    from torch import nn

    from ..train import metrics
    from ..train.learner import setup
    from ..modules import CNN

    return (setup(CNN, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[metrics.Accuracy()])
            .set_hparams(input_shape=tuple(images.shape[1:]), output_size=len(CLASSES), channels=(16, 32), hidden=64,
                         dropout=0.5)
            .set_opt_hparams(lr=0.001)
            .fit((images, y), epochs=epochs, batch_size=32, seed=seed, verbose=False, threads=1))


def fit_logistic(X, y, epochs, seed):
    import torch
    from torch import nn

    from ..train import metrics
    from ..train.learner import setup
    from ..modules import MLP

    return (setup(MLP, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[metrics.Accuracy()])
            .set_hparams(input_size=X.shape[1], hidden=[], output_size=len(CLASSES))
            .set_opt_hparams(lr=0.001)
            .fit((X, y), epochs=epochs, batch_size=32, seed=seed, verbose=False, threads=1))


def run(out="nnfit-lab", seed: int = 1, epochs: int | None = None, stream=None, n_train: int = 200,
        n_test: int = 100) -> dict:
    """Make ``n_train`` and ``n_test`` clips a class, fit the CNN and the logistic baseline, print accuracies."""
    import torch

    report = Report(stream)
    epochs = dict(EPOCHS) if epochs is None else {key: epochs for key in EPOCHS}
    train_waves, y = sounds(n_train, seed)
    test_waves, y_test = sounds(n_test, seed + 1000)  # other clips: the test set never shares a generator draw
    images, test_images = spectrograms(train_waves), spectrograms(test_waves)
    mean, sd = images.mean(), images.std()  # the training images' scale, applied to both
    images, test_images = (images - mean) / sd, (test_images - mean) / sd
    y, y_test = torch.from_numpy(y), torch.from_numpy(y_test)
    cnn = fit_cnn(images, y, epochs["cnn"], seed)
    logistic = fit_logistic(images.flatten(1), y, epochs["logistic"], seed)
    cnn_codes = cnn.predict(test_images).argmax(dim=1)
    figures = {"cnn_accuracy": float((cnn_codes == y_test).float().mean()),
               "logistic_accuracy": float((logistic.predict(test_images.flatten(1)).argmax(dim=1) == y_test).float().mean()),
               "chance": 1 / len(CLASSES)}

    report.say(f"Sound: {len(CLASSES)} classes of SYNTHETIC clips ({', '.join(CLASSES)}; numpy, seed {seed}), "
               f"{len(y)} training and {len(y_test)} test clips of {LENGTH / RATE:g} s at {RATE} Hz")
    report.say(f"  spectrograms: torch.stft, n_fft {N_FFT}, hop {HOP}, log power -> {tuple(images.shape[1:])} images")
    report.say()
    report.table(
        ["test accuracy", "nnfit", "book", "epochs"],
        [["CNN on spectrograms, 2 blocks (16, 32)", number(figures["cnn_accuracy"]), "-", epochs["cnn"]],
         ["multinomial logistic on spectrogram pixels", number(figures["logistic_accuracy"]), "-", epochs["logistic"]],
         ["chance", number(figures["chance"]), "-", "-"]],
    )
    report.finish(figures, "ISLR has no sound lab, hence no book figures")
    if out is None:
        return figures
    from .. import plot

    report.plots(out, {
        "sound_spectrograms.png": _examples_figure(test_images, y_test),
        "sound_cnn_confusion_matrix.png": plot.confusion_matrix(
            [CLASSES[i] for i in y_test.tolist()], [CLASSES[i] for i in cnn_codes.tolist()], levels=CLASSES,
            title="Synthetic sounds, test set: the CNN"),
        "sound_cnn_learning_curves.png": cnn.plot(),
    })
    return figures


def _examples_figure(images, labels):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(CLASSES), figsize=(3 * len(CLASSES), 3))
    for label, axis in enumerate(axes):
        k = int((labels == label).nonzero()[0])
        axis.imshow(images[k, 0].numpy(), origin="lower", aspect="auto", cmap="magma",
                    extent=(0, LENGTH / RATE, 0, RATE / 2))
        axis.set_title(CLASSES[label])
        axis.set_xlabel("seconds")
    axes[0].set_ylabel("Hz")
    figure.suptitle("Log-power spectrograms of synthetic test clips")
    figure.tight_layout()
    return figure
