"""nnfit.train.distributed: data-parallel fits under torchrun, checked against one process.

The fits under torchrun run in one subprocess (2 processes, gloo on the CPU) with a timeout,
so a deadlock fails fast; the test compares what each rank wrote with the same fits in this
process.
"""

import ast
import contextlib
import datetime
import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import numpy as np
import torch
from torch import nn

import nnfit as nf
from nnfit.train import learner as learner_module
from nnfit.errors import ArgumentError
from nnfit.train import distributed
from nnfit.train.data import InMemory
from nnfit.train.distributed import Shard, spread

TIMEOUT = 60  # seconds for one torchrun: it takes about 5


def torchrun_command(script, *args, nproc=2) -> list:
    """The command that runs ``script`` under torch's launcher with ``nproc`` processes: every torchrun
    of these tests. ``--standalone`` has its c10d rendezvous listen on a port the system gives it,
    which the processes then join; a port picked here (bound, closed, then passed as
    --master_port) could be taken by another program before torchrun binds it. ``--local-addr``
    gives them the loopback, not this host's full name, which some machines cannot resolve."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr=127.0.0.1",
            f"--nproc_per_node={nproc}", str(script), *map(str, args)]


def torchrun(script, *args, nproc=2, cwd=None):
    """Run ``script`` under torch's launcher with ``nproc`` processes; (returncode, output)."""
    done = subprocess.run(torchrun_command(script, *args, nproc=nproc), capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=cwd,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    return done.returncode, done.stdout + done.stderr


@contextlib.contextmanager
def dead_port():
    """A local port nobody listens on, for as long as the block runs: a socket holds it bound, so no
    other program can take it meanwhile, and does not listen, so a connection to it is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_every_torchrun_here_is_started_by_one_helper_on_a_port_torchrun_picks():
    assert torchrun_command("s.py", "a", 1, nproc=3) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr=127.0.0.1", "--nproc_per_node=3",
        "s.py", "a", "1"]
    tree = ast.parse(Path(__file__).read_text())

    def holding(test):  # the top-level definitions (or "<module>") with a node for which test holds
        return sorted({getattr(top, "name", "<module>") for top in tree.body for node in ast.walk(top) if test(node)})

    this = sys._getframe().f_code.co_name
    assert holding(lambda node: isinstance(node, ast.Constant) and node.value == "torch.distributed.run") == sorted(
        ["torchrun_command", this, "test_the_benchmark_lets_torchrun_pick_its_port"])  # only these two check it
    assert holding(lambda node: isinstance(node, ast.Attribute) and node.attr == "bind") == ["dead_port", this]
    with dead_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.socket() as other, pytest.raises(OSError, match="Address already in use"):
            other.bind(("127.0.0.1", port))


def test_the_benchmark_lets_torchrun_pick_its_port():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed.py"
    spec = importlib.util.spec_from_file_location("benchmark_distributed", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert benchmark.launch_command("b.py", 4, ["--worker", "L"]) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr=127.0.0.1", "--nproc_per_node=4",
        "b.py", "--worker", "L"]
    assert benchmark.launch_command("b.py", 1, ["--worker", "L"]) == [sys.executable, "b.py", "--worker", "L"]
    assert not hasattr(benchmark, "free_port") and "socket" not in vars(benchmark)


# The data and fits, the same in the script and here.
COMMON = textwrap.dedent("""
    import torch, nnfit as nf
    from torch import nn
    from nnfit.train import learner as learner_module

    def data():
        g = torch.Generator().manual_seed(0)
        X = torch.randn(71, 3, generator=g)   # 71 rows, batches of 16: the last (7 rows) splits 3/4
        y = X @ torch.tensor([[1.0], [2.0], [-1.0]]) + 0.1 * torch.randn(71, 1, generator=g)
        return X, y

    def learners():
        mlp = nf.setup(nf.MLP, loss="mse", optimizer="sgd", metrics=["mae"]).set_hparams(
            input_size=3, hidden=[8], output_size=1).set_opt_hparams(lr=0.1)
        torch.manual_seed(5)
        sequential = nf.setup(nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)), loss="mse",
                              optimizer="sgd").set_opt_hparams(lr=0.1)
        return {"autograd MLP": mlp, "nn.Sequential": sequential, "closed form": learner_module.learner_for(mlp)}

    def fits(callbacks=lambda: []):
        out = {}
        for name, learner in learners().items():
            keep_autograd = [nf.callbacks.Callback()] if name == "autograd MLP" else []  # needs_autograd: True
            fitted = learner.fit(data(), epochs=4, batch_size=16, seed=1, verbose=False,
                                 callbacks=callbacks() + keep_autograd)
            out[name] = {"weights": [p.detach().reshape(-1).tolist() for p in fitted.model.parameters()],
                         "records": [list(r) for r in fitted.records], "step": type(fitted.ctx.opt).__name__}
        return out

    def early_stopping(callbacks=()):
        stop = nf.callbacks.EarlyStopping(monitor="valid_loss", patience=2)
        learner = nf.setup(nf.MLP, loss="mse", optimizer="sgd").set_hparams(
            input_size=3, hidden=[8], output_size=1).set_opt_hparams(lr=0.6)
        fitted = learner.fit(data(), epochs=40, batch_size=16, valid_data=0.3, seed=2, verbose=False,
                             callbacks=[stop, *callbacks])
        return {"stopped": stop.stopped_epoch, "epochs_run": fitted.epochs_run,
                "records": [list(r) for r in fitted.records]}
""")

SCRIPT = COMMON + textwrap.dedent("""
    import json, os, sys
    from nnfit.train import distributed
    out, rank = sys.argv[1], distributed.rank()
    result = {"world": distributed.world_size(), "rank": rank, "fits": fits(), "errors": {}}
    logger = lambda: [nf.callbacks.CSVLogger(os.path.join(out, f"history-rank{rank}.csv"))]
    result["early stopping"] = early_stopping(callbacks=logger())
    learner = learners()["autograd MLP"]
    resume = nf.callbacks.AutoResume(os.path.join(out, "resume"))
    resumed = learner.fit(data(), epochs=2, batch_size=16, seed=1, verbose=False, callbacks=[resume])
    result["resume"] = {"records": [list(r) for r in resumed.records],
                        "left": sorted(os.listdir(os.path.join(out, "resume")))}
    for name, options in {"no seed": {}, "small batches": {"seed": 1, "batch_size": 1}}.items():
        try:
            learner.fit(data(), epochs=1, verbose=False, **options)
        except nf.errors.ArgumentError as error:
            result["errors"][name] = str(error)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as stream:
        json.dump(result, stream)
""")


def ran_under_torchrun(tmp_path_factory, name, text):
    """A folder where ``text``, written as a script, ran under torchrun with the folder as argument."""
    folder = tmp_path_factory.mktemp(name)
    script = folder / f"{name}.py"
    script.write_text(text)
    code, output = torchrun(script, folder)
    assert code == 0, output
    return folder


@pytest.fixture(scope="module")
def under_torchrun(tmp_path_factory):
    folder = ran_under_torchrun(tmp_path_factory, "script", SCRIPT)
    ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]
    return folder, ranks


@pytest.fixture(scope="module")
def one_process():
    namespace = {}
    exec(COMMON, namespace)
    return namespace


def close(a, b, tol=1e-5):
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= tol


def test_a_step_on_two_processes_is_the_step_on_the_whole_batch(under_torchrun, one_process):
    _, ranks = under_torchrun
    alone = one_process["fits"]()
    assert [r["world"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    for name, single in alone.items():
        for r in ranks:
            got = r["fits"][name]
            assert got["step"] == single["step"]
            assert len(got["weights"]) == len(single["weights"])
            for mine, theirs in zip(got["weights"], single["weights"]):
                assert close(mine, theirs), name
    assert ranks[0]["fits"]["closed form"]["step"] == "Optimizer"  # the closed-form path, not torch.optim
    assert ranks[0]["fits"]["autograd MLP"]["step"] == "SGD"


def test_records_are_the_same_on_every_rank_and_as_in_one_process(under_torchrun, one_process):
    _, ranks = under_torchrun
    alone = one_process["fits"]()
    for name, single in alone.items():
        assert ranks[0]["fits"][name]["records"] == ranks[1]["fits"][name]["records"]
        got = ranks[0]["fits"][name]["records"]
        assert [r[:3] for r in got] == [r[:3] for r in single["records"]]
        assert close([r[3] for r in got], [r[3] for r in single["records"]])
    assert {r[1] for r in ranks[0]["fits"]["autograd MLP"]["records"]} == {"loss", "mae"}


def test_early_stopping_stops_both_ranks_at_the_epoch_one_process_stops(under_torchrun, one_process):
    _, ranks = under_torchrun
    single = one_process["early_stopping"]()
    assert single["stopped"] is not None and single["stopped"] < 40
    assert [r["early stopping"]["stopped"] for r in ranks] == [single["stopped"]] * 2
    assert [r["early stopping"]["epochs_run"] for r in ranks] == [single["epochs_run"]] * 2
    assert ranks[0]["early stopping"]["records"] == ranks[1]["early stopping"]["records"]


def test_only_rank_0_writes_the_csv_log(under_torchrun):
    folder, _ = under_torchrun
    assert (folder / "history-rank0.csv").exists()
    assert not (folder / "history-rank1.csv").exists()
    lines = (folder / "history-rank0.csv").read_text().splitlines()
    assert lines[0] == "epoch,set,loss"
    assert lines[1].startswith("1,train,") and lines[2].startswith("1,valid,")


def test_auto_resume_runs_on_every_rank_and_rank_0_removes_its_checkpoint(under_torchrun):
    _, ranks = under_torchrun
    assert ranks[0]["resume"]["records"] == ranks[1]["resume"]["records"]
    assert [r[:3] for r in ranks[0]["resume"]["records"]] == [[s, m, e] for e in (1, 2) for s, m in [("train", "loss"), ("train", "mae")]]
    assert ranks[0]["resume"]["left"] == []  # rank 0 deleted the checkpoint at the end (rank 1 may look earlier)


def test_a_fit_without_a_seed_or_with_too_small_batches_is_refused(under_torchrun):
    _, ranks = under_torchrun
    for r in ranks:
        assert r["errors"] == {
            "no seed": "Under torchrun (2 processes) every process must draw the same batches, so fit needs a "
                       "seed: pass seed= (the same number in every process; nnfit fit: --seed).",
            "small batches": "batch_size=1 gives batches of 1 rows, fewer than the 2 processes under torchrun; "
                             "each process needs a row of every batch: use batch_size >= 2.",
        }


# ---------------------------------------------------------------------- in one process
def test_shards_cut_each_batch_of_the_shuffled_order_into_contiguous_parts():
    X = torch.arange(23.0).reshape(23, 1)
    data = InMemory(X, X.reshape(-1), torch.ones(23))
    whole = [x.reshape(-1).tolist() for x, _, _ in data.batches(5, True, torch.Generator().manual_seed(3))]
    parts = [[x.reshape(-1).tolist() for x, _, _ in Shard(data, r, 3).batches(5, True, torch.Generator().manual_seed(3))]
             for r in range(3)]
    # 23 rows in batches of 5: four of 5 rows and a last of 3, one row for each of the 3 processes
    assert [len(p) for p in parts] == [5, 5, 5]
    for b, batch in enumerate(whole):
        assert parts[0][b] + parts[1][b] + parts[2][b] == batch
    assert [len(parts[r][0]) for r in range(3)] == [1, 2, 2]  # rows [0, 5//3), [5//3, 10//3), [10//3, 5)
    assert all(Shard(data, r, 3).n_batches(5) == 5 for r in range(3))


def test_a_last_batch_with_fewer_rows_than_processes_is_left_out():
    data = InMemory(torch.zeros(22, 1), torch.zeros(22))
    assert data.n_batches(5) == 5 and Shard(data, 0, 2).n_batches(5) == 5
    assert Shard(data, 0, 3).n_batches(5) == 4  # the last batch has 2 rows for 3 processes
    assert [len(x) for x, _ in Shard(data, 2, 3).batches(5, shuffle=False)] == [2, 2, 2, 2]
    assert Shard(data, 0, 3).n_batches(None) == 1 and len(Shard(data, 0, 3)) == 22


def test_drop_last_cuts_the_same_batches_as_in_memory_data():
    data = InMemory(torch.arange(11.0).reshape(11, 1), None)
    assert Shard(data, 0, 2).n_batches(4, drop_last=True) == data.n_batches(4, drop_last=True) == 2
    assert [x.reshape(-1).tolist() for x, _ in Shard(data, 1, 2).batches(4, False, drop_last=True)] == [[2.0, 3.0], [6.0, 7.0]]


def test_the_helpers_read_torchruns_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.active() and distributed.local_rank() == 3
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.active()
    monkeypatch.delenv("WORLD_SIZE")
    assert not distributed.active()


def test_spread_gives_model_k_to_rank_k_mod_world():
    assert [spread(7, rank_=r, world=3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(k for r in range(4) for k in spread(10, rank_=r, world=4)) == list(range(10))
    with pytest.raises(ArgumentError) as error:
        spread(3, rank_=2, world=2)
    assert str(error.value) == "rank must be a whole number from 0 to 1, not 2."
    with pytest.raises(ArgumentError) as error:
        spread(0, rank_=0, world=2)
    assert str(error.value) == "n_models must be a positive whole number, not 0."


def test_data_parallel_in_a_group_of_one_is_the_ordinary_fit():
    X = torch.randn(40, 2, generator=torch.Generator().manual_seed(0)); y = X.sum(dim=1, keepdim=True)
    learner = nf.setup(nn.Linear, loss="mse", optimizer="sgd").set_hparams(in_features=2, out_features=1)
    fitted = learner.fit((X, y), epochs=2, batch_size=8, seed=1, verbose=False)
    data, callbacks = distributed.data_parallel(fitted.ctx, [nf.callbacks.Progress()])
    assert isinstance(data, Shard) and data.n_batches(8) == 5
    assert [type(c).__name__ for c in callbacks] == ["Progress", "InStep", "SameStart"]  # rank 0 keeps Progress


def test_data_parallel_refuses_data_it_cannot_spread():
    from torch.utils.data import DataLoader, TensorDataset

    X = torch.randn(16, 2); y = X.sum(dim=1, keepdim=True)
    learner = nf.setup(nn.Linear, loss="mse").set_hparams(in_features=2, out_features=1)
    fitted = learner.fit(DataLoader(TensorDataset(X, y), batch_size=4), epochs=1, seed=1, verbose=False)
    with pytest.raises(ArgumentError) as error:
        distributed.data_parallel(fitted.ctx, [])
    assert str(error.value) == (
        "Under torchrun, fit spreads in-memory (X, y) data over the processes; a Dataset or DataLoader is "
        "not spread yet. Pass tensors, or a DataLoader with a torch.utils.data.DistributedSampler.")


SPREAD = textwrap.dedent("""
    import json, sys, warnings
    import torch, nnfit as nf
    from nnfit.train import distributed

    def fits():
        warnings.simplefilter("ignore")
        penguins = nf.datasets.load("penguins").dropna()
        ensemble = nf.mlp("body_mass_g ~ flipper_length_mm + sex", data=penguins, hidden=4, epochs=3, n_models=3,
                          seed=1, valid=0.2, verbose=False,
                          callbacks=[nf.callbacks.EarlyStopping(patience=1, min_delta=50.0)])
        cv = nf.cross_validate("body_mass_g ~ flipper_length_mm", penguins, folds=3, hidden=3, epochs=2, seed=1)
        stack = ensemble.model
        return {"weights": [p.detach().reshape(-1).tolist() for p in stack.parameters()],
                "history": [list(r) for r in ensemble.history], "cv": cv.summary.round(10).to_dict()}

    if __name__ == "__main__":
        out = fits()
        with open(f"{sys.argv[1]}/spread-{distributed.rank()}.json", "w") as f:
            json.dump(out, f)
""")


def test_ensembles_and_folds_spread_over_the_processes_as_one_process_trains_them(tmp_path):
    script = tmp_path / "spread.py"
    script.write_text(SPREAD)
    code, output = torchrun(script, tmp_path)
    assert code == 0, output
    namespace = {}
    exec(compile(SPREAD.replace('if __name__ == "__main__":', "if False:"), "spread", "exec"), namespace)
    alone = json.loads(json.dumps(namespace["fits"]()))
    ranks = [json.loads((tmp_path / f"spread-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every process gets every model back
    for mine, theirs in zip(ranks[0]["weights"], alone["weights"]):
        torch.testing.assert_close(torch.tensor(mine), torch.tensor(theirs), rtol=1e-5, atol=1e-6)
    assert [row[:3] + row[4:] for row in ranks[0]["history"]] == [row[:3] + row[4:] for row in alone["history"]]
    torch.testing.assert_close(torch.tensor([r[3] for r in ranks[0]["history"]]),
                               torch.tensor([r[3] for r in alone["history"]]), rtol=1e-5, atol=1e-6)
    assert ranks[0]["cv"].keys() == alone["cv"].keys()
    for column, values in alone["cv"].items():
        for row, value in values.items():
            if isinstance(value, float):
                assert abs(ranks[0]["cv"][column][row] - value) <= 1e-4 * max(1.0, abs(value)), (column, row)
            else:
                assert ranks[0]["cv"][column][row] == value


def test_a_spread_fit_refuses_callbacks_that_write_files(tmp_path):
    script = tmp_path / "writes.py"
    script.write_text(textwrap.dedent("""
        import nnfit as nf
        from nnfit.train import distributed
        penguins = nf.datasets.load("penguins").dropna()
        try:
            nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, hidden=3, epochs=1, n_models=2, seed=1,
                   verbose=False, callbacks=[nf.callbacks.CSVLogger("log.csv")])
        except nf.errors.ArgumentError as error:  # each process its own file: printed, their lines interleave
            with open(f"refused-{distributed.rank()}.txt", "w") as stream:
                stream.write(str(error))
    """))
    code, output = torchrun(script, cwd=tmp_path)
    assert code == 0, output
    for rank in range(2):
        assert (tmp_path / f"refused-{rank}.txt").read_text() == (
            "Under torchrun the 2 models of this fit are spread over the processes, and CSVLogger would have each "
            "process write its own models' files to the same place; leave it out, or train the models in one process.")
    assert not (tmp_path / "log.csv").exists()


KILLED = textwrap.dedent("""
    import json, os, sys
    import torch, nnfit as nf
    from nnfit.train import distributed

    class Dies(nf.callbacks.Callback):
        needs_autograd = False

        def on_epoch_end(self, ctx):  # process 1 dies, as a killed process does, after epoch 2's checkpoint
            if distributed.rank() == 1 and ctx.epoch + 1 == 2 and os.environ.get("NNFIT_KILL") == "1":
                os._exit(9)

    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 3, generator=g); y = X.sum(dim=1, keepdim=True)
    learner = nf.setup(nf.MLP, loss="mse", optimizer="adam").set_hparams(input_size=3, hidden=[5], output_size=1)
    resume = nf.callbacks.AutoResume(os.path.join(sys.argv[1], "resume"))
    fitted = learner.fit((X, y), epochs=5, batch_size=16, seed=3, verbose=False, callbacks=[resume, Dies()])
    if distributed.rank() == 0:
        with open(os.path.join(sys.argv[1], "result.json"), "w") as f:
            json.dump({"resumed_from": resume.resumed_from, "records": [list(r) for r in fitted.records],
                       "weights": [p.detach().reshape(-1).tolist() for p in fitted.model.parameters()]}, f)
""")


def test_a_killed_process_stops_the_others_and_auto_resume_finishes_the_fit(tmp_path, monkeypatch):
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    monkeypatch.setenv("NNFIT_KILL", "1")
    code, output = torchrun(script, tmp_path)  # a hang would fail at TIMEOUT instead
    assert code != 0 and not (tmp_path / "result.json").exists()
    assert (tmp_path / "resume" / "checkpoint.nnfit").exists()  # rank 0's checkpoint of epoch 2 is kept
    monkeypatch.setenv("NNFIT_KILL", "0")
    code, output = torchrun(script, tmp_path)
    assert code == 0, output
    resumed = json.loads((tmp_path / "result.json").read_text())
    assert resumed["resumed_from"] == 2
    (tmp_path / "result.json").unlink()
    code, output = torchrun(script, tmp_path / "fresh")  # the same fit, never interrupted
    assert code == 0, output
    whole = json.loads((tmp_path / "fresh" / "result.json").read_text())
    assert resumed["records"] == whole["records"] and resumed["weights"] == whole["weights"]


# ---------------------------------------------------------------------- distributed= (choice)
def test_choice_none_follows_torchrun_and_the_innermost_choice_wins(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    # rank 1 of 2, whether or not an earlier test joined a group of one in this process
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.active() and distributed.started_by_torchrun()
    with distributed.choice(None):
        assert distributed.active()
    with distributed.choice(False):
        assert not distributed.active() and distributed.started_by_torchrun()
        assert distributed.spread(5) == [0, 1, 2, 3, 4]  # this process trains every model
        with distributed.choice(None):  # no choice here: the enclosing False holds (cross_validate's inner fits)
            assert not distributed.active()
        with distributed.choice(True):
            assert distributed.active() and distributed.spread(5) == [1, 3]
        assert not distributed.active()
    assert distributed.active() and distributed.spread(5) == [1, 3]


def test_choice_is_restored_when_the_fit_inside_raises(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError):
        with distributed.choice(False):
            raise RuntimeError("a failed fit")
    assert distributed.active()


def test_choice_false_joins_no_process_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    before = torch.distributed.is_initialized()
    with dead_port() as port:  # held, so no other program can listen there meanwhile: joining would fail
        monkeypatch.setenv("MASTER_PORT", str(port))
        with distributed.choice(False):
            distributed.init()
    assert torch.distributed.is_initialized() == before


TRUE_OUTSIDE_TORCHRUN = (
    "distributed=True trains data-parallel in processes started by torchrun, and torchrun did not start this one "
    "(WORLD_SIZE is unset or 1); start it with torchrun --nproc_per_node=N (or nnfit fit --nproc N), or leave "
    "distributed= out.")


@pytest.mark.parametrize("world", [None, "1"])
def test_choice_true_outside_torchrun_says_how_to_start_the_processes(monkeypatch, world):
    if world is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ArgumentError) as error:
        with distributed.choice(True):
            pytest.fail("the body must not run")
    assert str(error.value) == TRUE_OUTSIDE_TORCHRUN


@pytest.mark.parametrize("value", ["auto", 1, 0, "yes", 2.0])
def test_choice_refuses_anything_but_none_true_and_false(value):
    with pytest.raises(ArgumentError) as error:
        with distributed.choice(value):
            pass
    assert str(error.value) == (
        "distributed must be None (data-parallel when torchrun started this process), True (require torchrun) or "
        f"False (fit in this process alone), not {value!r}.")


def test_distributed_true_in_a_plain_process_is_refused_by_every_fit():
    penguins = nf.datasets.load("penguins").dropna()
    learner = nf.setup(nn.Linear, loss="mse").set_hparams(in_features=2, out_features=1)
    X = torch.randn(16, 2); y = X.sum(dim=1, keepdim=True)
    calls = {
        "nf.mlp": lambda: nf.mlp("body_mass_g ~ flipper_length_mm", data=penguins, epochs=1, distributed=True),
        "Learner.fit": lambda: learner.fit((X, y), epochs=1, seed=1, verbose=False, distributed=True),
        "cross_validate": lambda: nf.cross_validate("body_mass_g ~ flipper_length_mm", penguins, folds=2, epochs=1,
                                                    distributed=True),
        "grid": lambda: nf.grid("body_mass_g ~ flipper_length_mm", penguins, hidden=[2, 3], valid=0.2, epochs=1,
                                distributed=True),
    }
    for name, call in calls.items():
        with pytest.raises(ArgumentError) as error:
            call()
        assert str(error.value) == TRUE_OUTSIDE_TORCHRUN, name


# ---------------------------------------------------------------------- the wait at exit
MINUTE = datetime.timedelta(seconds=60)


@pytest.mark.parametrize("backend, gloo, expected", [
    ("gloo", True, [("init", "gloo"), ("atexit", "_close"), ("monitored_barrier", None, MINUTE), ("destroy",)]),
    ("nccl", True, [("init", "nccl"), ("new_group", {"backend": "gloo", "timeout": MINUTE}), ("atexit", "_close"),
                    ("barrier", "exit group", MINUTE), ("destroy",)]),
    ("cpu:gloo,cuda:nccl", True, [("init", "cpu:gloo,cuda:nccl"), ("new_group", {"backend": "gloo", "timeout": MINUTE}),
                                  ("atexit", "_close"), ("barrier", "exit group", MINUTE), ("destroy",)]),
    ("nccl", False, [("init", "nccl"), ("atexit", "_close"), ("destroy",)]),  # no gloo in this build: no wait
])
def test_the_wait_at_exit_is_a_monitored_barrier_on_gloo_and_a_timed_barrier_on_a_gloo_group_beside_nccl(
        monkeypatch, backend, gloo, expected):
    dist, calls, joined = torch.distributed, [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(distributed, "_EXIT_GROUP", None, raising=False)
    monkeypatch.setattr(distributed, "backend", lambda: backend)
    monkeypatch.setattr(distributed.atexit, "register", lambda function: calls.append(("atexit", function.__name__)))
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined))
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(calls.append(("init", backend))))
    monkeypatch.setattr(dist, "get_backend", lambda group=None: backend if group is None else "gloo")
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "is_gloo_available", lambda: gloo)
    monkeypatch.setattr(dist, "new_group", lambda **options: calls.append(("new_group", options)) or "exit group")
    monkeypatch.setattr(dist, "monitored_barrier", lambda group=None, timeout=None, wait_all_ranks=False:
                        calls.append(("monitored_barrier", group, timeout)))
    monkeypatch.setattr(dist, "barrier", lambda group=None, async_op=False, device_ids=None, timeout=None:
                        calls.append(("barrier", group, timeout)))
    monkeypatch.setattr(dist, "destroy_process_group", lambda group=None: calls.append(("destroy",)) or joined.clear())
    distributed.init()
    distributed._close()
    assert calls == expected
    assert distributed._EXIT_GROUP is None


EXIT_WAIT = textwrap.dedent("""
    import atexit, json, os, sys, time
    import torch
    from nnfit.train import distributed

    out, rank = sys.argv[1], int(os.environ["RANK"])
    gloo, waited = torch.distributed.get_backend, []

    def left():  # registered before init, so it runs after init's _close
        with open(os.path.join(out, f"left-{rank}.json"), "w") as stream:
            json.dump({"time": time.time(), "barriers on": waited}, stream)

    atexit.register(left)
    torch.distributed.get_backend = lambda group=None: "nccl" if group is None else gloo(group)  # as NCCL looks
    barrier = torch.distributed.barrier
    torch.distributed.barrier = lambda group=None, **options: waited.append(gloo(group)) or barrier(group, **options)
    distributed.init()
    if rank == 1:
        time.sleep(3)  # the other process is done long before this one
    with open(os.path.join(out, f"done-{rank}.json"), "w") as stream:
        json.dump(time.time(), stream)
""")


def test_beside_nccl_a_process_that_finishes_first_waits_at_exit_for_the_others(tmp_path):
    script = tmp_path / "exit_wait.py"
    script.write_text(EXIT_WAIT)
    code, output = torchrun(script, tmp_path)
    assert code == 0, output
    read = lambda name: json.loads((tmp_path / f"{name}.json").read_text())
    assert read("left-0")["barriers on"] == read("left-1")["barriers on"] == ["gloo"]  # the group made for it
    assert read("left-0")["time"] >= read("done-1")  # rank 0 left after rank 1 was done, 3 seconds after its own end
    assert read("done-1") - read("done-0") > 1  # rank 1 slept 3 s; leave room for a slow start of rank 0


STREAMED = textwrap.dedent("""
    import json, sys
    import torch, nnfit as nf
    from nnfit.streaming import prepare

    def streamed_fits(folder, data=None):
        out = {}
        prepared = prepare("body_mass_g ~ flipper_length_mm + sex", folder, chunk_rows=40, buffer_rows=80)
        for name, keep in {"closed form": [], "autograd": [nf.callbacks.Callback()]}.items():
            learner = nf.setup(nf.MLP, loss="mse", optimizer="sgd").set_hparams(
                input_size=2, hidden=[6], output_size=1).set_opt_hparams(lr=0.05)
            fitted = learner.fit(prepared.data if data is None else data(prepared.data), epochs=2, batch_size=32,
                                 seed=3, verbose=False, callbacks=keep)
            out[name] = {"weights": [p.detach().reshape(-1).tolist() for p in fitted.model.parameters()],
                         "records": [list(r) for r in fitted.records]}
        return out

    if __name__ == "__main__":
        from nnfit.train import distributed
        result = streamed_fits(sys.argv[1])
        try:
            nf.setup(nf.MLP, loss="mse").set_hparams(input_size=2, hidden=[6], output_size=1).fit(
                prepare("body_mass_g ~ flipper_length_mm + sex", sys.argv[1]).data, epochs=1, batch_size=33,
                seed=3, verbose=False)
        except nf.errors.ArgumentError as error:
            result["odd batch"] = str(error)
        with open(f"{sys.argv[2]}/streamed-{distributed.rank()}.json", "w") as stream:
            json.dump(result, stream)
""")


class Joined:
    """Two processes' streamed batches in one process: each step's rows are rank 0's batch of its
    own row groups, then rank 1's, each drawn with the generator as that rank holds it."""

    def __init__(self, data):
        self.parts = [data.shard(r, 2) for r in range(2)]

    def __len__(self):
        return len(self.parts[0])

    def to(self, device):
        return self

    def n_batches(self, batch_size, drop_last=False):
        return self.parts[0].n_batches(batch_size // 2, drop_last)

    def batches(self, batch_size, shuffle, generator=None, drop_last=False):
        other = torch.Generator()
        other.set_state(generator.get_state())  # rank 1's generator: the same draws as rank 0's
        for (x0, y0), (x1, y1) in zip(self.parts[0].batches(batch_size // 2, shuffle, generator, drop_last),
                                      self.parts[1].batches(batch_size // 2, shuffle, other, drop_last)):
            yield torch.cat([x0, x1]), torch.cat([y0, y1])


def test_streamed_data_parallel_ranks_read_their_own_row_groups_and_step_as_one_process_on_both(tmp_path):
    import json
    import runpy

    from nnfit.streaming import write_parts

    folder = write_parts(nf.datasets.load("penguins"), tmp_path / "parts", n_files=4, row_group_rows=20)
    script = tmp_path / "streamed.py"
    script.write_text(STREAMED)
    code, output = torchrun(script, folder, tmp_path)
    assert code == 0, output
    ranks = [json.loads((tmp_path / f"streamed-{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # every process ends with the same weights and history
    emulated = runpy.run_path(str(script))["streamed_fits"](folder, data=Joined)
    for name in ("closed form", "autograd"):
        for got, want in zip(ranks[0][name]["weights"], emulated[name]["weights"]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        assert [r[:3] for r in ranks[0][name]["records"]] == [r[:3] for r in emulated[name]["records"]]
        np.testing.assert_allclose([r[3] for r in ranks[0][name]["records"]],
                                   [r[3] for r in emulated[name]["records"]], rtol=1e-5, err_msg=name)
    assert ranks[0]["odd batch"] == ("batch_size=33 does not divide among the 2 processes, each of which reads its "
                                     "own row groups of the streamed data; use a multiple of 2.")


ALONE = textwrap.dedent("""
    import json, os, sys, warnings
    import torch, nnfit as nf
    from nnfit.train import distributed

    def data():
        g = torch.Generator().manual_seed(0)
        X = torch.randn(71, 3, generator=g)
        return X, X @ torch.tensor([[1.0], [2.0], [-1.0]]) + 0.1 * torch.randn(71, 1, generator=g)

    def learner():
        return nf.setup(nf.MLP, loss="mse", optimizer="sgd").set_hparams(
            input_size=3, hidden=[8], output_size=1).set_opt_hparams(lr=0.1)

    def weights(model):
        return [p.detach().reshape(-1).tolist() for p in model.parameters()]

    def fits(alone):
        # alone(): the options that make a call fit in this process alone
        warnings.simplefilter("ignore")
        penguins = nf.datasets.load("penguins").dropna()
        formula = "body_mass_g ~ flipper_length_mm + sex"
        one = nf.mlp(formula, data=penguins, hidden=4, epochs=3, seed=1, verbose=False, **alone())
        three = nf.mlp(formula, data=penguins, hidden=4, epochs=2, n_models=3, seed=1, verbose=False, **alone())
        fitted = learner().fit(data(), epochs=3, batch_size=16, seed=1, verbose=False, **alone())
        unseeded = learner().fit(data(), epochs=1, batch_size=16, verbose=False, **alone())  # no seed needed alone
        cv = nf.cross_validate(formula, penguins, folds=3, hidden=3, epochs=2, seed=1, **alone())
        return {"cv": cv.summary.round(10).to_dict(), "mlp": weights(one.model),
                "mlp records": [list(r) for r in one.history],
                "ensemble": weights(three.model), "fit": weights(fitted.model),
                "fit records": [list(r) for r in fitted.records], "unseeded rows": len(unseeded.ctx.train_data)}

    if __name__ == "__main__":
        out, rank = sys.argv[1], distributed.rank()

        with distributed.choice(False):  # the mechanism itself, as fit(distributed=False) uses it
            result = {"world": distributed.world_size(), "rank": rank, "choice": fits(lambda: {}),
                      "joined": torch.distributed.is_initialized()}
        try:
            result["option"] = fits(lambda: {"distributed": False})
            result["option joined"] = torch.distributed.is_initialized()
        except (TypeError, nf.errors.ArgumentError) as error:  # fit(distributed=) not there yet
            result["option"] = str(error)
        # A group that exists (joined by a data-parallel fit) is left alone by distributed=False: the
        # ranks train different numbers of epochs, which any collective would turn into a hang.
        learner().fit(data(), epochs=1, batch_size=16, seed=1, verbose=False)
        with distributed.choice(False):
            rank_epochs = learner().fit(data(), epochs=1 + 2 * rank, batch_size=16, seed=1, verbose=False).epochs_run
        result["after a group"] = {"joined": torch.distributed.is_initialized(), "epochs": rank_epochs}
        with open(os.path.join(out, f"alone-{rank}.json"), "w") as stream:
            json.dump(result, stream)
""")


@pytest.fixture(scope="module")
def alone_under_torchrun(tmp_path_factory):
    folder = ran_under_torchrun(tmp_path_factory, "alone", ALONE)
    namespace = {}
    exec(compile(ALONE.replace('if __name__ == "__main__":', "if False:"), "alone", "exec"), namespace)
    single = json.loads(json.dumps(namespace["fits"](lambda: {})))
    return [json.loads((folder / f"alone-{r}.json").read_text()) for r in range(2)], single


def test_choice_false_under_torchrun_trains_each_rank_alone_as_one_process_does(alone_under_torchrun):
    ranks, single = alone_under_torchrun
    assert [(r["world"], r["rank"]) for r in ranks] == [(2, 0), (2, 1)]
    for r in ranks:
        assert r["choice"] == single  # bit for bit: nothing spread, nothing averaged
        assert r["joined"] is False  # no process group was joined


def test_distributed_false_keeps_an_existing_group_and_issues_no_collective(alone_under_torchrun):
    ranks, _ = alone_under_torchrun
    assert [r["after a group"] for r in ranks] == [{"joined": True, "epochs": 1}, {"joined": True, "epochs": 3}]


def test_fit_distributed_false_under_torchrun_trains_alone(alone_under_torchrun):
    ranks, single = alone_under_torchrun
    for r in ranks:
        assert r["option"] == single
        assert r["option joined"] is False


def test_the_slurm_example_script_fits_under_torchrun_as_in_one_process(tmp_path):
    import os
    from pathlib import Path

    from nnfit.streaming import write_parts

    script = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "train.py"
    folder = write_parts(nf.datasets.load("penguins"), tmp_path / "parts", n_files=3)
    formula = "body_mass_g ~ flipper_length_mm + sex"
    code, output = torchrun(script, folder, formula, tmp_path / "two")
    assert code == 0, output
    assert "2 process(es); model written to" in output and sorted(os.listdir(tmp_path / "two")) == ["model.nnfit"]
    alone = subprocess.run([sys.executable, str(script), folder, formula, str(tmp_path / "one")], capture_output=True,
                           text=True, timeout=TIMEOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert alone.returncode == 0, alone.stderr
    penguins = nf.datasets.load("penguins").dropna()
    two, one = (nf.load(tmp_path / name / "model.nnfit").predict(penguins) for name in ("two", "one"))
    errors = [float((predicted - penguins["body_mass_g"]).abs().mean()) for predicted in (two, one)]
    # each process reads its own row groups: another draw of the same recipe, which must fit as well
    # (test_streamed_data_parallel_ranks_read_their_own_row_groups... checks the step itself)
    assert two.notna().all() and 0.75 < errors[0] / errors[1] < 1.25, errors
