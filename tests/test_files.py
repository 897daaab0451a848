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
