"""Networks: the course's perceptrons (``mlp``) and ready networks for sequences, images and sound (``ready``).

>>> import nnfit as nf
>>> nf.modules.MLP(3, hidden=[5]).sizes, nf.modules.LSTM.__module__
([5], 'nnfit.modules.ready')
"""

from .mlp import ACTIVATION_FORMULAS, ACTIVATIONS, MLP, check_architecture, embedding_size, hidden_sizes, per_layer
from .ready import CNN, LSTM, RNN, Spectrogram

__all__ = ["ACTIVATIONS", "ACTIVATION_FORMULAS", "CNN", "LSTM", "MLP", "RNN", "Spectrogram", "check_architecture",
           "embedding_size", "hidden_sizes", "per_layer"]
