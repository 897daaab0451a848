"""Training steps in closed form for one MLP or K stacked MLPs: no autograd, no torch.optim.

An MLP (linear layers; relu, sigmoid, tanh or identity; dropout) trained with MSE,
cross-entropy or binary cross-entropy on one logit has simple gradients. This module holds that
math once, for the fused single-model step (``nnfit.train.fused``) and for K models trained together
(``nnfit.train.ensemble``):

- ``Layers``: the forward pass that keeps what the backward pass needs, and the backward pass,
  writing every gradient in place (``addmm``/``mm`` for one model, ``baddbmm``/``bmm`` for K
  models whose weights are stacked, shape (K, in, out));
- ``LOSSES``: each loss and its gradient with respect to the predictions, optionally with a
  weight per row (sample weights, or the rows a model does not have);
- ``Optimizer``: torch.optim's SGD (momentum, dampening, nesterov), RMSprop, Adam and AdamW on
  one flat buffer of all parameters, with one learning rate and weight decay per model if
  wanted, and models that sit a step out.

>>> import torch
>>> from torch import nn
>>> from nnfit.train import closed_form
>>> net = nn.Linear(3, 1)
>>> opt = closed_form.Optimizer(net.parameters(), torch.optim.SGD, {"lr": 0.1})
>>> layers = closed_form.Layers([opt.params[0].t()], [opt.params[1]], [opt.grads[0].t()], [opt.grads[1]], [])
>>> X, y = torch.ones(4, 3), torch.zeros(4, 1)
>>> pred, loss = layers.train_step(X, y, closed_form.LOSSES["mse"])
>>> opt.step()
>>> bool(closed_form.LOSSES["mse"](net(X).detach(), y)[0] < loss)
True
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.nn import functional as F

from .hooks import Callback
from .losses import BinaryLogitLoss


_threshold_backward = torch.ops.aten.threshold_backward.default


def _relu_backward(grad, out):
    return _threshold_backward(grad, out, 0)


# name -> (g(z) in place, the gradient through g from g's output): torch's own backward kernels.
ACTIVATIONS = {
    "relu": (torch.relu_, _relu_backward),
    "sigmoid": (torch.sigmoid_, torch.ops.aten.sigmoid_backward.default),
    "tanh": (torch.tanh_, torch.ops.aten.tanh_backward.default),
    "identity": (None, None),
    "linear": (None, None),
}


# ------------------------------------------------------------------ the network
class Layers:
    """The layers of one MLP, or of K stacked MLPs, as the closed-form step sees them.

    ``weights[i]`` multiplies from the right, ``x @ weights[i] + biases[i]``: shape (in, out)
    for one model (an ``nn.Linear`` weight's transpose, a view) or (K, in, out) for K models;
    ``weight_grads`` and ``bias_grads`` are tensors of the same shapes that ``train_step``
    overwrites (a transposed view is written as such, without a copy). ``activations`` names
    each hidden layer's g; ``keep`` gives each hidden layer's probability to keep a unit under
    dropout: a number, or (K, 1, 1) with one per model (1 for no dropout). Dropout noise is
    drawn as ``nn.Dropout`` draws it (Bernoulli(keep) / keep, from torch's generator), so one
    seeded model equals its autograd twin; with ``uniform_noise=True`` as ``StackedMLP`` draws
    it (uniform >= 1 - keep), which costs a quarter as much on CPUs.
    """

    def __init__(self, weights, biases, weight_grads, bias_grads, activations, keep=None, uniform_noise=False):
        self.weights, self.biases = list(weights), list(biases)
        self.weight_grads, self.bias_grads = list(weight_grads), list(bias_grads)
        batched = self.weights[0].dim() == 3
        # one model: addmm and mm; K stacked models: their batched forms
        self._affine, self._matmul = (torch.baddbmm, torch.bmm) if batched else (torch.addmm, torch.mm)
        keep = [1.0] * len(activations) if keep is None else list(keep)
        self.hidden = [(*ACTIVATIONS[name], _dropout_keep(k)) for name, k in zip(activations, keep)]
        self.uniform_noise = uniform_noise
        # per layer, last first: (gradient of W, whether to write it as its transpose, gradient of
        # b, W^T for the gradient of the layer's input, the backward of the g below)
        self._backward_plan = []
        for index in range(len(self.weights) - 1, -1, -1):
            grad = self.weight_grads[index]
            transposed = not grad.is_contiguous() and grad.transpose(-1, -2).is_contiguous()  # written as (b^T a^T)^T
            self._backward_plan.append((
                grad.transpose(-1, -2) if transposed else grad, transposed, self.bias_grads[index],
                self.weights[index].transpose(-1, -2), self.hidden[index - 1][1] if index else None,
            ))

    def forward_saving(self, x, training: bool = True):
        """The prediction, and per layer what its gradient needs: (input, g's output, dropout noise)."""
        saved = []
        affine = self._affine
        for weight, bias, (g, _, keep) in zip(self.weights, self.biases, self.hidden):
            a = affine(bias, x, weight)
            if g is not None:
                a = g(a)
            noise = None
            if training and keep is not None:
                if self.uniform_noise:
                    noise = torch.rand_like(a).ge_(1 - keep).div_(keep)
                else:
                    noise = torch.empty_like(a).bernoulli_(keep).div_(keep)
            saved.append((x, a, noise))
            x = a if noise is None else a * noise
        saved.append((x, None, None))
        return affine(self.biases[-1], x, self.weights[-1]), saved

    def backward(self, grad, saved):
        """Write d loss / d weight and d loss / d bias of every layer, from ``grad`` = d loss / d prediction."""
        matmul = self._matmul
        keepdim = grad.dim() == 3
        index = len(saved) - 1
        for weight_grad, transposed, bias_grad, weight_t, g_backward in self._backward_plan:
            x = saved[index][0]
            if transposed:
                matmul(grad.transpose(-1, -2), x, out=weight_grad)
            else:
                matmul(x.transpose(-1, -2), grad, out=weight_grad)
            torch.sum(grad, -2, keepdim=keepdim, out=bias_grad)
            index -= 1
            if index >= 0:
                _, a, noise = saved[index]
                grad = matmul(grad, weight_t)
                if noise is not None:
                    grad.mul_(noise)
                if g_backward is not None:
                    grad = g_backward(grad, a)

    def train_step(self, x, target, loss_gradient, weight=None, total=None):
        """Forward, loss and backward on one batch; returns (prediction, loss) and leaves the gradients written.

        ``loss_gradient`` is one of ``LOSSES``; ``weight`` and ``total`` as there. The weights
        are detached views, so nothing records an autograd graph.
        """
        pred, saved = self.forward_saving(x)
        loss, grad = loss_gradient(pred, target, weight, total)
        self.backward(grad, saved)
        return pred, loss


def _dropout_keep(keep):
    """None when no unit is ever dropped; else the probability to keep one (a number or per-model tensor)."""
    if isinstance(keep, torch.Tensor):
        if bool((keep == 1).all()):
            return None
        if bool((keep == keep.reshape(-1)[0]).all()):
            return float(keep.reshape(-1)[0])
        return keep
    return None if keep == 1 else float(keep)


# ------------------------------------------------------------------ losses
# Each maps (pred, target, weight=None, total=None) to (loss, d loss / d pred). pred is (n, outputs)
# or (K, n, outputs); the loss is one number per model: the mean over rows, or with ``weight``
# (n,) or (K, n) sum(weight * row loss) / total (``total`` defaults to the sum of the weights, at
# least 1e-12, as ``nnfit.train.losses.SampleWeighted``; folds pass their row counts).
def _weighted(row_losses, grad, weight, total):
    if weight is None:
        return row_losses.mean(-1), grad.div_(row_losses.shape[-1])
    weight = weight.to(row_losses.dtype)
    if total is None:
        total = weight.sum(-1).clamp(min=1e-12)
    scale = weight / (total[..., None] if isinstance(total, torch.Tensor) else total)
    return (row_losses * scale).sum(-1), grad.mul_(scale[..., None])


def mse(pred, target, weight=None, total=None):
    """Squared error averaged over the outputs (nn.MSELoss), per row."""
    residual = pred - target
    if weight is None:
        loss = residual.square().mean() if residual.dim() == 2 else residual.square().mean((-2, -1))  # the same numbers
        return loss, residual.mul_(2 / (residual.shape[-1] * residual.shape[-2]))
    row = residual.square().mean(-1)
    return _weighted(row, residual.mul_(2 / residual.shape[-1]), weight, total)


def cross_entropy(logits, codes, weight=None, total=None):
    """Cross-entropy of the class codes (nn.CrossEntropyLoss)."""
    log_probs = torch.log_softmax(logits, -1)
    index = codes.unsqueeze(-1)
    if weight is None and logits.dim() == 2:
        loss = F.nll_loss(log_probs, codes)  # torch's own mean, in one operation
        return loss, log_probs.exp_().scatter_(-1, index, -1.0, reduce="add").div_(len(codes))
    row = log_probs.gather(-1, index).squeeze_(-1).neg_()
    return _weighted(row, log_probs.exp_().scatter_(-1, index, -1.0, reduce="add"), weight, total)


def binary(logit, codes, weight=None, total=None):
    """Binary cross-entropy of 0/1 codes from one logit per row (``nnfit.train.losses.BinaryLogitLoss``)."""
    target = codes.reshape(logit.shape).to(logit.dtype)
    grad = torch.sigmoid(logit).sub_(target)
    if weight is None:
        loss = F.binary_cross_entropy_with_logits(logit, target, reduction="none").mean((-2, -1))
        return loss, grad.div_(logit.shape[-2])
    row = F.binary_cross_entropy_with_logits(logit[..., 0], target[..., 0], reduction="none")
    return _weighted(row, grad, weight, total)


LOSSES = {"mse": mse, "cross_entropy": cross_entropy, "binary": binary}


# ------------------------------------------------------------------ optimizers
def defaults(optimizer_class) -> dict:
    """The keyword defaults of a torch.optim class, {"lr": 0.001, ...}."""
    signature = inspect.signature(optimizer_class.__init__)
    return {name: p.default for name, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


PER_MODEL = ("lr", "weight_decay")  # the options that may hold one value per model


class Optimizer:
    """torch.optim's SGD, RMSprop, Adam or AdamW update, applied to all parameters at once.

    The parameters (and their ``.grad``) are moved into one flat buffer each, so an update is
    a handful of elementwise operations on one tensor whatever the number of layers or models.
    The formulas and their order are those of torch's single-tensor implementations, so the
    parameters follow the torch optimizer's to float rounding. Options live in
    ``param_groups[0]`` as in torch (changing ``lr`` there takes effect at the next step).
    ``params`` and ``grads`` are per-parameter views of the buffers (``params`` detached, so
    nothing computed from them records an autograd graph).

    With ``n_models=K`` every parameter is stacked, shape (K, ...); ``lr`` and
    ``weight_decay`` may then hold one value per model, and ``step(active)`` leaves the models
    marked False as they were (a fold with no rows in this batch), each model keeping its own
    count of steps.
    """

    def __init__(self, params, optimizer_class, options: dict, n_models: int = 1):
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
        self.param_groups = [{**defaults(optimizer_class), **options, "params": self.parameters}]
        self.imitates = optimizer_class  # the torch.optim class whose update this is
        self.update = UPDATES[optimizer_class]
        self._param_list, self._grad_list = [self.flat_params], [self.flat_grads]
        self._buffers = _FlatBuffers(self)
        self.n_models = n_models
        self.steps = 0
        self.model_steps = None  # (K,) steps each model took, once some model sat one out
        self.state = {}  # name -> flat buffer (momentum, running averages)
        self._spread = {}  # option -> (the value given, the same per element)
        self._model_index = None  # the model of each element of the flat buffer, once needed

    # -------------------------------------------------------------- stepping
    def step(self, active=None):
        """Update the parameters from ``grads``; with ``active`` (K,) only the models marked True."""
        self.steps += 1
        options = self.param_groups[0]
        if not (isinstance(options["lr"], (float, int)) and isinstance(options["weight_decay"], (float, int))):
            options = {**options, **{name: self._per_element(name, options[name]) for name in PER_MODEL}}
        if active is None:
            if self.model_steps is None:
                self.update(options, self._param_list, self._grad_list, self._buffers, self.steps)
                return
            self.model_steps += 1
            self.update(options, self._param_list, self._grad_list, self._buffers, self._step_count())
            return
        if self.model_steps is None:
            self.model_steps = torch.full((self.n_models,), float(self.steps - 1), device=self.flat_params.device)
        self.model_steps += active.to(self.model_steps.dtype)
        before = {name: buffer.clone() for name, buffer in self.state.items()}
        params_before = self.flat_params.clone()
        self.update(options, self._param_list, self._grad_list, self._buffers, self._step_count())
        mask = active.to(torch.bool)[self._model_of()]
        self.flat_params.copy_(torch.where(mask, self.flat_params, params_before))
        for name, buffer in self.state.items():
            old = before.get(name)
            buffer.copy_(torch.where(mask, buffer, torch.zeros_like(buffer) if old is None else old))

    def _model_of(self):
        """For each element of the flat buffer, the model it belongs to (model k's block of each parameter)."""
        if self._model_index is None:
            models = torch.arange(self.n_models, device=self.flat_params.device)
            self._model_index = torch.cat([models.repeat_interleave(p.numel() // self.n_models) for p in self.params])
        return self._model_index

    def _per_element(self, name, value):
        """A number, or for one value per model a flat tensor of each element's model's value."""
        if isinstance(value, (int, float)):
            return value
        given, spread = self._spread.get(name, (None, None))
        if given is not value:
            values = torch.as_tensor(value, dtype=self.flat_params.dtype, device=self.flat_params.device).reshape(-1)
            if bool((values == values[0]).all()):
                spread = float(values[0])
            else:
                spread = values[self._model_of()]
            self._spread[name] = (value, spread)
        return spread

    def _step_count(self):
        """Steps taken: a number, or per element once models have taken different numbers of steps."""
        if self.model_steps is None:
            return self.steps
        return self.model_steps.clamp(min=1)[self._model_of()]

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """The running averages, step counts and options (without the parameters), as torch's optimizers give them."""
        state = {"steps": self.steps, "buffers": {name: buffer.clone() for name, buffer in self.state.items()}}
        if self.model_steps is not None:
            state["model_steps"] = self.model_steps.clone()
        options = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        return {"state": state, "param_groups": [options]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Go on from ``state_dict()``'s state."""
        state = state_dict["state"]
        self.steps = int(state["steps"])
        device = self.flat_params.device
        self.state = {name: torch.as_tensor(buffer).to(device).clone() for name, buffer in state["buffers"].items()}
        model_steps = state.get("model_steps")
        self.model_steps = None if model_steps is None else torch.as_tensor(model_steps).to(device).clone()
        for key, value in state_dict["param_groups"][0].items():
            self.param_groups[0][key] = tuple(value) if key == "betas" else value


# ------------------------------------------------------------------ the updates
# torch.optim's formulas, in the order of its single-tensor implementations, on lists of tensors
# with torch._foreach_* (on the CPU each runs torch's own kernel tensor by tensor, so the result
# is torch's, bit for bit): the flat buffer of ``Optimizer`` is a list of one, a torch optimizer's
# parameters (``torch_step``) a list of several. ``buffers`` holds the state: ``get(name)``, a list
# of tensors or None; ``zeros(name)``, made as zeros when new; ``put(name, list)``. ``steps``
# counts the steps taken (a number, or per element).
def _sgd(options, params, grads, buffers, steps):
    grads = _decayed(grads, params, options["weight_decay"])
    momentum = options["momentum"]
    if momentum:
        velocity = buffers.get("momentum")
        if velocity is None:  # the first step: the gradient itself
            velocity = buffers.put("momentum", [grad.clone() for grad in grads])
        else:
            torch._foreach_mul_(velocity, momentum)
            torch._foreach_add_(velocity, grads, alpha=1 - options["dampening"])
        grads = torch._foreach_add(grads, velocity, alpha=momentum) if options["nesterov"] else velocity
    _add_scaled(params, grads, options["lr"])


def _rmsprop(options, params, grads, buffers, steps):
    grads = _decayed(grads, params, options["weight_decay"])
    alpha = options["alpha"]
    square_avg = buffers.zeros("square_avg")
    torch._foreach_mul_(square_avg, alpha)
    torch._foreach_addcmul_(square_avg, grads, grads, value=1 - alpha)
    avg = torch._foreach_sqrt(square_avg)
    torch._foreach_add_(avg, options["eps"])
    if options["momentum"] > 0:
        velocity = buffers.zeros("momentum")
        torch._foreach_mul_(velocity, options["momentum"])
        torch._foreach_addcdiv_(velocity, grads, avg)
        _add_scaled(params, velocity, options["lr"])
    else:
        _add_ratio(params, grads, avg, options["lr"])


def _adam(options, params, grads, buffers, steps, decoupled: bool = False):
    lr, (beta1, beta2), decay = options["lr"], options["betas"], options["weight_decay"]
    if decoupled and _nonzero(decay):
        shrink = 1 - lr * decay
        torch._foreach_mul_(params, [shrink] if isinstance(shrink, torch.Tensor) else shrink)
    elif not decoupled:
        grads = _decayed(grads, params, decay)
    exp_avg, exp_avg_sq = buffers.zeros("exp_avg"), buffers.zeros("exp_avg_sq")
    torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sq, beta2)
    torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
    bias_correction1 = 1 - beta1**steps
    bias_correction2 = 1 - beta2**steps
    denom = torch._foreach_sqrt(exp_avg_sq)
    root = bias_correction2**0.5
    torch._foreach_div_(denom, [root] if isinstance(root, torch.Tensor) else root)
    torch._foreach_add_(denom, options["eps"])
    _add_ratio(params, exp_avg, denom, lr / bias_correction1)


def _adamw(options, params, grads, buffers, steps):
    _adam(options, params, grads, buffers, steps, decoupled=True)


UPDATES = {torch.optim.SGD: _sgd, torch.optim.RMSprop: _rmsprop, torch.optim.Adam: _adam, torch.optim.AdamW: _adamw}


class _FlatBuffers:
    """``Optimizer``'s state for the updates: each buffer a list of one flat tensor."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self._lists = {}  # name -> [its buffer], while it is the state's

    def get(self, name):
        buffer = self.optimizer.state.get(name)
        if buffer is None:
            return None
        found = self._lists.get(name)
        if found is None or found[0] is not buffer:
            found = self._lists[name] = [buffer]
        return found

    def zeros(self, name):
        state = self.optimizer.state
        if name not in state:
            state[name] = torch.zeros_like(self.optimizer.flat_params)
        return self.get(name)

    def put(self, name, buffers):
        self.optimizer.state[name] = buffers[0]
        return buffers


def _nonzero(value) -> bool:
    return bool(value) if not isinstance(value, torch.Tensor) else True


def _decayed(grads, params, decay):
    """grad + decay * param (L2 weight decay), decay a number or per element."""
    if isinstance(decay, torch.Tensor):
        return torch._foreach_addcmul(grads, params, [decay])
    return torch._foreach_add(grads, params, alpha=decay) if decay else grads


def _add_scaled(params, updates, lr):
    """param -= lr * update."""
    if isinstance(lr, torch.Tensor):
        torch._foreach_addcmul_(params, updates, [lr], value=-1)
    else:
        torch._foreach_add_(params, updates, alpha=-lr)


def _add_ratio(params, numerators, denominators, scale):
    """param -= scale * numerator / denominator."""
    if isinstance(scale, torch.Tensor):
        torch._foreach_addcdiv_(params, torch._foreach_mul(numerators, [scale]), denominators, value=-1)
    else:
        torch._foreach_addcdiv_(params, numerators, denominators, value=-scale)


# ------------------------------------------------------------------ torch's own optimizers, stepped by the updates
# Options a torch optimizer may hold when ``torch_step`` steps it, and the values they must have.
_OFF = {"foreach": (None, False, True), "maximize": (False,), "capturable": (False,), "differentiable": (False,),
        "fused": (None, False), "centered": (False,), "amsgrad": (False,)}
_TORCH_NAMES = {"momentum": "momentum_buffer"}  # a state's name in torch.optim, where it differs


def torch_step(optimizer):
    """What steps ``optimizer`` in the training loop: ``optimizer.step``, or for torch's own SGD,
    RMSprop, Adam and AdamW with the options the closed-form updates implement (``OPTIMIZER_OPTIONS``),
    no step hooks and nothing wrapping its ``step`` (such as a learning-rate scheduler), a
    ``TorchStep`` that does the same update on the same state, bit for bit, with a few
    ``torch._foreach_*`` operations and without torch.optim's per-call wrappers.

    >>> import torch
    >>> from nnfit.train import closed_form
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = torch.optim.SGD([w], lr=0.5)
    >>> step = closed_form.torch_step(opt)
    >>> w.grad = torch.ones(3); step()
    >>> type(step).__name__, w.detach().tolist()
    ('TorchStep', [0.5, 0.5, 0.5])
    """
    kind = type(optimizer)
    if kind not in UPDATES or "step" in vars(optimizer) or _has_step_hooks(optimizer) or not _groups_supported(optimizer):
        return optimizer.step
    return TorchStep(optimizer)


def _groups_supported(optimizer) -> bool:
    """Whether every parameter group asks only for options the closed-form updates implement."""
    kind = type(optimizer)
    known = OPTIMIZER_OPTIONS[kind]
    for group in optimizer.param_groups:
        for name, value in group.items():
            if name in ("params", "initial_lr"):
                continue
            if name == "decoupled_weight_decay":
                if bool(value) != (kind is torch.optim.AdamW):
                    return False
            elif name in known:
                if isinstance(value, torch.Tensor) or (name == "betas" and any(isinstance(b, torch.Tensor) for b in value)):
                    return False
            elif name not in _OFF or value not in _OFF[name]:
                return False
        if any(p.is_sparse or p.is_complex() for p in group["params"]):
            return False
    return True


def _has_step_hooks(optimizer) -> bool:
    from torch.optim import optimizer as module

    return bool(getattr(optimizer, "_optimizer_step_pre_hooks", None) or getattr(optimizer, "_optimizer_step_post_hooks", None)
                or getattr(module, "_global_optimizer_pre_hooks", None) or getattr(module, "_global_optimizer_post_hooks", None))


class TorchStep:
    """``optimizer.step()`` for a torch optimizer that ``torch_step`` accepts: the closed-form
    updates on its parameters and its own ``state`` (so ``state_dict``, checkpoints and
    schedulers see what torch's step leaves). A step in which a parameter has no gradient or
    no state yet (the first one) is torch's own."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.update = UPDATES[type(optimizer)]
        self._groups = None  # per group: (its dict, _TorchBuffers, its parameters' step tensors)
        self.counts_steps = type(optimizer) in (torch.optim.Adam, torch.optim.AdamW)
        self._no_grad = torch.no_grad()

    def __call__(self):
        optimizer = self.optimizer
        groups = self._groups
        if groups is None or groups[0][1].state is not optimizer.state or len(groups) != len(optimizer.param_groups):
            groups = self._groups = self._prepare()
            if groups is None:
                return self._torch()
        gradients = []
        for i, (group, *_) in enumerate(groups):  # every group can take this step, or torch takes it
            grads = [p.grad for p in group["params"]]
            if group is not optimizer.param_groups[i] or any(grad is None for grad in grads):
                return self._torch()
            gradients.append(grads)
        with self._no_grad:
            for (group, buffers, step_tensors), grads in zip(groups, gradients):
                steps = 0
                if step_tensors:
                    torch._foreach_add_(step_tensors, 1)
                    if self.counts_steps:  # Adam's bias correction: the count torch keeps (a CPU number)
                        steps = int(step_tensors[0])
                self.update(group, group["params"], grads, buffers, steps)

    def _torch(self):
        self._groups = None  # read the state again next time
        self.optimizer.step()

    def _prepare(self):
        """Per group its state as lists, or None while some parameter has no state yet (or,
        for Adam, parameters have taken different numbers of steps)."""
        optimizer = self.optimizer
        if not _groups_supported(optimizer):  # a group added or changed since: torch's own step
            return None
        groups = []
        for group in optimizer.param_groups:
            params = group["params"]
            if any(p.grad is not None and p.grad.is_sparse for p in params):  # sparse gradients: torch's own
                return None
            states = [optimizer.state.get(p) for p in params]
            if type(optimizer) is torch.optim.SGD:
                buffers = {state is not None and state.get("momentum_buffer") is not None for state in states}
                if len(buffers) > 1:  # some parameters have a momentum buffer, others not yet: torch's own
                    return None
                groups.append((group, _TorchBuffers(optimizer, params), []))
                continue
            if not all(states):
                return None
            step_tensors = [state["step"] for state in states]
            if self.counts_steps and len({float(step) for step in step_tensors}) > 1:
                return None
            groups.append((group, _TorchBuffers(optimizer, params), step_tensors))
        return groups


class _TorchBuffers:
    """A torch optimizer's per-parameter state for the updates, as lists of tensors."""

    def __init__(self, optimizer, params):
        self.state, self.params, self._lists = optimizer.state, params, {}

    def get(self, name):
        found = self._lists.get(name)
        if found is None:
            key = _TORCH_NAMES.get(name, name)
            states = [self.state.get(p, {}) for p in self.params]
            if not all(key in state for state in states):
                return None
            found = self._lists[name] = [state[key] for state in states]
        return found

    def zeros(self, name):
        found = self.get(name)
        if found is None:
            key = _TORCH_NAMES.get(name, name)
            for p in self.params:
                self.state[p].setdefault(key, torch.zeros_like(p, memory_format=torch.preserve_format))
            found = self.get(name)
        return found

    def put(self, name, buffers):
        key = _TORCH_NAMES.get(name, name)
        for p, buffer in zip(self.params, buffers):
            self.state[p][key] = buffer
        self._lists[name] = list(buffers)
        return buffers


# Optimizer options the closed-form updates implement (any other option keeps autograd).
OPTIMIZER_OPTIONS = {
    torch.optim.SGD: {"lr", "momentum", "dampening", "weight_decay", "nesterov"},
    torch.optim.RMSprop: {"lr", "alpha", "eps", "weight_decay", "momentum"},
    torch.optim.Adam: {"lr", "betas", "eps", "weight_decay"},
    torch.optim.AdamW: {"lr", "betas", "eps", "weight_decay"},
}


# ------------------------------------------------------------------ which fits qualify
def family_gradient(learner, callbacks=None):
    """The closed-form (loss, gradient) function when ``learner`` trains an ``nf.MLP`` this module
    can train, else None: activations relu/sigmoid/tanh/identity; an MSE, cross-entropy (class
    codes, no weights or label smoothing), ``BinaryLogitLoss`` or ``nn.BCEWithLogitsLoss`` (mean,
    no weights) loss; SGD, RMSprop, Adam or AdamW with the options in ``OPTIMIZER_OPTIONS``; and
    callbacks that say they need no autograd. Every front door asks this one question.

    >>> import nnfit as nf
    >>> from nnfit.train import closed_form
    >>> learner = nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=3, hidden=4)
    >>> closed_form.family_gradient(learner) is closed_form.mse
    True
    >>> closed_form.family_gradient(learner.set_hparams(activation="elu")) is None
    True
    """
    from ..modules import MLP

    gradient = loss_gradient(learner.loss)
    if (
        learner.module is not MLP
        or learner.hparams.get("embeddings")  # the closed-form step has no embedding layer
        or gradient is None
        or not _fusable_optimizer(learner.optimizer, learner.opt_hparams)
        or not all(name.lower() in ACTIVATIONS for name in _activation_names(learner.hparams))
        or not all(_acts_between_epochs(callback) for callback in callbacks or [])
    ):
        return None
    return gradient


def loss_gradient(loss):
    """The closed-form (loss, gradient) function for a loss the fused path knows, or None."""
    if type(loss) is nn.MSELoss and loss.reduction == "mean":
        return mse
    if (
        type(loss) is nn.CrossEntropyLoss
        and loss.reduction == "mean"
        and loss.weight is None
        and loss.ignore_index == -100
        and loss.label_smoothing == 0
    ):
        return cross_entropy
    if type(loss) is BinaryLogitLoss or (
        type(loss) is nn.BCEWithLogitsLoss
        and loss.reduction == "mean"
        and loss.weight is None
        and loss.pos_weight is None
    ):
        return binary
    return None


def _fusable_optimizer(optimizer_class, options: dict) -> bool:
    """Known options with values torch accepts (torch.optim itself reports any others)."""
    known = OPTIMIZER_OPTIONS.get(optimizer_class)
    if known is None or not set(options) <= known:
        return False
    settings = {**defaults(optimizer_class), **options}
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
    """Whether a callback says it needs no autograd (``Callback.needs_autograd``; subclasses inherit it)."""
    return isinstance(callback, Callback) and not callback.needs_autograd
