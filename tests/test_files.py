"""files.py: safe model files (safetensors + JSON + checksum + format version), atomic writes,
and the pickle-free packing of training state."""

import json
import os
import pickle
import random
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit import files
from nnfit.errors import ArgumentError, MissingValuesWarning, ModelFileError


@pytest.fixture(scope="module")
def mass(penguins):
    training, testing = nf.split(penguins, prop=0.8, seed=1)
    with pytest.warns(MissingValuesWarning):
        fit = nf.mlp("body_mass_g ~ . - year", data=training, hidden=8, epochs=3, seed=1, verbose=False)
    return fit, testing


@pytest.fixture(scope="module")
def species(penguins):
    training, testing = nf.split(penguins, prop=0.8, seed=1)
    with pytest.warns(MissingValuesWarning):
        fit = nf.mlp("species ~ . - year", data=training, hidden=[6, 4], dropout=0.2, epochs=3, seed=1, verbose=False)
    return fit, testing


def test_a_saved_mlp_predicts_bit_identically_in_a_fresh_process(mass, tmp_path):
    fit, testing = mass
    fit.save(tmp_path / "mass.nnfit")
    testing.to_csv(tmp_path / "testing.csv", index=False)
    code = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd, nnfit as nf
        testing = pd.read_csv({str(tmp_path / 'testing.csv')!r})
        for column in ("species", "island", "sex"):
            testing[column] = pd.Categorical(testing[column], categories=nf.datasets.load("penguins")[column].cat.categories)
        model = nf.load({str(tmp_path / 'mass.nnfit')!r})
        np.save({str(tmp_path / 'pred.npy')!r}, model.predict(testing).to_numpy())
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    fresh = np.load(tmp_path / "pred.npy")
    here = fit.predict(testing).to_numpy()
    missing = testing.drop(columns=["body_mass_g", "year"]).isna().any(axis=1).to_numpy()
    assert np.array_equal(np.isnan(here), missing) and missing.any()
    assert np.array_equal(fresh, here, equal_nan=True)
    assert fresh.tobytes() == here.tobytes()


def test_the_file_holds_design_architecture_history_and_versions(mass, tmp_path):
    fit, _ = mass
    fit.save(tmp_path / "mass.nnfit")
    tensors, metadata = files.read(tmp_path / "mass.nnfit")
    assert metadata["format"] == "nnfit-model" and metadata["format_version"] == files.FORMAT_VERSION
    assert metadata["nnfit_version"] == nf.__version__ and metadata["torch_version"] == torch.__version__
    assert metadata["kind"] == "mlp" and metadata["task"] == "regression"
    assert metadata["design"]["formula"] == "body_mass_g ~ . - year"
    assert metadata["design"]["variables"]["species"]["levels"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert metadata["architecture"]["hidden"] == [8]
    assert [tuple(row) for row in metadata["history"]] == fit.history
    assert sorted(tensors) == sorted(fit.model.state_dict())


def test_a_classifier_round_trips(species, tmp_path):
    fit, testing = species
    fit.save(tmp_path / "species.nnfit")
    same = nf.load(tmp_path / "species.nnfit")
    assert same.design.levels == ["Adelie", "Chinstrap", "Gentoo"]
    assert same.predict(testing, type="prob").equals(fit.predict(testing, type="prob"))
    assert same.predict(testing).equals(fit.predict(testing))


def test_a_luz_style_module_round_trips_by_class_or_instance(tmp_path):
    X = torch.randn(40, 3)
    y = X.sum(dim=1, keepdim=True)
    fitted = nf.setup(nn.Linear, loss="mse").set_hparams(in_features=3, out_features=1).fit(
        (X, y), epochs=2, seed=1, verbose=False
    )
    fitted.save(tmp_path / "linear.nnfit")
    by_class = nf.load(tmp_path / "linear.nnfit", module=nn.Linear)
    by_instance = nf.load(tmp_path / "linear.nnfit", module=nn.Linear(3, 1))
    for module in (by_class, by_instance):
        assert torch.equal(module.weight, fitted.model.weight) and torch.equal(module.bias, fitted.model.bias)
    with pytest.raises(ModelFileError) as error:
        nf.load(tmp_path / "linear.nnfit")
    assert str(error.value) == (
        f"{str(tmp_path / 'linear.nnfit')!r} holds the weights of your module torch.nn.modules.linear.Linear; "
        "pass it: nf.load(path, module=YourModule) (the class, or an instance)."
    )
    with pytest.raises(ModelFileError, match=r"do not fit Linear: Error\(s\) in loading state_dict"):
        nf.load(tmp_path / "linear.nnfit", module=nn.Linear(4, 1))


# ---------------------------------------------------------------------- what load refuses
def _refused(path) -> str:
    with pytest.raises(ModelFileError) as error:
        nf.load(path)
    return str(error.value)


def test_load_refuses_pickles_and_torch_save_files(tmp_path):
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    for path in (pickled, tmp_path / "model.pt"):
        assert _refused(path) == (
            f"{str(path)!r} is a pickle (or torch.save) file; nnfit never loads those, because loading them can "
            "run code. Save models with fit.save()."
        )


def test_load_refuses_a_file_whose_checksum_does_not_match(mass, tmp_path):
    fit, _ = mass
    path = tmp_path / "mass.nnfit"
    fit.save(path)
    payload = bytearray(path.read_bytes())
    payload[-3] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(payload))
    assert _refused(path) == f"{str(path)!r} is corrupted: its checksum does not match its contents."


def test_load_refuses_a_truncated_file(mass, tmp_path):
    fit, _ = mass
    path = tmp_path / "mass.nnfit"
    fit.save(path)
    path.write_bytes(path.read_bytes()[:-100])
    assert _refused(path).startswith(f"{str(path)!r} is not an nnfit model file or is corrupted (")
    path.write_bytes(path.read_bytes()[:50])
    assert _refused(path).startswith(f"{str(path)!r} is not an nnfit model file or is corrupted (")


def _safetensors_file(path, metadata: dict, checksum: str = "0"):
    from safetensors.torch import save

    path.write_bytes(save({"w": torch.zeros(2)}, metadata={"nnfit": json.dumps(metadata), "checksum": checksum}))


def test_a_file_from_a_newer_format_says_so(tmp_path):
    path = tmp_path / "future.nnfit"
    _safetensors_file(path, {"format": "nnfit-model", "format_version": 99, "nnfit_version": "9.0", "kind": "mlp"})
    assert _refused(path) == (
        f"{str(path)!r} was written by a newer nnfit (format 99, this one reads up to {files.FORMAT_VERSION}, "
        "nnfit 9.0); upgrade nnfit to load it."
    )


def test_load_refuses_other_safetensors_files(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    assert _refused(plain) == f"{str(plain)!r} is a safetensors file without nnfit metadata."
    other = tmp_path / "other.nnfit"
    _safetensors_file(other, {"format": "something-else", "format_version": 1})
    assert _refused(other) == f"{str(other)!r} is not an nnfit model file."
    unversioned = tmp_path / "unversioned.nnfit"
    _safetensors_file(unversioned, {"format": "nnfit-model", "format_version": "1"})
    assert _refused(unversioned) == f"{str(unversioned)!r} has no valid format version ('1'); it is corrupted."


def test_load_refuses_missing_paths_directories_and_text(tmp_path):
    assert _refused(tmp_path / "nothing.nnfit") == f"No model file at {str(tmp_path / 'nothing.nnfit')!r}."
    assert _refused(tmp_path) == f"{str(tmp_path)!r} is a directory, not a model file."
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model")
    assert _refused(text).startswith(f"{str(text)!r} is not an nnfit model file or is corrupted (")


# ---------------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "out.bin"
    files.atomic_write(path, b"first")
    files.atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    files.atomic_write(path, b"old contents")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left on device"):
        files.atomic_write(path, b"new contents")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_refuses_directories_and_missing_folders(tmp_path):
    with pytest.raises(ArgumentError) as error:
        files.atomic_write(tmp_path, b"x")
    assert str(error.value) == f"Cannot write to {str(tmp_path)!r}: it is a directory."
    with pytest.raises(ArgumentError) as error:
        files.atomic_write(tmp_path / "no" / "such.bin", b"x")
    assert str(error.value) == (
        f"Cannot write {str(tmp_path / 'no' / 'such.bin')!r}: the folder {str(tmp_path / 'no')!r} does not exist."
    )


def test_remove_temporaries_removes_only_that_files_leftovers(tmp_path):
    (tmp_path / ".state.nnfit.x1y2.tmp").write_bytes(b"half")
    (tmp_path / ".other.nnfit.x1y2.tmp").write_bytes(b"half")
    (tmp_path / "state.nnfit").write_bytes(b"whole")
    files.remove_temporaries(tmp_path / "state.nnfit")
    assert sorted(os.listdir(tmp_path)) == [".other.nnfit.x1y2.tmp", "state.nnfit"]


# ---------------------------------------------------------------------- pack / unpack
def test_pack_round_trips_optimizer_and_generator_states_exactly():
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    generator = torch.Generator().manual_seed(5)
    state = {
        "opt": opt.state_dict(),
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "odd": {1: "int key", (2, 3): [None, True, 1.5, float("inf")], "__tensor__": "a marker-like key"},
    }
    tensors = {}
    packed = files.pack(state, tensors)
    text = json.dumps(packed)  # plain JSON, no pickle
    back = files.unpack(json.loads(text), tensors)
    assert back["opt"]["param_groups"] == opt.state_dict()["param_groups"]
    for index, values in opt.state_dict()["state"].items():
        for key, value in values.items():
            assert torch.equal(back["opt"]["state"][index][key], value)
    assert torch.equal(back["torch"], state["torch"]) and torch.equal(back["generator"], state["generator"])
    assert back["numpy"][0] == "MT19937" and np.array_equal(back["numpy"][1], state["numpy"][1])
    assert back["numpy"][1].dtype == np.uint32 and back["numpy"][2:] == state["numpy"][2:]
    assert back["python"] == state["python"]
    assert back["odd"] == state["odd"]
    fresh = torch.optim.Adam(nn.Linear(3, 2).parameters())
    fresh.load_state_dict(back["opt"])


def test_pack_refuses_what_only_pickle_could_store():
    with pytest.raises(TypeError, match="cannot store a value of type function"):
        files.pack({"f": lambda x: x}, {})


# ---------------------------------------------------------------------- modes: the user's umask, kept on replace
@pytest.fixture()
def umask():
    """Sets the process umask for one test (and restores it)."""
    previous = os.umask(0o022)
    os.umask(previous)
    values = []

    def set_umask(value):
        values.append(os.umask(value))

    yield set_umask
    os.umask(previous)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_users_umask(tmp_path, umask, mass, mask, expected):
    umask(mask)
    fit, _ = mass
    files.atomic_write(tmp_path / "notes.txt", b"hello")
    fit.save(tmp_path / "mass.nnfit")
    nf.plot.save(fit.plot(), tmp_path / "curves.png")
    assert [_mode(tmp_path / name) for name in ("notes.txt", "mass.nnfit", "curves.png")] == [expected] * 3


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o755])
def test_replacing_a_file_keeps_its_mode(tmp_path, umask, mass, mode):
    umask(0o077)  # would give 0600 to a new file
    fit, _ = mass
    path = tmp_path / "mass.nnfit"
    fit.save(path)
    os.chmod(path, mode)
    fit.save(path)
    assert _mode(path) == mode and os.listdir(tmp_path) == ["mass.nnfit"]


# ---------------------------------------------------------------------- temporaries of killed writers
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_write_removes_temporaries_of_ended_writers_only(tmp_path):
    dead = _dead_pid()
    leftovers = [f".out.bin.{dead}-0123abcd.tmp", ".out.bin.x1y2.tmp"]  # a killed run's; an older nnfit's
    kept = [f".out.bin.{os.getpid()}-89abcdef.tmp",  # a write still going in this process
            f".other.bin.{dead}-0123abcd.tmp", "out.bin.tmp", "notes.txt"]
    for name in leftovers + kept:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / f".out.bin.{dead}-fedcba98.tmp").mkdir()  # not a file: never touched
    files.atomic_write(tmp_path / "out.bin", b"whole")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["out.bin", f".out.bin.{dead}-fedcba98.tmp"])
    assert (tmp_path / "out.bin").read_bytes() == b"whole"


def test_a_day_old_temporary_is_a_leftover_whatever_its_process_id(tmp_path):
    old = tmp_path / f".state.nnfit.{os.getpid()}-0123abcd.tmp"
    old.write_bytes(b"half")
    os.utime(old, (0, 0))
    files.remove_temporaries(tmp_path / "state.nnfit")
    assert os.listdir(tmp_path) == []


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError) as error:
        files.atomic_write(tmp_path / "out.bin", b"x")
    assert (error.value.errno, error.value.strerror, error.value.filename) == (28, "No space left on device",
                                                                              str(tmp_path / "out.bin"))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- signed files
@pytest.mark.parametrize("key", [b"\x00\xffbinary secret", "a text secret", "ünïcode"])
def test_a_signed_file_loads_with_its_key(mass, tmp_path, key):
    from safetensors import safe_open

    fit, testing = mass
    fit.save(tmp_path / "signed.nnfit", key=key)
    with safe_open(tmp_path / "signed.nnfit", "pt") as handle:
        signature = handle.metadata()["signature"]
    assert signature.startswith("hmac-sha256:") and len(signature) == len("hmac-sha256:") + 64
    same = nf.load(tmp_path / "signed.nnfit", key=key)
    assert same.predict(testing).equals(fit.predict(testing))


def test_the_signature_is_an_hmac_of_the_checksum_under_the_key(mass, tmp_path):
    """An independent computation with the standard library's hmac."""
    import hashlib
    import hmac

    from safetensors import safe_open

    fit, _ = mass
    fit.save(tmp_path / "signed.nnfit", key=b"k")
    with safe_open(tmp_path / "signed.nnfit", "pt") as handle:
        header = handle.metadata()
    expected = hmac.new(b"k", b"nnfit-model-signature\x00" + header["checksum"].encode(), hashlib.sha256).hexdigest()
    assert header["signature"] == "hmac-sha256:" + expected


def test_checkpoints_and_luz_style_files_can_be_signed(tmp_path):
    X = torch.randn(20, 3)
    fitted = nf.setup(nn.Linear, loss="mse").set_hparams(in_features=3, out_features=1).fit(
        (X, X.sum(dim=1, keepdim=True)), epochs=1, seed=1, verbose=False)
    files.save_module(tmp_path / "linear.nnfit", fitted, key="k")
    module = nf.load(tmp_path / "linear.nnfit", module=nn.Linear, key="k")
    assert torch.equal(module.weight, fitted.model.weight)
    with pytest.raises(ModelFileError, match="is signed; load it with the key"):
        nf.load(tmp_path / "linear.nnfit", module=nn.Linear)


# ---------------------------------------------------------------------- what read accepts
def test_a_link_to_a_model_file_loads(mass, tmp_path):
    fit, testing = mass
    fit.save(tmp_path / "mass.nnfit")
    os.symlink(tmp_path / "mass.nnfit", tmp_path / "latest.nnfit")
    assert nf.load(tmp_path / "latest.nnfit").predict(testing).equals(fit.predict(testing))


def test_an_ensemble_and_an_embedding_pass_the_schema(penguins, tmp_path):
    with pytest.warns(MissingValuesWarning):
        ensemble = nf.mlp("species ~ . - year", data=penguins, hidden=[3, 2], epochs=1, seed=1, n_models=3,
                          dropout=0.1, verbose=False)
    ensemble.save(tmp_path / "ensemble.nnfit")
    assert nf.load(tmp_path / "ensemble.nnfit").predict(penguins, type="prob").equals(ensemble.predict(penguins, type="prob"))
    many = penguins.dropna().assign(label=lambda f: pd.Categorical([f"l{i % 12}" for i in range(len(f))]))
    embedded = nf.mlp("body_mass_g ~ label + flipper_length_mm", data=many, hidden=3, epochs=1, seed=1, embed="auto",
                      verbose=False)
    embedded.save(tmp_path / "embedded.nnfit")
    assert nf.load(tmp_path / "embedded.nnfit").predict(many).equals(embedded.predict(many))


def test_the_depth_check_agrees_with_json_on_nesting(tmp_path):
    from nnfit import schema

    for depth in (1, 2, 63, 64):
        schema.check_depth('{"a": ' * (depth - 1) + "[" + "]" + "}" * (depth - 1))
    with pytest.raises(schema.Refusal, match="more than 64 levels deep"):
        schema.check_depth("[[], " * 70 + "]" * 70)  # 70 levels, never more than 2 openers in a row
    schema.check_depth('["]]]]", "[[[[", "\\"[", {"k]": "{"}]')  # brackets in strings, escaped quotes
