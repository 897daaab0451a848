"""A fused trainer for nnfit's own networks: gradients and updates in closed form.

An ``MLP`` (Linear layers; relu, sigmoid, tanh or identity; dropout) trained with MSE,
cross-entropy or ``BinaryLogitLoss`` and SGD, RMSprop, Adam or AdamW has simple gradients.
The fused trainer computes them directly (``addmm``, in-place activations, torch's own
optimizer formulas on one flat buffer of all parameters): no autograd graph and no
``torch.optim`` object, so a step of a small network costs a fraction of an autograd step,
and a process never pays the second or so that torch's first optimizer takes to import
``torch._dynamo``.

It runs inside the ordinary training loop, as the network's own ``step(ctx)`` (luz's custom
step), so history, validation, seeds and callbacks such as ``Progress`` and ``EarlyStopping``
behave as on the autograd path. Dropout draws its masks exactly as ``nn.Dropout`` does, so a
seeded fit gives the same network on both paths, to float rounding.

``learner_for`` picks it: anything outside this family (other activations, losses,
optimizers or optimizer options, callbacks that may need autograd or a torch optimizer) keeps
the autograd ``Learner``.

>>> import torch, nnfit as nf
>>> from nnfit import fused
>>> learner = nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=3, hidden=8)
>>> type(fused.learner_for(learner)).__name__
'FusedLearner'
>>> X = torch.randn(64, 3); y = X.sum(dim=1, keepdim=True)
>>> fitted = fused.learner_for(learner).fit((X, y), epochs=2, seed=1, verbose=False)
>>> fitted.predict(X).shape
torch.Size([64, 1])
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.nn import functional as F

from . import callbacks as callbacks_module
from .learner import Learner
from .losses import BinaryLogitLoss
from .modules import MLP


def _relu_backward(grad, out):
    return torch.ops.aten.threshold_backward(grad, out, 0)


# g(z) in place, and the gradient through g from g's output (torch's own backward kernels).
_ACTIVATIONS = {
    "relu": (torch.relu_, _relu_backward),
    "sigmoid": (torch.sigmoid_, torch.ops.aten.sigmoid_backward),
    "tanh": (torch.tanh_, torch.ops.aten.tanh_backward),
    "identity": (None, None),
    "linear": (None, None),
}

# Optimizer options the closed-form updates implement (any other option keeps autograd).
_OPTIMIZER_OPTIONS = {
    torch.optim.SGD: {"lr", "momentum", "dampening", "weight_decay", "nesterov"},
    torch.optim.RMSprop: {"lr", "alpha", "eps", "weight_decay", "momentum"},
    torch.optim.Adam: {"lr", "betas", "eps", "weight_decay"},
    torch.optim.AdamW: {"lr", "betas", "eps", "weight_decay"},
}

# nnfit callbacks that only read the history or the weights once per epoch.
_EPOCH_CALLBACKS = ("Progress", "EarlyStopping", "CSVLogger", "TensorBoard")


def learner_for(learner: Learner, callbacks=None) -> Learner:
    """A ``FusedLearner`` when ``learner`` trains an ``MLP`` within the fused family, else ``learner``.

    The family: activations relu/sigmoid/tanh/identity; an MSE, cross-entropy (class codes,
    no weights or label smoothing) or ``BinaryLogitLoss`` loss; SGD, RMSprop, Adam or AdamW
    with the options in ``_OPTIMIZER_OPTIONS``; and callbacks that only act between epochs.
    """
    loss_gradient = _loss_gradient(learner.loss)
    if (
        learner.module is not MLP
        or loss_gradient is None
        or not _fusable_optimizer(learner.optimizer, learner.opt_hparams)
        or not all(name.lower() in _ACTIVATIONS for name in _activation_names(learner.hparams))
        or not all(_acts_between_epochs(callback) for callback in callbacks or [])
    ):
        return learner
    return FusedLearner(learner, loss_gradient)


class FusedLearner(Learner):
    """A ``Learner`` for ``MLP`` whose training steps compute gradients and updates in closed form.

    Made by ``learner_for`` from an ordinary learner; ``fit`` and everything after it is the
    ``Learner``'s own. Rows weighted with ``sample_weight`` or ``class_weight`` are trained by
    the ordinary learner.
    """

    def __init__(self, learner: Learner, loss_gradient):
        super().__init__(FusedMLP, loss=learner.loss, optimizer=learner.optimizer, metrics=learner.metrics)
        self.autograd = learner
        self.hparams = dict(learner.hparams)
        self.opt_hparams = dict(learner.opt_hparams)
        self.run_info = dict(learner.run_info)
        self.loss_gradient = loss_gradient

    def build(self) -> "FusedMLP":
        model = super().build()
        model.loss_gradient = self.loss_gradient
        return model

    def optimizers_for(self, model) -> dict:
        return {"opt": ClosedFormOptimizer(model.parameters(), self.optimizer, self.opt_hparams)}

    def fit(self, data, *args, **kwargs):
        """``Learner.fit``; the trained network comes back as a plain ``MLP``."""
        if kwargs.get("sample_weight") is not None or kwargs.get("class_weight") is not None:
            return self.autograd.fit(data, *args, **kwargs)
        fitted = super().fit(data, *args, **kwargs)
        fitted.model = fitted.ctx.model = fitted.model.as_mlp()
        return fitted


class FusedMLP(MLP):
    """An ``MLP`` whose training step (``step(ctx)``) needs no autograd.

    Its forward pass is ``MLP``'s; ``loss_gradient`` (set by ``FusedLearner``) maps
    (pred, target) to (loss, d loss / d pred). Training moves its parameters into the
    optimizer's flat buffer; ``FusedLearner.fit`` hands back ``as_mlp()``.
    """

    loss_gradient = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # per hidden layer: g in place, its backward, the dropout probability
        self.layer_steps = [(*_ACTIVATIONS[name], p) for name, p in zip(self.activations, self.dropouts)]

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
        # The optimizer holds the parameters as detached views (weight, bias per layer, output
        # last): no autograd graph and no nn.Module attribute lookups in the step.
        weights, biases = optimizer.params[0::2], optimizer.params[1::2]
        pred, saved, last_hidden = self._forward_saving(ctx.input, weights, biases)
        ctx.pred = pred
        ctx.loss, grad = self.loss_gradient(pred, ctx.target)
        self._backward(grad, saved, last_hidden, weights, optimizer.grads)
        optimizer.step()

    def _forward_saving(self, x, weights, biases):
        """The prediction, and per hidden layer what its gradient needs: (input, g's output, dropout noise)."""
        saved = []
        for weight, bias, (g, _, p) in zip(weights, biases, self.layer_steps):
            z = torch.addmm(bias, x, weight.t())
            a = z if g is None else g(z)
            noise = None
            if p > 0:  # as nn.Dropout: noise ~ Bernoulli(1 - p) / (1 - p), drawn from torch's generator
                noise = torch.empty_like(a).bernoulli_(1 - p).div_(1 - p)
            saved.append((x, a, noise))
            x = a if noise is None else a * noise
        return torch.addmm(biases[-1], x, weights[-1].t()), saved, x

    def _backward(self, grad, saved, last_hidden, weights, grads):
        """Write d loss / d parameter into ``grads`` (weight, bias per layer, as the parameters)."""
        torch.mm(grad.t(), last_hidden, out=grads[-2])
        torch.sum(grad, 0, out=grads[-1])
        for index in range(len(saved) - 1, -1, -1):
            x, a, noise = saved[index]
            grad = torch.mm(grad, weights[index + 1])
            if noise is not None:
                grad.mul_(noise)
            g_backward = self.layer_steps[index][1]
            if g_backward is not None:
                grad = g_backward(grad, a)
            torch.mm(grad.t(), x, out=grads[2 * index])
            torch.sum(grad, 0, out=grads[2 * index + 1])


class ClosedFormOptimizer:
    """torch.optim's SGD, RMSprop, Adam or AdamW update, applied to all parameters at once.

    The parameters (and their ``.grad``) are moved into one flat buffer each, so an update is
    a handful of elementwise operations on one tensor whatever the number of layers. The
    formulas and their order are those of torch's single-tensor implementations, so the
    parameters follow the torch optimizer's to float rounding. Options live in
    ``param_groups[0]`` as in torch (changing ``lr`` there takes effect at the next step).
    ``params`` and ``grads`` are per-parameter views of the buffers (``params`` detached, so
    nothing computed from them records an autograd graph).
    """

    def __init__(self, params, optimizer_class, options: dict):
        self.parameters = list(params)
        self.flat_params = torch.cat([param.detach().reshape(-1) for param in self.parameters])
        self.flat_grads = torch.zeros_like(self.flat_params)
        self.params, self.grads = [], []
        offset = 0
        for param in self.parameters:
            size = param.numel()
            param.data = self.flat_params[offset : offset + size].view_as(param)
            param.grad = self.flat_grads[offset : offset + size].view_as(param)
            self.params.append(param.detach())
            self.grads.append(param.grad)
            offset += size
        self.param_groups = [{**_defaults(optimizer_class), **options, "params": self.parameters}]
        self.imitates = optimizer_class  # the torch.optim class whose update this is
        self.update = {
            torch.optim.SGD: self._sgd,
            torch.optim.RMSprop: self._rmsprop,
            torch.optim.Adam: self._adam,
            torch.optim.AdamW: self._adamw,
        }[optimizer_class]
        self.steps = 0
        self.state = {}  # name -> flat buffer (momentum, running averages)

    def step(self):
        """Update the parameters from ``grads``."""
        self.steps += 1
        self.update(self.param_groups[0], self.flat_params, self.flat_grads)

    def _zeros(self, name):
        if name not in self.state:
            self.state[name] = torch.zeros_like(self.flat_params)
        return self.state[name]

    def _sgd(self, options, param, grad):
        if options["weight_decay"]:
            grad = grad.add(param, alpha=options["weight_decay"])
        momentum = options["momentum"]
        if momentum:
            if "momentum" not in self.state:
                self.state["momentum"] = grad.clone()
            else:
                self.state["momentum"].mul_(momentum).add_(grad, alpha=1 - options["dampening"])
            velocity = self.state["momentum"]
            grad = grad.add(velocity, alpha=momentum) if options["nesterov"] else velocity
        param.add_(grad, alpha=-options["lr"])

    def _rmsprop(self, options, param, grad):
        if options["weight_decay"]:
            grad = grad.add(param, alpha=options["weight_decay"])
        alpha = options["alpha"]
        square_avg = self._zeros("square_avg")
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        avg = square_avg.sqrt().add_(options["eps"])
        if options["momentum"] > 0:
            velocity = self._zeros("momentum")
            velocity.mul_(options["momentum"]).addcdiv_(grad, avg)
            param.add_(velocity, alpha=-options["lr"])
        else:
            param.addcdiv_(grad, avg, value=-options["lr"])

    def _adam(self, options, param, grad, decoupled: bool = False):
        lr, (beta1, beta2), decay = options["lr"], options["betas"], options["weight_decay"]
        if decay and decoupled:
            param.mul_(1 - lr * decay)
        elif decay:
            grad = grad.add(param, alpha=decay)
        exp_avg, exp_avg_sq = self._zeros("exp_avg"), self._zeros("exp_avg_sq")
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2 = 1 - beta2**self.steps
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(options["eps"])
        param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

    def _adamw(self, options, param, grad):
        self._adam(options, param, grad, decoupled=True)


# ------------------------------------------------------------------ losses
def _mse_gradient(pred, target):
    residual = pred - target
    return residual.square().mean(), residual.mul_(2 / residual.numel())


def _cross_entropy_gradient(logits, codes):
    log_probs = torch.log_softmax(logits, 1)
    loss = F.nll_loss(log_probs, codes)
    grad = log_probs.exp_().scatter_(1, codes.unsqueeze(1), -1.0, reduce="add")
    return loss, grad.div_(len(codes))


def _binary_gradient(logit, codes):
    target = codes.reshape(logit.shape).to(logit.dtype)
    loss = F.binary_cross_entropy_with_logits(logit.reshape(-1), target.reshape(-1))
    return loss, torch.sigmoid(logit).sub_(target).div_(logit.numel())


def _loss_gradient(loss):
    """The closed-form (loss, gradient) function for a loss the fused path knows, or None."""
    if type(loss) is nn.MSELoss and loss.reduction == "mean":
        return _mse_gradient
    if (
        type(loss) is nn.CrossEntropyLoss
        and loss.reduction == "mean"
        and loss.weight is None
        and loss.ignore_index == -100
        and loss.label_smoothing == 0
    ):
        return _cross_entropy_gradient
    if type(loss) is BinaryLogitLoss:
        return _binary_gradient
    return None


# ------------------------------------------------------------------ what qualifies
def _defaults(optimizer_class) -> dict:
    signature = inspect.signature(optimizer_class.__init__)
    return {name: p.default for name, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


def _fusable_optimizer(optimizer_class, options: dict) -> bool:
    """Known options with values torch accepts (torch.optim itself reports any others)."""
    known = _OPTIMIZER_OPTIONS.get(optimizer_class)
    if known is None or not set(options) <= known:
        return False
    settings = {**_defaults(optimizer_class), **options}
    betas = settings.get("betas", ())
    numbers = [settings[key] for key in known if key not in ("betas", "nesterov")] + list(betas)
    if not all(isinstance(v, (int, float)) and 0 <= v < float("inf") for v in numbers):
        return False
    if any(beta >= 1 for beta in betas):
        return False
    return not settings.get("nesterov") or (settings["momentum"] > 0 and settings["dampening"] == 0)


def _activation_names(hparams: dict) -> list:
    activation = hparams.get("activation", "relu")
    return [activation] if isinstance(activation, str) else list(activation)


def _acts_between_epochs(callback) -> bool:
    return any(type(callback) is getattr(callbacks_module, name, None) for name in _EPOCH_CALLBACKS)
