"""Training past one process: PyTorch's own distributed engine (torchrun), data-parallel.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every fit runs data-parallel, and
``Learner.fit`` asks ``data_parallel`` for what that takes:

* every process holds the same data and draws the same shuffled order from the same seeded
  generator (``fit(seed=)`` is required: a fit without a seed is refused, since the processes
  would each draw their own batches); each process trains on its contiguous share of every
  batch (``Shard``), and all have the same number of batches;
* before every optimizer step the gradients are averaged across processes, weighted by each
  process's rows (by the sum of its sample weights, when fit has some), so that a step equals
  the single-process step on the whole batch: on the autograd path in
  ``on_train_batch_before_step`` (before ``GradientClip``), on a module's own ``step(ctx)``
  path (nnfit's closed-form MLP) inside its optimizer's ``step``;
* each epoch's training loss and metrics are averaged across processes, weighted by rows,
  right after ``MetricsRecorder`` records them; validation (which every process runs on all of
  the validation data) takes rank 0's values; so early stopping, divergence and checkpoint
  decisions agree on every process;
* the weights (and buffers) start as rank 0's; buffers (BatchNorm running statistics) are
  rank 0's again after every training epoch;
* only rank 0 shows progress and writes files: ``Progress``, ``CSVLogger``, ``TensorBoard`` and
  ``ModelCheckpoint`` are left out on the other ranks, and their ``AutoResume`` reads the
  checkpoint (after rank 0 has looked at it) but never writes or deletes it.

Outside torchrun ``active()`` is False and nothing here runs. ``fit(distributed=)`` chooses
for one call (``choice``): None follows torchrun as above, True requires it, False fits in this
process alone even under torchrun. See docs/distributed.md.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import datetime
import functools
import inspect
import os
import types

import torch

from ..errors import ArgumentError, TrainingError
from .callbacks import CSVLogger, Progress, TensorBoard
from .checkpoints import AutoResume, ModelCheckpoint
from .divergence import DivergenceGuard
from .hooks import Callback
from .data import InMemory, Loader
from .loop import rows_of


# The innermost ``choice``: None (no choice made: follow torchrun), True or False.
_CHOICE = contextvars.ContextVar("nnfit_distributed_choice", default=None)

# At exit each process waits this long at most for the others (``_close``).
_EXIT_WAIT = datetime.timedelta(seconds=60)
# Beside an NCCL group: a gloo group of the same processes that ``_close`` alone uses (``_exit_group``).
_EXIT_GROUP = None


def started_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1), whatever ``choice`` says.

    >>> from nnfit.train import distributed
    >>> distributed.started_by_torchrun()   # a plain Python process
    False
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether fits here train data-parallel: torchrun started this process as one of several
    (``WORLD_SIZE`` > 1), and the innermost ``choice`` is not False.

    >>> from nnfit.train import distributed
    >>> distributed.active()          # a plain Python process
    False
    """
    return _CHOICE.get() is not False and started_by_torchrun()


def check_choice(option):
    """``fit(distributed=)`` checked: None, True or False, anything else an ArgumentError.

    >>> from nnfit.train.distributed import check_choice
    >>> check_choice(None), check_choice(False)
    (None, False)
    >>> check_choice("auto")
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: distributed must be None (data-parallel when torchrun started this process), True (require torchrun) or False (fit in this process alone), not 'auto'.
    """
    if option is None or option is True or option is False:
        return option
    raise ArgumentError(
        "distributed must be None (data-parallel when torchrun started this process), True (require torchrun) "
        f"or False (fit in this process alone), not {option!r}."
    )


@contextlib.contextmanager
def choice(option=None):
    """``fit(distributed=option)`` for the code inside: whether its fits train data-parallel.

    * None (the default): no choice here; the enclosing ``choice`` holds, and outside any,
      fits are data-parallel when torchrun started this process (``WORLD_SIZE`` > 1);
    * True: data-parallel, required: outside torchrun it is an ArgumentError, raised on entry;
    * False: every fit inside trains in this process alone, even under torchrun: it joins no
      process group (``init`` does nothing), spreads no rows or models, and each process
      trains the whole fit on its own. A group that already exists is left as it is, unused.

    The innermost choice wins. It is a ``contextvars.ContextVar``: asyncio tasks started inside
    inherit it, a new thread starts without one. ``active()``, ``init()`` and ``spread()``
    follow it; ``rank()`` and ``world_size()`` still say where this process stands.

    >>> from nnfit.train import distributed
    >>> with distributed.choice(False):
    ...     distributed.active(), distributed.spread(3)
    (False, [0, 1, 2])
    >>> with distributed.choice(True):    # a plain Python process
    ...     pass
    Traceback (most recent call last):
    ...
    nnfit.errors.ArgumentError: distributed=True trains data-parallel in processes started by torchrun, and torchrun did not start this one (WORLD_SIZE is unset or 1); start it with torchrun --nproc_per_node=N (or nnfit fit --nproc N), or leave distributed= out.
    """
    option = check_choice(option)
    if option is None:
        yield
        return
    if option is True and not started_by_torchrun():
        raise ArgumentError(
            "distributed=True trains data-parallel in processes started by torchrun, and torchrun did not start this "
            "one (WORLD_SIZE is unset or 1); start it with torchrun --nproc_per_node=N (or nnfit fit --nproc N), "
            "or leave distributed= out."
        )
    token = _CHOICE.set(option)
    try:
        yield
    finally:
        _CHOICE.reset(token)


def follows_choice(front_door):
    """Decorate a front door with a ``distributed=`` parameter (``nf.mlp``, ``Learner.fit``,
    ``cross_validate``, ``grid``) so that it runs inside ``choice(distributed)``: one place
    reads the option, and every fit the call makes inside follows it.

    >>> from nnfit.train import distributed
    >>> @distributed.follows_choice
    ... def fit(epochs=1, distributed=None):
    ...     return active_now()
    >>> active_now = lambda: distributed.active()
    >>> fit(distributed=False), fit(3, False)
    (False, False)
    """
    signature = inspect.signature(front_door)
    if "distributed" not in signature.parameters:
        raise TypeError(f"{front_door.__qualname__} has no distributed= parameter to follow.")

    @functools.wraps(front_door)
    def run(*args, **kwargs):
        option = signature.bind_partial(*args, **kwargs).arguments.get("distributed")
        with choice(option):
            return front_door(*args, **kwargs)

    return run


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1`` (torchrun's ``RANK``; 0 in a plain process).

    >>> from nnfit.train import distributed
    >>> distributed.rank()
    0
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (torchrun's ``WORLD_SIZE``; 1 in a plain process).

    >>> from nnfit.train import distributed
    >>> distributed.world_size()
    1
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's number on its machine (torchrun's ``LOCAL_RANK``): the GPU it uses.

    >>> from nnfit.train import distributed
    >>> distributed.local_rank()
    0
    """
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend() -> str:
    """The process group's backend: gloo for CPU tensors, and NCCL for CUDA tensors where CUDA is there.

    >>> from nnfit.train import distributed
    >>> distributed.backend() in ("gloo", "cpu:gloo,cuda:nccl")
    True
    """
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def init() -> None:
    """Join the processes' group, once per process (later calls do nothing).

    Under torchrun the group comes from its environment (``MASTER_ADDR``, ``MASTER_PORT``,
    ``RANK``, ``WORLD_SIZE``); in a plain process it is a group of one, so the functions here
    can be tried without torchrun. The group is closed when the process exits. Inside
    ``choice(False)`` it joins nothing: the process fits alone.

    >>> from nnfit.train import distributed
    >>> distributed.init(); distributed.init()   # the second call does nothing
    >>> distributed.world_size(), distributed.rank()
    (1, 0)
    """
    dist = torch.distributed
    if not dist.is_available():
        raise TrainingError("This build of PyTorch has no torch.distributed, which training under torchrun needs.")
    if dist.is_initialized() or _CHOICE.get() is False:
        return
    if active() or "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend=backend())
    else:  # a group of one, in memory
        dist.init_process_group(backend=backend(), store=dist.HashStore(), rank=0, world_size=1)
    global _EXIT_GROUP
    _EXIT_GROUP = _exit_group()
    atexit.register(_close)


def _exit_group():
    """The gloo group ``_close`` waits on when the process group is not gloo alone (NCCL, or
    ``cpu:gloo,cuda:nccl``), made now, while every process is joining (making a group is itself
    collective); None on plain gloo, in a group of one, or in a build of PyTorch without gloo.

    NCCL matches collectives by their order and has no ``monitored_barrier``: a barrier on the
    NCCL group (an all-reduce of one number) could pair with a peer's last all-reduce of
    gradients. A group used for nothing else has nothing to pair with."""
    dist = torch.distributed
    if dist.get_world_size() == 1 or dist.get_backend() == "gloo" or not dist.is_gloo_available():
        return None
    return dist.new_group(backend="gloo", timeout=_EXIT_WAIT)


def _close() -> None:
    """At exit: wait (a minute at most) until every process is leaving, then close the group.
    Closing a group while another process still uses it can make gloo abort that process, for
    example when every process has just raised the same error, and a rank that finishes early
    would tear down NCCL's communicators under the others. On gloo the wait is a
    ``monitored_barrier`` on the group itself; on NCCL a ``barrier`` with a timeout on the gloo
    group ``_exit_group`` made for it (without gloo in this build: no wait, as before)."""
    global _EXIT_GROUP
    dist = torch.distributed
    if not dist.is_initialized():
        return
    if dist.get_world_size() > 1:
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=_EXIT_WAIT)
            elif _EXIT_GROUP is not None:
                dist.barrier(group=_EXIT_GROUP, timeout=_EXIT_WAIT)
        except Exception:  # a process that is gone already: close all the same
            pass
    _EXIT_GROUP = None
    dist.destroy_process_group()


def _pin_cuda_device() -> None:
    """Under torchrun, make 'cuda' mean this process's own GPU (cuda:LOCAL_RANK) before any fit
    places a model; with fewer GPUs than processes per machine, nothing is pinned."""
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())


if active():
    _pin_cuda_device()


def spread(n_models: int, rank_: int | None = None, world: int | None = None) -> list:
    """The models (0-based) of a K-model fit that this process would train: k with k % world == rank.

    ``rank_`` and ``world`` default to this process's (0 and 1 when ``active()`` is False: this
    process trains them all). A building block for spreading ``fit(n_models=K)`` over
    processes: ``many.fit`` trains model k on process k % world.

    >>> from nnfit.train.distributed import spread
    >>> spread(5, rank_=1, world=2), spread(5, rank_=0, world=2), spread(2, rank_=2, world=3)
    ([1, 3], [0, 2, 4], [])
    >>> spread(3)                     # one process trains them all
    [0, 1, 2]
    """
    from ..errors import check_positive_int

    n_models = check_positive_int("n_models", n_models)
    spreading = active()
    world = (world_size() if spreading else 1) if world is None else check_positive_int("world", world)
    rank_ = (rank() if spreading else 0) if rank_ is None else rank_
    if not (isinstance(rank_, int) and 0 <= rank_ < world):
        raise ArgumentError(f"rank must be a whole number from 0 to {world - 1}, not {rank_!r}.")
    return list(range(rank_, n_models, world))


# ---------------------------------------------------------------------- the data
class Shard:
    """This process's share of the data: the whole data's shuffled batches, each cut in
    ``world`` contiguous parts, part ``rank`` kept.

    For in-memory data the order is drawn exactly as ``InMemory.batches`` draws it (one
    ``randperm`` per epoch from the given generator), so every process that holds the same
    data and generator cuts the same batches. Any other source of the loop's own kind (such
    as ``nnfit.streaming.Streamed``, streamed from Parquet) gives its whole batches, drawn
    alike in every process from the same generator, and each is cut the same way (each
    process reads all of the rows). A batch of m rows gives rank r rows
    ``[r*m//world, (r+1)*m//world)``; a last batch with fewer rows than processes is left
    out, so that every process has rows in every batch and all have ``n_batches`` batches.
    ``len``, ``X``, ``y`` and ``weight`` are the whole data's.

    >>> import torch
    >>> from nnfit.train.data import InMemory
    >>> from nnfit.train.distributed import Shard
    >>> data = InMemory(torch.arange(10.0).reshape(10, 1), torch.zeros(10))
    >>> [x.reshape(-1).tolist() for x, _ in Shard(data, rank=1, world=2).batches(4, shuffle=False)]
    [[2.0, 3.0], [6.0, 7.0], [9.0]]
    >>> Shard(data, rank=1, world=2).n_batches(4), len(Shard(data, rank=1, world=2))
    (3, 10)
    """

    def __init__(self, data, rank: int, world: int):
        self.data, self.rank, self.world = data, rank, world

    def __len__(self):
        return len(self.data)

    @property
    def X(self):
        return self.data.X

    @property
    def y(self):
        return self.data.y

    @property
    def weight(self):
        return self.data.weight

    def to(self, device) -> "Shard":
        return Shard(self.data.to(device), self.rank, self.world)

    def _bounds(self, batch_size, drop_last):
        """(start, stop) of each global batch kept, as ``InMemory.batches`` cuts them."""
        n = len(self.data)
        size = n if batch_size is None else batch_size
        stop = n - n % size if drop_last and n >= size else n
        bounds = [(start, min(start + size, stop)) for start in range(0, stop, size)]
        return [(a, b) for a, b in bounds if b - a >= self.world]

    def _part(self, m):
        return self.rank * m // self.world, (self.rank + 1) * m // self.world

    def batches(self, batch_size, shuffle, generator=None, drop_last=False):
        """(x, y) or (x, y, w) for this process's part of each batch."""
        data = self.data
        if not isinstance(data, InMemory):  # a source that cuts its own batches: cut each of them
            for batch in data.batches(batch_size, shuffle, generator=generator, drop_last=drop_last):
                m = rows_of(batch[0])
                if m >= self.world:
                    lo, hi = self._part(m)
                    yield tuple(None if part is None else part[lo:hi] for part in batch)
            return
        order = torch.randperm(len(data), generator=generator).to(data.X.device) if shuffle else None
        for start, stop in self._bounds(batch_size, drop_last):
            lo, hi = (start + bound for bound in self._part(stop - start))
            index = order[lo:hi] if order is not None else slice(lo, hi)
            batch = data.X[index], None if data.y is None else data.y[index]
            yield batch if data.weight is None else (*batch, data.weight[index])

    def n_batches(self, batch_size, drop_last=False):
        return len(self._bounds(batch_size, drop_last))


class OwnRows:
    """This process's share of streamed data that reads only its own row groups (``Streamed.shard``):
    a step of ``batch_size`` rows in all takes ``batch_size // world`` rows from each process's
    own groups, so that a step is still one step on ``batch_size`` rows, as with in-memory data.
    ``len`` is the whole data's.

    >>> import tempfile, torch, nnfit as nf
    >>> from nnfit.streaming import prepare, write_parts
    >>> from nnfit.train.distributed import OwnRows
    >>> folder = write_parts(nf.datasets.load("penguins").dropna(), tempfile.mkdtemp(), n_files=4)
    >>> data = prepare("body_mass_g ~ sex", folder).data
    >>> mine = OwnRows(data.shard(1, 2), world=2)
    >>> [len(x) for x, _ in mine.batches(32, shuffle=True, generator=torch.Generator().manual_seed(1))][:3]
    [16, 16, 16]
    >>> mine.n_batches(32) == data.shard(1, 2).n_batches(16), len(mine)
    (True, 333)
    """

    def __init__(self, shard, world: int):
        self.data, self.world = shard, world

    def __len__(self):
        return len(self.data)

    def to(self, device) -> "OwnRows":
        return OwnRows(self.data.to(device), self.world)

    def _part(self, batch_size):
        return None if batch_size is None else batch_size // self.world

    def batches(self, batch_size, shuffle, generator=None, drop_last=False):
        return self.data.batches(self._part(batch_size), shuffle, generator=generator, drop_last=drop_last)

    def n_batches(self, batch_size, drop_last=False):
        return self.data.n_batches(self._part(batch_size), drop_last)


def _has_distributed_sampler(data) -> bool:
    sampler = getattr(getattr(data, "loader", None), "sampler", None)
    return isinstance(sampler, torch.utils.data.distributed.DistributedSampler)


# ---------------------------------------------------------------------- the fit
def data_parallel(ctx, callbacks):
    """(this process's training data, the callbacks that keep the processes in step) for ``ctx``'s fit.

    ``Learner.fit`` calls it under torchrun, before the loop starts; it joins the group
    (``init``), checks that every process fits the same number of rows with the same seed,
    and returns a ``Shard`` of the data (in memory, or streamed from Parquet; a DataLoader
    whose sampler is a ``DistributedSampler`` is kept as it is) with ``callbacks`` as this
    rank runs them (the file-writing ones only on rank 0) plus the ones that average
    gradients and records.

    >>> import torch, nnfit as nf
    >>> from nnfit.train import distributed
    >>> X = torch.randn(64, 3); y = X.sum(dim=1, keepdim=True)
    >>> fitted = nf.setup(torch.nn.Linear, loss="mse").set_hparams(in_features=3, out_features=1).fit(
    ...     (X, y), epochs=1, seed=1, verbose=False)
    >>> data, callbacks = distributed.data_parallel(fitted.ctx, [])   # a plain process: a group of one
    >>> data.n_batches(32), sorted(type(c).__name__ for c in callbacks)
    (2, ['InStep', 'SameStart'])
    """
    init()
    world, me = world_size(), rank()
    dist = torch.distributed
    if ctx.seed is None:
        raise ArgumentError(
            f"Under torchrun ({world} processes) every process must draw the same batches, so fit needs a seed: "
            "pass seed= (the same number in every process; nnfit fit: --seed)."
        )
    train = ctx.train_data
    facts = torch.tensor([int(ctx.seed) % 2**62, len(train)], dtype=torch.int64)
    gathered = [torch.zeros_like(facts) for _ in range(world)]
    dist.all_gather(gathered, facts)
    seeds, rows = [int(g[0]) for g in gathered], [int(g[1]) for g in gathered]
    if len(set(seeds)) > 1:
        raise ArgumentError(f"The {world} processes under torchrun were given different seeds ({_listed(seeds)}); "
                            "give every process the same seed=.")
    if len(set(rows)) > 1:
        raise ArgumentError(f"The {world} processes under torchrun hold different training data ({_listed(rows)} rows); "
                            "give every process the same data: each trains on its own share of every batch.")
    if isinstance(train, Loader):
        if not _has_distributed_sampler(train):
            raise ArgumentError(
                "Under torchrun, fit spreads in-memory (X, y) data over the processes; a Dataset or DataLoader is "
                "not spread yet. Pass tensors, or a DataLoader with a torch.utils.data.DistributedSampler."
            )
        data = train  # the loader's sampler gives each process its rows already
    elif callable(getattr(train, "shard", None)):  # streamed: each process reads its own row groups
        if ctx.batch_size is not None and ctx.batch_size % world:
            raise ArgumentError(
                f"batch_size={ctx.batch_size} does not divide among the {world} processes, each of which reads its own "
                f"row groups of the streamed data; use a multiple of {world}."
            )
        data = OwnRows(train.shard(me, world), world)
    else:  # in memory: every batch cut
        smallest = len(train) if ctx.batch_size is None else min(ctx.batch_size, len(train))
        if smallest < world:
            raise ArgumentError(
                f"batch_size={ctx.batch_size} gives batches of {smallest} rows, fewer than the {world} processes "
                f"under torchrun; each process needs a row of every batch: use batch_size >= {world}."
            )
        data = Shard(train, me, world)
    writers = (Progress, CSVLogger, TensorBoard, ModelCheckpoint)
    kept = [callback for callback in callbacks if me == 0 or not isinstance(callback, writers)]
    ours = [InStep(), SameStart()]
    resumes = [callback for callback in kept if isinstance(callback, AutoResume)]
    if resumes:
        ours.append(_ResumeOrder(first=me == 0))
        if me > 0:
            for callback in resumes:  # reads rank 0's checkpoint; never writes or deletes it
                callback.on_epoch_end = types.MethodType(_nothing, callback)
                callback.on_fit_end = types.MethodType(_nothing, callback)
    if getattr(ctx.model, "step", None) is not None:  # the module steps its optimizers itself
        for opt in ctx.optimizers.values():
            opt.step = _averaging_step(opt, ours[0])
    return data, kept + ours


def _nothing(self, ctx):
    """What a rank other than 0 does where rank 0 writes a file."""


def _listed(values) -> str:
    return ", ".join(str(v) for v in values)


def _grads_of(opt) -> list:
    flat = getattr(opt, "flat_grads", None)  # nnfit's closed-form optimizer: one buffer
    if flat is not None:
        return [flat]
    return [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]


def _averaging_step(opt, in_step):
    original = opt.step

    def step(*args, **kwargs):
        in_step.average(_grads_of(opt))
        return original(*args, **kwargs)

    return step


class InStep(Callback):
    """Keeps the processes of a data-parallel fit in step (``data_parallel`` adds it).

    Before each optimizer step it averages the gradients across processes, weighted by each
    one's rows since the last step (or the sum of their sample weights); at the end of each
    training epoch it averages the recorded loss and metrics, weighted by rows, takes rank
    0's buffers, and (once per fit) averages the divergence rule's reference loss; at the end
    of validation it takes rank 0's values. Its weight (-950) puts it right after
    ``MetricsRecorder`` and before ``DivergenceGuard`` and ``GradientClip``.

    >>> from nnfit.train.distributed import InStep
    >>> InStep.weight
    -950
    """

    weight = -950

    def on_fit_begin(self, ctx):
        self._pending = 0.0  # this process's rows (or weight) since the last step
        self._first_rows = None  # rows of the fit's first batch (the divergence reference's)
        self._reference_synced = False

    def on_train_begin(self, ctx):
        self._epoch_rows = 0

    def on_train_batch_begin(self, ctx):
        rows = rows_of(ctx.input)
        self._epoch_rows += rows
        if self._first_rows is None:
            self._first_rows = rows
        self._pending = self._pending + (ctx.weight.sum() if ctx.weight is not None else rows)

    def on_train_batch_before_step(self, ctx):
        if getattr(ctx.model, "step", None) is None:  # a module's own step averages in its optimizers
            self.average([p.grad for opt in ctx.optimizers.values()
                          for group in opt.param_groups for p in group["params"] if p.grad is not None])

    def average(self, grads) -> None:
        """Replace each gradient with the rows-weighted mean of the processes' (one all-reduce per dtype)."""
        share, self._pending = self._pending, 0.0
        buckets = {}
        for grad in grads:
            buckets.setdefault((grad.dtype, grad.device), []).append(grad)
        for (dtype, device), group in buckets.items():
            weight = torch.as_tensor(share, dtype=dtype, device=device).reshape(1)
            flat = torch.cat([g.reshape(-1) for g in group] + [weight])
            flat[:-1] *= weight
            torch.distributed.all_reduce(flat)
            total = flat[-1:]
            flat[:-1] /= torch.where(total > 0, total, torch.ones_like(total))
            offset = 0
            for grad in group:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def on_train_end(self, ctx):
        at = _this_epoch(ctx, "train")
        values = torch.tensor([ctx.records[i][3] * self._epoch_rows for i in at] + [self._epoch_rows],
                              dtype=torch.float64)
        torch.distributed.all_reduce(values)
        for i, value in zip(at, (values[:-1] / values[-1]).tolist()):
            split, name, epoch, _, *model = ctx.records[i]
            ctx.records[i] = (split, name, epoch, value, *model)
        if not self._reference_synced:
            self._sync_reference(ctx)
        _broadcast([b for b in ctx.model.buffers()])

    def _sync_reference(self, ctx):
        """The divergence rule's untrained loss: the whole first batch's, as one process would see it."""
        self._reference_synced = True
        for guard in (c for c in ctx.hooks.callbacks if isinstance(c, DivergenceGuard)):
            reference = guard.rule.state_dict()["reference"]
            if reference is None:
                continue
            rows = float(self._first_rows or 0)
            values = torch.tensor([v * rows for v in reference] + [rows], dtype=torch.float64)
            torch.distributed.all_reduce(values)
            guard.rule.load_state_dict({"reference": (values[:-1] / values[-1]).tolist()})

    def on_valid_end(self, ctx):
        at = _this_epoch(ctx, "valid")
        values = torch.tensor([ctx.records[i][3] for i in at], dtype=torch.float64)
        torch.distributed.broadcast(values, src=0)
        for i, value in zip(at, values.tolist()):
            split, name, epoch, _, *model = ctx.records[i]
            ctx.records[i] = (split, name, epoch, value, *model)

    def on_fit_end(self, ctx):
        for opt in ctx.optimizers.values():
            vars(opt).pop("step", None)  # the optimizer steps on its own again


class SameStart(Callback):
    """Starts every process of a data-parallel fit from rank 0's weights (``data_parallel`` adds it).

    It runs after ``AutoResume`` (weight 975) and checks that every process starts at the
    same epoch: a checkpoint folder that only some processes can see is an error, not a hang.

    >>> from nnfit.train.distributed import SameStart
    >>> SameStart.weight
    975
    """

    weight = 975

    def on_fit_begin(self, ctx):
        start = torch.tensor([ctx.start_epoch], dtype=torch.int64)
        starts = [torch.zeros_like(start) for _ in range(world_size())]
        torch.distributed.all_gather(starts, start)
        starts = [int(s) for s in starts]
        if len(set(starts)) > 1:
            raise TrainingError(
                f"The processes under torchrun would start at different epochs ({_listed(s + 1 for s in starts)}): "
                "AutoResume's folder must be on a file system that every process sees."
            )
        with torch.no_grad():
            _broadcast(list(ctx.model.state_dict().values()))


class _ResumeOrder(Callback):
    """A barrier around AutoResume's start: rank 0 looks at (and may set aside) the checkpoint first."""

    def __init__(self, first: bool):
        self.weight = 951 if first else 949

    def on_fit_begin(self, ctx):
        torch.distributed.barrier()


def _this_epoch(ctx, split: str) -> list:
    """Indices in ``ctx.records`` of this epoch's rows of ``split`` (recorded last)."""
    epoch, found = ctx.epoch + 1, []
    for i in range(len(ctx.records) - 1, -1, -1):
        if ctx.records[i][2] != epoch:
            break
        if ctx.records[i][0] == split:
            found.append(i)
    return found[::-1]


def _broadcast(tensors) -> None:
    """Give ``tensors`` rank 0's values, in place (one broadcast per dtype and device)."""
    buckets = {}
    for tensor in tensors:
        buckets.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for (dtype, _), group in buckets.items():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        flat = flat.to(torch.uint8) if dtype == torch.bool else flat  # gloo sends no bools
        torch.distributed.broadcast(flat, src=0)
        flat = flat.to(dtype)
        offset = 0
        for tensor in group:
            tensor.detach().copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()
