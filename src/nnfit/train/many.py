"""K models in one fit: stacked networks trained as one step of the ordinary loop.

An ensemble, the folds of a cross-validation and the cells of a grid are K networks of one
shape. They train together as one module whose every parameter and buffer has a leading
dimension K (``ensemble.StackedMLP`` for nnfit's own networks, in closed form; ``VmapStack``
for any module ``torch.func.vmap`` can run), driven by ``loop.run`` exactly as a single fit is:
the module's ``step(ctx)`` trains all K on a batch, ``ManyRows`` gives each model its own
rows, shuffling order and weights, and every callback sees one value per model
(``ctx.n_models``): progress, CSV logs, ``EarlyStopping`` and ``KeepBestModel`` per model (a
stopped model's steps are masked: ``ctx.active``), ``ModelCheckpoint`` and ``AutoResume``, and
the divergence guard (``ctx.on_divergence``: raise, or drop the model and train on).

>>> import torch, nnfit as nf
>>> from nnfit.train import many
>>> X = torch.randn(40, 2); y = X.sum(dim=1, keepdim=True)
>>> rows = many.ManyRows(X, y, [torch.arange(0, 30), torch.arange(10, 40)], seeds=[1, 2])
>>> xb, yb, batch_rows = next(rows.batches(8, shuffle=True))
>>> tuple(xb.shape), tuple(yb.shape), batch_rows.weight is None    # every model has 8 rows here
((2, 8, 2), (2, 8, 1), True)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ArgumentError, TrainingError


@dataclass
class RowWeights:
    """Which rows of a K-model batch count, and how much (``ctx.weight`` of a K-model fit).

    ``weight`` (K, b): each row's weight in its model's loss (0 for the padding of a model
    with fewer rows), or None when every row counts once; ``counts`` (K,): the rows each model
    really has in the batch (a tensor), or the batch's length; ``mask`` (K, b) bool, the rows a
    model has (None: all); ``active`` (K,) bool, the models with any row in the batch (None: all);
    ``total`` (K,): each model's loss denominator, its row count, when padding is masked and no
    sample weights are given (None: the mean, or sum(w * loss) / sum(w) with weights).

    >>> import torch
    >>> from nnfit.train.many import ManyRows
    >>> rows = ManyRows(torch.zeros(5, 1), torch.zeros(5, 1), [torch.arange(5), torch.arange(3)], seeds=[1, 2])
    >>> last = list(rows.batches(4, shuffle=False))[-1][2]
    >>> last.counts.tolist(), last.active.tolist()            # model 2 has no row left
    ([1, 0], [True, False])
    """

    weight: torch.Tensor | None = None
    counts: torch.Tensor | int = 0
    mask: torch.Tensor | None = None
    active: torch.Tensor | None = None
    total: torch.Tensor | None = None


class ManyRows:
    """The training (or validation) rows of K models, batched together.

    ``X`` (n, p) is shared by every model, or (K, n, p) gives each its own version (each
    fold scaled with its own training rows); ``y`` likewise (``per_model_y`` says which, by
    default as ``X``). ``rows``: one index tensor per
    model (models may have different numbers of rows: a shorter one is padded and masked).
    ``seeds`` seed each model's shuffling generator (``generators`` gives them instead);
    ``weight`` (n,) weighs the rows (sample and class weights). A batch is
    (x (K, b, p), y (K, b, ...), ``RowWeights``). ``block``, when given, is the batch size
    used whatever the loop asks (validation predicts in large blocks).

    >>> import torch
    >>> from nnfit.train.many import ManyRows
    >>> rows = ManyRows(torch.randn(10, 2), torch.randn(10, 1), [torch.arange(10)] * 3, seeds=[1, 2, 3])
    >>> rows.n_batches(4), len(rows), next(rows.batches(4, shuffle=True))[0].shape
    (3, 10, torch.Size([3, 4, 2]))
    """

    def __init__(self, X, y, rows, seeds=None, generators=None, weight=None, block=None, per_model_y=None):
        self.X, self.y, self.weight = X, y, weight
        self.rows = [torch.as_tensor(r, dtype=torch.int64, device=X.device) for r in rows]
        self.n_models = len(self.rows)
        if generators is None:
            generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds] if seeds is not None else None
        self.generators = generators
        self.block = block
        self.sizes = [len(r) for r in self.rows]
        self.n_max, self.n_min = max(self.sizes), min(self.sizes)
        if self.n_min == 0:
            raise ArgumentError("Every model needs at least one row to train on.")
        self.per_model_x = X.dim() == 3
        self.per_model_y = self.per_model_x if per_model_y is None else per_model_y
        self._order = torch.stack([torch.cat([r, r.new_zeros(self.n_max - len(r))]) for r in self.rows])
        n = X.shape[-2]  # every model trains on all n rows, in order (an ensemble): a fact checked once
        self._all_rows = self.n_min == self.n_max == n and bool((self._order == torch.arange(n, device=X.device)).all())
        self._sizes = torch.tensor(self.sizes, device=X.device, dtype=torch.float32)
        self._positions = torch.arange(self.n_max, device=X.device)
        self._models = torch.arange(self.n_models, device=X.device)[:, None]

    def __len__(self):
        return self.n_max

    def to(self, device) -> "ManyRows":
        moved = copy.copy(self)
        moved.X = self.X.to(device)
        moved.y = None if self.y is None else self.y.to(device)
        moved.weight = None if self.weight is None else self.weight.to(device)
        moved.rows = [r.to(device) for r in self.rows]
        moved._order, moved._sizes = self._order.to(device), self._sizes.to(device)
        moved._positions, moved._models = self._positions.to(device), self._models.to(device)
        return moved

    def _size(self, batch_size):
        if self.block is not None:
            return self.block
        return self.n_max if batch_size is None else batch_size

    def n_batches(self, batch_size, drop_last=False):
        size = self._size(batch_size)
        if drop_last and self.n_max >= size:
            return self.n_max // size
        return -(-self.n_max // size)

    def batches(self, batch_size, shuffle, generator=None, drop_last=False):
        """(x, y, RowWeights) per batch; each model shuffles its own rows with its own generator."""
        order = self._order
        if shuffle:
            device = self.X.device
            perms = [torch.randperm(n, generator=g).to(device) for n, g in zip(self.sizes, self.generators)]
            if self._all_rows:  # every model has every row: its order is its permutation
                order = torch.stack(perms)
            elif self.n_min == self.n_max:
                order = torch.stack([r[perm] for r, perm in zip(self.rows, perms)])
            else:
                order = torch.stack([torch.cat([r[perm], r.new_zeros(self.n_max - len(r))])
                                     for r, perm in zip(self.rows, perms)])
        size = self._size(batch_size)
        stop = self.n_max - self.n_max % size if drop_last and self.n_max >= size else self.n_max
        for start in range(0, stop, size):
            index = order[:, start : start + size]
            xb = self.X[self._models, index] if self.per_model_x else self.X[index]
            yb = self.y[self._models, index] if self.per_model_y else self.y[index]
            yield xb, yb, self._row_weights(index, start, size)

    def _row_weights(self, index, start, size) -> RowWeights:
        b = index.shape[1]
        rows = RowWeights(counts=b)
        if min(start + size, self.n_max) > self.n_min:  # some model has fewer rows: mask its padding
            rows.mask = self._positions[start : start + b][None, :] < self._sizes[:, None]
            rows.counts = rows.mask.sum(dim=1)
            rows.weight = rows.mask.to(torch.float32)
            if self.weight is None:  # the mean over the rows a model has (with weights: over their weights)
                rows.total = rows.counts.clamp(min=1)
            if start >= self.n_min:
                rows.active = torch.tensor([s > start for s in self.sizes], device=index.device)
        if self.weight is not None:
            w = self.weight[index]
            rows.weight = w if rows.weight is None else w * rows.weight
        return rows

    def subset(self, models) -> "ManyRows":
        """The rows of the models listed (0-based), as their own ``ManyRows``."""
        return ManyRows(self.X[models] if self.per_model_x else self.X, self.y[models] if self.per_model_y else self.y,
                        [self.rows[k] for k in models], weight=self.weight, block=self.block,
                        generators=None if self.generators is None else [self.generators[k] for k in models],
                        per_model_y=self.per_model_y)

    def describe(self) -> str:
        """The rows of each model, as a fingerprint shows them (AutoResume)."""
        from .checkpoints import hash_tensors

        return f"{self.n_models} models, rows {', '.join(map(str, self.sizes))} {hash_tensors(self.rows)}"


class Stacked:
    """The step of a module of K stacked models (a mixin: ``forward`` gives (K, b, outputs)).

    Training: ``train_batch(ctx, weight, total)`` returns (prediction, loss per model) with the
    gradients written; then the optimizer steps every model that is active and has rows in the
    batch. Validation predicts and scores each model on its own rows.

    >>> from nnfit.train.many import Stacked, VmapStack
    >>> from nnfit.train.ensemble import StackedMLP
    >>> issubclass(StackedMLP, Stacked) and issubclass(VmapStack, Stacked)
    True
    """

    n_models = 1

    def step(self, ctx):
        rows = ctx.weight if isinstance(ctx.weight, RowWeights) else None
        weight, total = (None, None) if rows is None else (rows.weight, rows.total)
        if not ctx.training:
            ctx.pred = self(ctx.input)
            ctx.loss = self.losses(ctx, ctx.pred, ctx.target, weight, total)
            return
        ctx.pred, ctx.loss = self.train_batch(ctx, weight, total)
        active = ctx.active_tensor
        if rows is not None and rows.active is not None:
            active = rows.active if active is None else active & rows.active
        step_models(ctx.opt, active)


def step_models(optimizer, active) -> None:
    """One optimizer step for the models marked True in ``active`` (None: all).

    >>> import torch
    >>> from nnfit.train.many import step_models
    >>> w = torch.nn.Parameter(torch.ones(2, 3)); w.grad = torch.ones(2, 3)
    >>> step_models(torch.optim.SGD([w], lr=0.5), torch.tensor([True, False]))
    >>> w.detach().tolist()                                   # model 2 sat the step out
    [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]
    """
    if active is None or hasattr(optimizer, "model_steps"):  # nnfit's closed-form optimizer masks itself
        optimizer.step(active) if active is not None else optimizer.step()
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    keep = ~active
    saved = [p.detach()[keep].clone() for p in params]
    # the masked models' running averages and momenta too (a shared step count, as Adam's, cannot be)
    state = [(value, value[keep].clone()) for p in params for value in optimizer.state.get(p, {}).values()
             if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == len(active)]
    for p in params:
        if p.grad is not None:
            p.grad[keep] = 0
    optimizer.step()
    with torch.no_grad():
        for p, old in zip(params, saved):
            p[keep] = old
        for value, old in state:
            value[keep] = old


class VmapStack(Stacked, nn.Module):
    """K copies of any module ``torch.func.vmap`` can run, as one module with stacked parameters.

    Model k is ``models[k]``; their parameters and buffers are stacked (K, ...) with
    ``torch.func.stack_module_state``, and one batched forward and backward trains all K
    (dropout draws different masks per model). ``loss`` (a torch loss) gives each model's
    batch loss; with row weights it is averaged with them (``losses.SampleWeighted``).
    ``unstack(k)`` gives model k back as its own module.

    >>> import torch, nnfit as nf
    >>> from nnfit.train.many import VmapStack
    >>> stack = VmapStack([torch.nn.Linear(3, 1) for _ in range(4)], torch.nn.MSELoss())
    >>> stack(torch.zeros(4, 5, 3)).shape, stack.unstack(2).weight.shape
    (torch.Size([4, 5, 1]), torch.Size([1, 3]))
    """

    def __init__(self, models: list, loss):
        super().__init__()
        from torch.func import stack_module_state

        self.n_models = len(models)
        self.models = models
        params, buffers = stack_module_state(models)
        self.names = list(params)
        self.stacked = nn.ParameterList(nn.Parameter(params[name].detach().clone()) for name in self.names)
        self.buffer_names = list(buffers)
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"buffer_{i}", buffers[name].detach().clone())
        self._base = [copy.deepcopy(models[0]).to("meta")]  # in a list: not a submodule that .to() would move
        self.loss = loss
        self._weighted = None

    def _state(self):
        params = dict(zip(self.names, self.stacked))
        buffers = {name: getattr(self, f"buffer_{i}") for i, name in enumerate(self.buffer_names)}
        return params, buffers

    def forward(self, x):
        from torch.func import functional_call, vmap

        if x.dim() == 2:
            x = x.expand(self.n_models, *x.shape)
        params, buffers = self._state()
        base = self._base[0].train(self.training)
        return vmap(lambda p, b, xk: functional_call(base, (p, b), (xk,)), randomness="different")(params, buffers, x)

    def losses(self, ctx, pred, target, weight=None, total=None):
        from torch.func import vmap

        if weight is None:
            losses = vmap(self.loss)(pred, target)
        else:
            if self._weighted is None:
                from .losses import SampleWeighted

                self._weighted = SampleWeighted(self.loss)
            losses = vmap(self._weighted)(pred, target, weight)
        if losses.shape != (self.n_models,):
            raise ArgumentError(f"The loss must give one number per batch; it gave shape {tuple(losses.shape[1:])}.")
        return losses

    def train_batch(self, ctx, weight, total):
        try:
            pred = self(ctx.input)
            losses = self.losses(ctx, pred, ctx.target, weight, total)
        except ArgumentError:
            raise
        except Exception as error:
            raise vmap_error(self.models[0], error, ctx) from error
        ctx.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        return pred.detach(), losses.detach()

    def subset(self, models) -> "VmapStack":
        """A stack of the models listed (0-based), with their weights."""
        return VmapStack([self.unstack(k).train(self.training) for k in models], self.loss)

    def unstack(self, k: int) -> nn.Module:
        """Model k (from 0) as its own module, with its trained weights."""
        model = self.models[k]
        params, buffers = self._state()
        model.load_state_dict({name: value[k].detach() for name, value in {**params, **buffers}.items()})
        return model.eval()


def vmap_error(model, error, ctx):
    """The error for a module that vmap cannot run, or that failed inside it.

    >>> import torch
    >>> from nnfit.train.many import vmap_error
    >>> error = vmap_error(torch.nn.Linear(1, 1), RuntimeError("vmap: cannot batch .item()"), None)
    >>> type(error).__name__, str(error)[:40]
    ('ArgumentError', 'Linear cannot be trained as several mode')
    """
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, (RuntimeError, ValueError, NotImplementedError)) and (
        "vmap" in text or "functorch" in text or "batched" in text.lower()
    ):
        return ArgumentError(
            f"{type(model).__name__} cannot be trained as several models at once (torch.func.vmap: {text}); "
            "use n_models=1, or write the module without in-place updates of its buffers."
        )
    return TrainingError(
        f"{type(model).__name__} failed in epoch {ctx.epoch + 1}, batch {ctx.iter + 1}: {type(error).__name__}: {text}"
    )


def model_metrics(metrics, n_models: int) -> list:
    """K independent copies of a list of metrics, one list per model (model 1's is ``metrics`` itself).

    >>> import nnfit as nf
    >>> from nnfit.train.many import model_metrics
    >>> lists = model_metrics([nf.metrics.MAE()], 3)
    >>> len(lists), lists[1][0] is lists[2][0]
    (3, False)
    """
    return [metrics] + [[copy.deepcopy(m) for m in metrics] for _ in range(n_models - 1)]


def fit(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, callbacks=(), min_epochs=None,
        device="cpu", names=None, on_divergence="error", verbose=False, seed=None, description=None,
        data_given=None, valid_metrics=None):
    """Train the K stacked models of ``model`` with ``loop.run``; return the loop's ``Context``.

    ``train`` and ``valid`` are ``ManyRows`` (valid may be None); ``metrics`` one list of
    metric objects per model (per-model metrics such as a fold's rescaled MAE; or
    ``model_metrics(list, K)``), ``valid_metrics`` those of validation (default: copies of
    ``metrics``). ``ctx.records`` holds (set, metric, epoch, value, model)
    rows; ``ctx.diverged`` {model index: DivergenceError} of the models dropped with
    ``on_divergence="drop"``; ``ctx.active`` which models were still training at the end.
    ``description`` ({field: text}, or a function of the context giving it) identifies the run
    for AutoResume. ``optimizer`` is the optimizer over ``model``'s parameters, or a function
    ``(stack, models)`` that builds it for a stack of the models listed (0-based).

    Under torchrun the K models are spread over the processes (``distributed.spread``: model k
    on process k % world), each trains its own, and every process gets all K back.

    >>> import torch, nnfit as nf
    >>> from nnfit.train import many
    >>> X = torch.randn(30, 2); y = X.sum(dim=1, keepdim=True)
    >>> stack = many.VmapStack([torch.nn.Linear(2, 1) for _ in range(3)], torch.nn.MSELoss())
    >>> rows = many.ManyRows(X, y, [torch.arange(30)] * 3, seeds=[1, 2, 3])
    >>> ctx = many.fit(stack, None, torch.optim.SGD(stack.parameters(), lr=0.1), rows, None, epochs=2,
    ...                batch_size=10, metrics=many.model_metrics([], 3))
    >>> len(ctx.get_metrics("train")["loss"]), ctx.active
    (3, [True, True, True])
    """
    from . import distributed

    check_callbacks(callbacks)
    if valid_metrics is None:
        valid_metrics = [[copy.deepcopy(m) for m in model_list] for model_list in metrics]
    names = names or [f"model {k + 1} of {model.n_models}" for k in range(model.n_models)]
    options = dict(min_epochs=min_epochs, device=device, names=names, on_divergence=on_divergence, verbose=verbose,
                   seed=seed, description=description, data_given=data_given, valid_metrics=valid_metrics)
    if distributed.active():
        return _spread(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, list(callbacks), options)
    if callable(optimizer):
        optimizer = optimizer(model, list(range(model.n_models)))
    return _run(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, callbacks, **options)


# The hooks a stacked step runs: between batches and epochs, not inside a step.
STEP_HOOKS = ("on_train_batch_after_pred", "on_train_batch_after_loss", "on_train_batch_before_backward",
              "on_train_batch_before_step", "on_train_batch_after_step", "on_valid_batch_after_pred",
              "on_valid_batch_after_loss")


def check_callbacks(callbacks) -> None:
    """Refuse a callback that acts inside a training step (gradient clipping, mixup, mixed
    precision, per-step schedules): a stack of K models takes its step as one, so it would not run.

    >>> import nnfit as nf
    >>> from nnfit.train.many import check_callbacks
    >>> check_callbacks([nf.callbacks.EarlyStopping()])
    >>> check_callbacks([nf.callbacks.GradientClip(1.0)])
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: GradientClip acts inside a training step (on_train_batch_before_step), which a stack of K models takes as one step, so it would not run; fit the models one at a time to use it.
    """
    from .callbacks import MixedPrecision
    from .hooks import Callback

    for callback in callbacks:
        hooks = [hook for hook in STEP_HOOKS if isinstance(callback, Callback)
                 and getattr(getattr(callback, hook, None), "__func__", None) is not getattr(Callback, hook)]
        if getattr(callback, "call_on", None) in STEP_HOOKS:
            hooks.append(callback.call_on)
        if isinstance(callback, MixedPrecision):
            hooks.append("its autocast")
        if hooks:
            raise ArgumentError(
                f"{type(callback).__name__} acts inside a training step ({hooks[0]}), which a stack of K models "
                "takes as one step, so it would not run; fit the models one at a time to use it."
            )


def _context(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, min_epochs=None, device="cpu",
             names=None, on_divergence="error", seed=None, valid_metrics=None, **_):
    from .loop import Context

    ctx = Context(model, loss_fn, {"opt": optimizer} if optimizer is not None else {}, train, valid, epochs,
                  1 if min_epochs is None else min_epochs, batch_size, metrics[0] if metrics else [],
                  valid_metrics[0] if valid_metrics else [], device, None)
    ctx.n_models = model.n_models
    ctx.model_metrics = {"train": metrics, "valid": valid_metrics}
    ctx.model_names = names
    ctx.on_divergence = on_divergence
    ctx.seed = seed
    return ctx


def _run(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, callbacks, description=None,
         data_given=None, verbose=False, **options):
    from . import callbacks as cb
    from .divergence import DivergenceGuard
    from .loop import run

    ctx = _context(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, **options)
    ctx.description = description(ctx) if callable(description) else dict(description or {})
    ctx.data_given = data_given or {"data": train, "validation data": valid}
    all_callbacks = [cb.MetricsRecorder(), DivergenceGuard()] + ([cb.Progress()] if verbose else []) + list(callbacks)
    return run(ctx, all_callbacks)


WRITERS = ("ModelCheckpoint", "AutoResume", "CSVLogger", "TensorBoard")


def _spread(model, loss_fn, optimizer, train, valid, epochs, batch_size, metrics, callbacks, options):
    """Under torchrun: this process trains its share of the K models; all get every model back."""
    import torch.distributed as dist

    from ..errors import DivergenceError, NnfitError
    from . import callbacks as cb
    from . import distributed

    K = model.n_models
    writers = [type(c).__name__ for c in callbacks if type(c).__name__ in WRITERS]
    if writers:
        raise ArgumentError(
            f"Under torchrun the {K} models of this fit are spread over the processes, and {writers[0]} would "
            "have each process write its own models' files to the same place; leave it out, or train the models "
            "in one process."
        )
    if not callable(optimizer):
        raise ArgumentError("Spreading K models over processes needs the optimizer as a function (stack, models).")
    distributed.init()
    world, rank = distributed.world_size(), distributed.rank()
    same = [None] * world
    dist.all_gather_object(same, train.describe() + " " + ", ".join(options["names"]))
    if len(set(same)) > 1:
        raise TrainingError("The processes were given different models or rows for this fit (each must build "
                            "the same K models: pass the same seed= and data to every process).")
    mine = distributed.spread(K)
    outcome = {"models": mine}
    if mine:
        sub = model.subset(mine)
        pick = lambda values: [values[k] for k in mine]  # noqa: E731
        sub_options = {**options, "names": pick(options["names"]), "valid_metrics": pick(options["valid_metrics"]),
                       "verbose": options["verbose"] and rank == 0}
        kept = [c for c in callbacks if rank == 0 or not isinstance(c, cb.Progress)]
        try:
            ctx = _run(sub, loss_fn, optimizer(sub, mine), train.subset(mine), None if valid is None else valid.subset(mine),
                       epochs, batch_size, pick(metrics), kept, **sub_options)
            number = {j + 1: k + 1 for j, k in enumerate(mine)}
            outcome.update(
                state={name: value.detach().cpu() for name, value in sub.state_dict().items()},
                records=[(*row[:4], number[row[4]]) for row in ctx.records],
                diverged={mine[j]: str(error) for j, error in ctx.diverged.items()},
                active=ctx.active, seconds=ctx.epoch_seconds,
            )
        except NnfitError as error:  # said on every process, so none waits for the others forever
            outcome["error"] = (type(error).__name__, str(error))
    gathered = [None] * world
    dist.all_gather_object(gathered, outcome)
    errors = [o["error"] for o in gathered if "error" in o]
    if errors:
        kind, text = errors[0]
        raise (DivergenceError if kind == "DivergenceError" else TrainingError)(text)
    state = model.state_dict()
    ctx = _context(model, loss_fn, None, train, valid, epochs, batch_size, metrics, **options)
    active = [True] * K
    with torch.no_grad():
        for o in gathered:
            for j, k in enumerate(o["models"]):
                for name, value in o["state"].items():
                    state[name][k].copy_(value[j].to(state[name].device))
                active[k] = o["active"][j]
            ctx.records += o.get("records", [])
            ctx.diverged.update({k: DivergenceError(text) for k, text in o.get("diverged", {}).items()})
    order = {key: i for i, key in enumerate(dict.fromkeys((row[0], row[1]) for row in ctx.records))}
    ctx.records.sort(key=lambda row: (row[2], order[(row[0], row[1])], row[4]))
    for k, training in enumerate(active):
        if not training:
            ctx.deactivate(k)
    ctx.stop_training = False
    ctx.epoch_seconds = max((o.get("seconds", []) for o in gathered), key=len)
    return ctx
