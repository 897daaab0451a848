"""Hooks: the named moments of the training loop, and ``Callback``, the base of what runs at them.

``loop.run`` calls the hooks in ``HOOKS`` order; ``Hooks`` calls each on the callbacks that
define it, re-raising an error as ``TrainingError`` that names the callback, the hook, the epoch
and the batch. The built-in callbacks are in ``callbacks`` (progress, early stopping, logs, ...)
and ``checkpoints`` (checkpoints, keep-best, resume); the divergence guard is in ``divergence``.

>>> from nnfit.train.hooks import HOOKS
>>> HOOKS[0], HOOKS[-1]
('on_fit_begin', 'on_fit_end')
"""

from __future__ import annotations

from ..errors import ArgumentTypeError, NnfitError, TrainingError

HOOKS = (
    "on_fit_begin",
    "on_epoch_begin",
    "on_train_begin",
    "on_train_batch_begin",
    "on_train_batch_after_pred",
    "on_train_batch_after_loss",
    "on_train_batch_before_backward",
    "on_train_batch_before_step",
    "on_train_batch_after_step",
    "on_train_batch_end",
    "on_train_end",
    "on_valid_begin",
    "on_valid_batch_begin",
    "on_valid_batch_after_pred",
    "on_valid_batch_after_loss",
    "on_valid_batch_end",
    "on_valid_end",
    "on_epoch_end",
    "on_early_stopping",
    "on_fit_end",
)


class Callback:
    """Base class of callbacks. Override hooks; keep state in ``state_dict`` for checkpoints.

    ``needs_autograd`` says whether the callback may touch what only the autograd path has
    (gradients, the loss's graph, a torch optimizer, batch-level state): True unless a class
    says otherwise. ``nf.mlp`` trains with closed-form gradients only when every callback
    says False, as ``Progress``, ``EarlyStopping``, ``CSVLogger`` and ``TensorBoard`` do (they
    read the history once per epoch); a subclass inherits the answer, so a subclass that
    touches gradients sets ``needs_autograd = True``.

    >>> import nnfit as nf
    >>> class Shout(nf.callbacks.Callback):
    ...     needs_autograd = False   # reads the epoch number only
    ...     def on_epoch_end(self, ctx):
    ...         print("epoch", ctx.epoch + 1, "done")
    >>> Shout().needs_autograd, nf.callbacks.Callback().needs_autograd
    (False, True)
    """

    weight = 0
    needs_autograd = True

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self):
        return f"{type(self).__name__}()"


for _hook in HOOKS:
    setattr(Callback, _hook, lambda self, ctx: None)


class Hooks:
    """Calls each hook on the callbacks that define it, lowest ``weight`` first; errors are
    re-raised as ``TrainingError`` naming the callback, the hook and where in the fit.

    >>> import types
    >>> from nnfit.train.hooks import Callback, Hooks
    >>> class Say(Callback):
    ...     def __init__(self, word, weight):
    ...         self.word, self.weight = word, weight
    ...     def on_epoch_end(self, ctx):
    ...         print(self.word)
    >>> hooks = Hooks([Say("second", 5), Say("first", -5)])
    >>> hooks("on_epoch_end", types.SimpleNamespace(epoch=0, iter=None))
    first
    second
    >>> hooks.table["on_train_begin"], len(hooks.table["on_epoch_end"])   # a hook nobody defines calls nothing
    ([], 2)
    """

    def __init__(self, callbacks):
        for cb in callbacks:
            if isinstance(cb, type):
                raise ArgumentTypeError(
                    f"callbacks takes instances; got the class {cb.__name__}. Write {cb.__name__}(...) instead."
                )
            if not isinstance(cb, Callback):
                raise ArgumentTypeError(f"{cb!r} is not an nnfit callback (subclass nf.callbacks.Callback).")
        self.callbacks = sorted(callbacks, key=lambda cb: cb.weight)
        # A callback defines a hook by a method or, like LRScheduler(call_on=), per instance.
        self.table = {
            hook: [getattr(cb, hook) for cb in self.callbacks if _defines(cb, hook)]
            for hook in HOOKS
        }

    def __call__(self, hook: str, ctx) -> None:
        for method in self.table[hook]:
            try:
                method(ctx)
            except NnfitError:  # already says what is wrong and where (a monitor name, a nested hook)
                raise
            except Exception as error:
                raise TrainingError(
                    f"{type(method.__self__).__name__}.{hook} failed {where(ctx)}: {type(error).__name__}: {error}"
                ) from error


def _defines(cb, hook: str) -> bool:
    return getattr(getattr(cb, hook), "__func__", None) is not getattr(Callback, hook)


def where(ctx) -> str:
    """'in epoch 3, batch 7' for error messages (1-based, as people count).

    >>> import types
    >>> from nnfit.train.hooks import where
    >>> where(types.SimpleNamespace(epoch=2, iter=6)), where(types.SimpleNamespace(epoch=0, iter=None))
    ('in epoch 3, batch 7', 'in epoch 1')
    """
    text = f"in epoch {ctx.epoch + 1}"
    if ctx.iter is not None:
        text += f", batch {ctx.iter + 1}"
    return text
