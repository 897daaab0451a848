"""A fused trainer for nnfit's own networks: gradients and updates in closed form.

An ``MLP`` (Linear layers; relu, sigmoid, tanh or identity; dropout) trained with MSE,
cross-entropy or ``BinaryLogitLoss`` and SGD, RMSprop, Adam or AdamW has simple gradients.
The fused trainer computes them directly (``addmm``, in-place activations, torch's own
optimizer formulas on one flat buffer of all parameters): no autograd graph and no
``torch.optim`` object, so a step of a small network costs a fraction of an autograd step,
and a process never pays the second or so that torch's first optimizer takes to import
``torch._dynamo``. The math is ``nnfit.train.closed_form``'s, the same that trains K stacked
networks at once (``nnfit.train.ensemble``); rows weighted with ``sample_weight`` or
``class_weight`` train in closed form too.

It runs inside the ordinary training loop, as the network's own ``step(ctx)`` (luz's custom
step), so history, validation, seeds and callbacks such as ``Progress`` and ``EarlyStopping``
behave as on the autograd path. Dropout draws its masks exactly as ``nn.Dropout`` does, so a
seeded fit gives the same network on both paths, to float rounding.

Every front door picks it by itself (``Learner.fit`` through ``learner.learner_for``, and so
``nf.setup(nf.MLP, ...).fit``, ``nf.mlp``, the estimators, CV and grids): anything outside
this family (other activations, losses, optimizers or optimizer options, callbacks that may
need autograd or a torch optimizer) keeps the autograd step.

>>> import torch, nnfit as nf
>>> learner = nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=3, hidden=8)
>>> X = torch.randn(64, 3); y = X.sum(dim=1, keepdim=True)
>>> fitted = learner.fit((X, y), epochs=2, seed=1, verbose=False)
>>> type(fitted.learner).__name__, type(fitted.ctx.opt).__name__, type(fitted.model).__name__
('FusedLearner', 'Optimizer', 'MLP')
"""

from __future__ import annotations

import torch

from . import closed_form
from ..modules import MLP

class FusedMLP(MLP):
    """An ``MLP`` whose training step (``step(ctx)``) needs no autograd.

    Its forward pass is ``MLP``'s; ``loss_gradient`` (set by ``FusedLearner``, one of
    ``closed_form.LOSSES``) maps (pred, target, row weights) to (loss, d loss / d pred).
    Training moves its parameters into the optimizer's flat buffer; ``FusedLearner.fit`` hands
    back ``as_mlp()``.
    """

    loss_gradient = None
    _layers = _layers_of = None  # the closed-form view of the layers, and the optimizer it was made from

    def as_mlp(self) -> MLP:
        """The same network as a plain ``MLP``, with its own copy of the weights."""
        with torch.random.fork_rng(devices=[]):  # building it draws initial weights: leave torch's generator alone
            plain = MLP(**self.architecture())
        plain.to(self.output.weight.device).load_state_dict(self.state_dict())
        return plain.train(self.training)

    def step(self, ctx):
        """Train on ``ctx``'s batch: forward, loss, backward and update; validation predicts as usual."""
        if not ctx.training:
            ctx.pred = self(ctx.input)
            ctx.loss = ctx.loss_fn(ctx.pred, ctx.target)
            return
        optimizer = ctx.opt
        layers = self._layers if self._layers_of is optimizer else self._layers_for(optimizer)
        ctx.pred, ctx.loss = layers.train_step(ctx.input, ctx.target, self.loss_gradient, ctx.weight)
        optimizer.step()

    def _layers_for(self, optimizer) -> closed_form.Layers:
        """The closed-form view of the optimizer's detached parameter views (weight, bias per layer, output last)."""
        params, grads = optimizer.params, optimizer.grads
        self._layers = closed_form.Layers(
            [w.t() for w in params[0::2]], params[1::2], [g.t() for g in grads[0::2]], grads[1::2],
            self.activations, [1 - p for p in self.dropouts],
        )
        self._layers_of = optimizer
        return self._layers


# torch.optim's SGD, RMSprop, Adam and AdamW on one flat buffer (nnfit.train.closed_form)
ClosedFormOptimizer = closed_form.Optimizer
