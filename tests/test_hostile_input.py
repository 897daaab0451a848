"""A catalogue of hostile input across Design, fit, predict, evaluate, save/load and the CLI.

Each refused case asserts the exception class and its exact message (or, where torch or
pandas supply part of it, the part nnfit writes), that no file was left behind in the
working folder, and that the fitted models did not change. The cases that nnfit handles
rather than refuses (missing and infinite values, one row, extreme magnitudes) assert the
result.
"""

import errno
import json
import os
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit import cli, files
from nnfit.errors import (
    ArgumentError,
    ArgumentTypeError,
    DataError,
    FormulaError,
    LevelError,
    MissingValuesWarning,
    ModelFileError,
    TrainingError,
)

X10 = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
Y10 = X10.sum(dim=1, keepdim=True)


def linear(out_features=1, loss="mse"):
    return nf.setup(nn.Linear, loss=loss).set_hparams(in_features=3, out_features=out_features)


@pytest.fixture(scope="module")
def models(penguins):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        training = penguins.iloc[:300]
        mass = nf.mlp("body_mass_g ~ . - year", data=training, hidden=4, epochs=2, seed=1, verbose=False)
        species = nf.mlp("species ~ . - year", data=training, hidden=4, epochs=2, seed=1, verbose=False)
    fitted = linear().fit((X10, Y10), epochs=2, seed=1, verbose=False)
    return {"mass": mass, "species": species, "linear": fitted}


def fingerprint(models):
    """Everything a fitted model holds, as comparable bytes and text."""
    out = {}
    for name, model in models.items():
        module = model.model
        out[name] = (
            {k: v.detach().numpy().tobytes() for k, v in module.state_dict().items()},
            repr(model.design.to_dict()) if hasattr(model, "design") else "",
            repr(getattr(model, "history", getattr(model, "records", None))),
        )
    return out


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture()
def env(models, penguins, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written with a relative path lands here
    return type("Env", (), {"models": models, "penguins": penguins, "tmp": tmp_path, **models})


def refuses(env, call, error, message):
    """``call()`` raises ``error`` with ``message`` (a string, or a compiled pattern for fullmatch);
    no file appears or disappears and no fitted model changes."""
    before_files, before_models = listing(env.tmp), fingerprint(env.models)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValuesWarning)
        with pytest.raises(error) as caught:
            call()
    text = str(caught.value)
    if isinstance(message, re.Pattern):
        assert message.fullmatch(text), text
    else:
        assert text == message
    assert type(caught.value).__module__ == "nnfit.errors"
    assert listing(env.tmp) == before_files
    assert fingerprint(env.models) == before_models
    return caught.value


# ====================================================================== Design
def test_design_formula_not_a_string(env):
    refuses(env, lambda: nf.Design(3), ArgumentTypeError, "formula must be a string such as 'y ~ x', not int.")


def test_design_formula_without_tilde(env):
    refuses(env, lambda: nf.Design("body_mass_g"), FormulaError,
            "The formula 'body_mass_g' has no '~'; write it as 'response ~ predictors'.")


@pytest.mark.parametrize("data, kind", [({"a": [1]}, "dict"), (np.zeros((3, 2)), "ndarray"), ("penguins.csv", "str")])
def test_design_data_of_the_wrong_type(env, data, kind):
    refuses(env, lambda: nf.Design("y ~ x").fit(data), ArgumentTypeError,
            f"data must be a pandas (or polars) DataFrame, not {kind}.")


def test_design_empty_frame(env):
    refuses(env, lambda: nf.Design("body_mass_g ~ .").fit(env.penguins.iloc[:0]), DataError, "The training data has no rows.")


def test_design_duplicate_column_names(env):
    frame = env.penguins.copy()
    frame.columns = ["species", "island", "bill", "bill", "flipper", "body_mass_g", "sex", "year"]
    refuses(env, lambda: nf.Design("body_mass_g ~ .").fit(frame), DataError,
            "The data has more than one column named 'bill'; rename them so that each column has its own name.")


def test_design_column_of_mixed_types(env):
    frame = env.penguins.copy()
    frame["bill_length_mm"] = frame["bill_length_mm"].astype(object)
    frame.loc[4, "bill_length_mm"] = "39,1"
    refuses(env, lambda: nf.Design("body_mass_g ~ .").fit(frame), DataError,
            "Column 'bill_length_mm' is numeric but holds the non-numeric value '39,1' (row 4); fix or remove it, "
            "or make the column a factor.")


def test_design_all_missing_column(env):
    frame = env.penguins.assign(bill_depth_mm=np.nan)
    refuses(env, lambda: nf.Design("body_mass_g ~ . - year").fit(frame), DataError,
            "No rows are left after leaving out the 344 rows with a missing value (body_mass_g: 2, bill_length_mm: 2, "
            "bill_depth_mm: 344, flipper_length_mm: 2, sex: 11).")


def test_design_response_with_one_class(env):
    adelie = env.penguins[env.penguins["species"] == "Adelie"]
    refuses(env, lambda: nf.Design("species ~ bill_length_mm").fit(adelie), DataError,
            "The response 'species' has only one level in the training data ('Adelie'); a classifier needs at least two.")


def test_design_unknown_column_in_formula(env):
    refuses(env, lambda: nf.Design("body_mass_g ~ flipper_length").fit(env.penguins), FormulaError,
            "The formula 'body_mass_g ~ flipper_length' uses 'flipper_length', which is not a column of the data "
            "(did you mean 'flipper_length_mm', 'bill_length_mm'?).")


def test_design_unseen_level(env):
    design = nf.Design("body_mass_g ~ island").fit(env.penguins)
    new = env.penguins.head(3).assign(island=["Biscoe", "Anvers", "Dream"])
    refuses(env, lambda: design.transform(new), LevelError,
            "Column 'island' has the level 'Anvers', which training never saw (levels: Biscoe, Dream, Torgersen).")


def test_design_missing_column_at_transform(env):
    design = nf.Design("body_mass_g ~ sex + island").fit(env.penguins)
    refuses(env, lambda: design.transform(env.penguins.drop(columns="sex")), DataError,
            "The data has no column 'sex', which the design uses.")


def test_design_text_where_training_had_numbers(env):
    design = nf.Design("body_mass_g ~ bill_length_mm").fit(env.penguins)
    new = env.penguins.head(3).assign(bill_length_mm=["39.1", "n/a", "40.3"])
    refuses(env, lambda: design.transform(new), DataError,
            "Column 'bill_length_mm' must be numeric, as in training, but holds 'n/a' (row 1).")


def test_design_used_before_fit(env):
    refuses(env, lambda: nf.Design("body_mass_g ~ .").transform(env.penguins), ArgumentError,
            "This Design is not fitted yet; call design.fit(training) first.")


def test_design_bad_scale_argument(env):
    refuses(env, lambda: nf.Design("body_mass_g ~ .", scale="yes"), ArgumentError,
            "scale must be True, False or 'numeric', not 'yes'.")


def test_design_decode_codes_out_of_range(env):
    design = nf.Design("species ~ bill_length_mm").fit(env.penguins)
    refuses(env, lambda: design.decode([0, 3]), ArgumentError, "Class codes must lie in 0..2; got 0..3.")


def test_design_values_beyond_float32(env):
    frame = env.penguins.dropna().assign(bill_length_mm=lambda f: f["bill_length_mm"] * 1e40)
    design = nf.Design("body_mass_g ~ bill_length_mm", scale=False).fit(frame)
    refuses(env, lambda: design.tensors(frame), DataError,
            re.compile(r"Column 'bill_length_mm' has values as large as 5\.96e\+41, beyond the float32 range of "
                       r"tensors \(3\.4e\+38\); standardize it \(scale=True\) or change its units\."))


# ====================================================================== fit
def test_fit_x_and_y_lengths_differ(env):
    refuses(env, lambda: linear().fit((X10, Y10[:5]), epochs=1), DataError, "X has 10 rows but y has 5; they must match.")


def test_fit_data_of_the_wrong_type(env):
    refuses(env, lambda: linear().fit("data.csv", epochs=1), ArgumentTypeError,
            "data must be a tuple (X, y) of tensors or arrays, a torch Dataset or a DataLoader, not str.")


def test_fit_tuple_of_three(env):
    refuses(env, lambda: linear().fit((X10, Y10, Y10), epochs=1), ArgumentError,
            "data as a tuple must be (X, y) or (X,), not a tuple of 3 items.")


def test_fit_text_in_x(env):
    refuses(env, lambda: linear().fit((np.array([["a", "b", "c"]] * 10), Y10), epochs=1), DataError,
            "X holds non-numeric values (dtype <U1); encode them first, e.g. with nf.Design.")


def test_fit_nan_in_predictors(env):
    X = X10.clone()
    X[6, 1] = float("nan")
    refuses(env, lambda: linear().fit((X, Y10), epochs=1, verbose=False), DataError,
            "X in the data has 1 NaN or infinite value(s), the first in row 6; remove or impute them before fitting "
            "(nf.Design and nf.mlp leave such rows out).")


def test_fit_infinity_in_response(env):
    y = Y10.clone()
    y[[2, 5]] = float("-inf")
    refuses(env, lambda: linear().fit((X10, y), epochs=1, verbose=False), DataError,
            "y in the data has 2 NaN or infinite value(s), the first in row 2; remove or impute them before fitting "
            "(nf.Design and nf.mlp leave such rows out).")


def test_fit_empty_tensors(env):
    refuses(env, lambda: linear().fit((X10[:0], Y10[:0]), epochs=1), DataError, "The data has no rows.")


@pytest.mark.parametrize("epochs, message", [
    (0, "epochs must be a positive whole number, not 0."),
    (2.5, "epochs must be a positive whole number, not 2.5."),
    ((5, 2), "epochs=(min, max) needs min <= max; got (5, 2)."),
])
def test_fit_bad_epochs(env, epochs, message):
    refuses(env, lambda: linear().fit((X10, Y10), epochs=epochs), ArgumentError, message)


def test_fit_bad_batch_size(env):
    refuses(env, lambda: linear().fit((X10, Y10), batch_size=0), ArgumentError,
            "batch_size must be a positive whole number or None, not 0.")


def test_fit_bad_validation_fraction(env):
    refuses(env, lambda: linear().fit((X10, Y10), valid_data=1.5, verbose=False), ArgumentError,
            "valid_data as a fraction must lie strictly between 0 and 1, not 1.5.")


def test_fit_integer_x_for_a_float_network(env):
    refuses(env, lambda: linear().fit((X10.long(), Y10), epochs=1, verbose=False), TrainingError,
            "Linear.forward failed in epoch 1, batch 1: RuntimeError: mat1 and mat2 must have the same dtype, "
            "but got Long and Float")


def test_fit_response_shape_that_would_broadcast(env):
    refuses(env, lambda: linear().fit((X10, Y10[:, 0]), epochs=1, verbose=False), TrainingError,
            "the loss failed in epoch 1, batch 1: UserWarning: Using a target size (torch.Size([10])) that is "
            "different to the input size (torch.Size([10, 1])). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.")


def test_fit_x_of_the_wrong_width(env):
    refuses(env, lambda: linear().fit((torch.randn(10, 4), Y10), epochs=1, verbose=False), TrainingError,
            "Linear.forward failed in epoch 1, batch 1: RuntimeError: mat1 and mat2 shapes cannot be multiplied "
            "(10x4 and 3x1)")


def test_fit_class_codes_beyond_the_outputs(env):
    refuses(env, lambda: linear(2, "cross_entropy").fit((X10, torch.full((10,), 7)), epochs=1, verbose=False),
            TrainingError, "the loss failed in epoch 1, batch 1: IndexError: Target 7 is out of bounds.")


def test_fit_callback_class_instead_of_instance(env):
    refuses(env, lambda: linear().fit((X10, Y10), epochs=1, verbose=False, callbacks=[nf.callbacks.EarlyStopping]),
            ArgumentTypeError, "callbacks takes instances; got the class EarlyStopping. Write EarlyStopping(...) instead.")


def test_setup_with_something_that_is_not_a_module(env):
    refuses(env, lambda: nf.setup("mlp", loss="mse"), ArgumentTypeError,
            "setup takes an nn.Module class or instance, not 'mlp'.")


def test_setup_with_an_unknown_optimizer(env):
    refuses(env, lambda: nf.setup(nn.Linear, loss="mse", optimizer="adamax2"), ArgumentError,
            "Unknown optimizer 'adamax2'; choose one of: adagrad, adam, adamw, rmsprop, sgd.")


def test_mlp_data_that_is_a_file_name(env):
    refuses(env, lambda: nf.mlp("body_mass_g ~ .", data="penguins.csv"), ArgumentTypeError,
            "data must be a pandas (or polars) DataFrame, not str.")


def test_mlp_response_with_one_class(env):
    adelie = env.penguins[env.penguins["species"] == "Adelie"]
    refuses(env, lambda: nf.mlp("species ~ bill_length_mm", data=adelie, epochs=1), DataError,
            "The response 'species' has only one level in the training data ('Adelie'); a classifier needs at least two.")


def test_mlp_bad_dropout(env):
    refuses(env, lambda: nf.mlp("body_mass_g ~ . - year", data=env.penguins, dropout=1.5, epochs=1), ArgumentError,
            "dropout must lie in [0, 1), not 1.5.")


def test_mlp_bad_hidden_size(env):
    refuses(env, lambda: nf.mlp("body_mass_g ~ . - year", data=env.penguins, hidden=[10, 0], epochs=1), ArgumentError,
            "hidden layer sizes must be positive whole numbers, not 0.")


# ====================================================================== predict
def test_predict_unseen_level(env):
    new = env.penguins.head(4).assign(island=["Biscoe", "Biscoe", "Anvers", "Dream"])
    refuses(env, lambda: env.mass.predict(new), LevelError,
            "Column 'island' has the level 'Anvers', which training never saw (levels: Biscoe, Dream, Torgersen).")


def test_predict_missing_column(env):
    refuses(env, lambda: env.species.predict(env.penguins.drop(columns="flipper_length_mm")), DataError,
            "The data has no column 'flipper_length_mm', which the design uses.")


def test_predict_data_of_the_wrong_type(env):
    refuses(env, lambda: env.mass.predict(env.penguins.to_dict()), ArgumentTypeError,
            "data must be a pandas (or polars) DataFrame, not dict.")


def test_predict_text_in_a_numeric_column(env):
    new = env.penguins.head(3).assign(flipper_length_mm=["181", "186", "tall"])
    refuses(env, lambda: env.mass.predict(new), DataError,
            "Column 'flipper_length_mm' must be numeric, as in training, but holds 'tall' (row 2).")


def test_predict_duplicate_column_names(env):
    new = env.penguins.head(3)
    new = pd.concat([new, new[["sex"]]], axis=1)
    refuses(env, lambda: env.mass.predict(new), DataError,
            "The data has more than one column named 'sex'; rename them so that each column has its own name.")


def test_predict_tensor_of_the_wrong_width(env):
    refuses(env, lambda: env.linear.predict(torch.randn(2, 5)), TrainingError,
            "Linear failed while predicting: RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x5 and 3x1)")


def test_predict_with_a_string(env):
    refuses(env, lambda: env.linear.predict("new.csv"), ArgumentTypeError,
            "data must be a tuple (X, y) of tensors or arrays, a torch Dataset or a DataLoader, not str.")


# ====================================================================== evaluate
def test_evaluate_without_the_response(env):
    refuses(env, lambda: env.mass.evaluate(env.penguins.drop(columns="body_mass_g")), DataError,
            "evaluate needs the response: the data has no column 'body_mass_g'.")


def test_evaluate_with_an_all_missing_response(env):
    refuses(env, lambda: env.mass.evaluate(env.penguins.assign(body_mass_g=np.nan)), DataError,
            "No rows to score: every row has a missing value.")


def test_evaluate_response_level_training_never_saw(env):
    new = env.penguins.dropna().head(3).assign(species=["Adelie", "Emperor", "Gentoo"])
    refuses(env, lambda: env.species.evaluate(new), LevelError,
            "Column 'species' has the level 'Emperor', which training never saw (levels: Adelie, Chinstrap, Gentoo).")


def test_evaluate_tensors_without_targets(env):
    refuses(env, lambda: env.linear.evaluate(X10), ArgumentError, "evaluate needs targets: pass (X, y).")


# ====================================================================== save and load
def test_load_a_pickle(env):
    (env.tmp / "model.nnfit").write_bytes(pickle.dumps({"weights": [0.1, 0.2]}))
    refuses(env, lambda: nf.load("model.nnfit"), ModelFileError,
            "'model.nnfit' is a pickle (or torch.save) file; nnfit never loads those, because loading them can run "
            "code. Save models with fit.save().")


def test_load_a_torch_save_file(env):
    torch.save(env.linear.model.state_dict(), env.tmp / "weights.pt")
    refuses(env, lambda: nf.load("weights.pt"), ModelFileError,
            "'weights.pt' is a pickle (or torch.save) file; nnfit never loads those, because loading them can run "
            "code. Save models with fit.save().")


def test_load_a_truncated_file(env):
    env.mass.save("mass.nnfit")
    (env.tmp / "mass.nnfit").write_bytes((env.tmp / "mass.nnfit").read_bytes()[:-64])
    refuses(env, lambda: nf.load("mass.nnfit"), ModelFileError,
            re.compile(r"'mass\.nnfit' is not an nnfit model file or is corrupted \(.+\)\."))


def test_load_a_corrupted_file(env):
    env.mass.save("mass.nnfit")
    payload = bytearray((env.tmp / "mass.nnfit").read_bytes())
    payload[-10] ^= 0xFF
    (env.tmp / "mass.nnfit").write_bytes(bytes(payload))
    refuses(env, lambda: nf.load("mass.nnfit"), ModelFileError,
            "'mass.nnfit' is corrupted: its checksum does not match its contents.")


def test_load_an_edited_header(env):
    env.mass.save("mass.nnfit")
    payload = (env.tmp / "mass.nnfit").read_bytes().replace(b"body_mass_g ~ . - year", b"body_mass_g ~ . + year")
    (env.tmp / "mass.nnfit").write_bytes(payload)
    refuses(env, lambda: nf.load("mass.nnfit"), ModelFileError,
            "'mass.nnfit' is corrupted: its checksum does not match its contents.")


@pytest.mark.parametrize("rhs", [
    "bill_length_mm + I(__import__('os').system('touch pwned'))",
    "bill_length_mm + I(open('pwned', 'w'))",
    'bill_length_mm + I(f"{open(chr(112), chr(119))}")',
])
def test_load_a_file_whose_formula_would_run_code(env, rhs):
    """The checksum guards against accidents, not against someone who rewrites the file.

    What the design says about such a formula is the design's to word (its own tests pin
    it); here: a ModelFileError naming the file and the saved design, and no code ran."""
    env.mass.save("mass.nnfit")
    tensors, metadata = files.read(env.tmp / "mass.nnfit")
    metadata["design"]["formula"] = f"body_mass_g ~ {rhs}"
    files.write(env.tmp / "mass.nnfit", tensors, metadata)
    refuses(env, lambda: nf.load("mass.nnfit"), ModelFileError,
            re.compile(r"'mass\.nnfit' is not a valid nnfit model file: The saved design('s field 'parsed')? .+\."))
    assert not (env.tmp / "pwned").exists() and not (env.tmp / "p").exists()


def test_load_a_directory(env):
    (env.tmp / "models").mkdir()
    refuses(env, lambda: nf.load("models"), ModelFileError, "'models' is a directory, not a model file.")


def test_load_a_file_that_does_not_exist(env):
    refuses(env, lambda: nf.load("nothing.nnfit"), ModelFileError, "No model file at 'nothing.nnfit'.")


def test_save_to_a_directory(env):
    (env.tmp / "out").mkdir()
    refuses(env, lambda: env.mass.save("out"), ArgumentError, "Cannot write to 'out': it is a directory.")


def test_save_into_a_missing_folder(env):
    refuses(env, lambda: env.species.save("no/such/place.nnfit"), ArgumentError,
            "Cannot write 'no/such/place.nnfit': the folder 'no/such' does not exist.")


def test_save_into_a_read_only_folder(env, monkeypatch):
    folder = env.tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions: make the folder refuse as it would refuse a user

        real_open = os.open

        def refused(path, *args, **kwargs):
            if str(folder) in os.path.abspath(path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(files.os, "open", refused)
    try:
        refuses(env, lambda: env.mass.save("locked/mass.nnfit"), ArgumentError,
                "Cannot write 'locked/mass.nnfit': Permission denied.")
    finally:
        folder.chmod(0o755)


def test_save_over_an_existing_file_that_fails_keeps_the_old_one(env, monkeypatch):
    env.species.save("species.nnfit")
    before = (env.tmp / "species.nnfit").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        env.mass.save("species.nnfit")
    assert (env.tmp / "species.nnfit").read_bytes() == before
    assert listing(env.tmp) == ["species.nnfit"]


# ====================================================================== the command line
def cli_refuses(env, capsys, argv, message):
    """The CLI prints one line, exits with 1, leaves no file and changes no model."""
    before = listing(env.tmp)
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    if isinstance(message, re.Pattern):
        assert captured.err.startswith("nnfit: error: ") and captured.err.endswith("\n"), captured.err
        assert message.fullmatch(captured.err[len("nnfit: error: "):-1]), captured.err
    else:
        assert captured.err == f"nnfit: error: {message}\n"
    assert listing(env.tmp) == before


def test_cli_missing_data_file(env, capsys):
    cli_refuses(env, capsys, ["fit", "nosuch.csv", "y ~ x", "--out", "m"],
                f"No data file 'nosuch.csv', and no bundled data set of that name ({', '.join(nf.datasets.names())}).")


def test_cli_response_that_is_not_a_column(env, capsys):
    cli_refuses(env, capsys, ["fit", "penguins", "mass ~ .", "--out", "m"],
                "The response 'mass' is not a column of the data (did you mean 'body_mass_g'?).")


def test_cli_hidden_that_is_not_numbers(env, capsys):
    cli_refuses(env, capsys, ["fit", "penguins", "body_mass_g ~ .", "--out", "m", "--hidden", "ten,five"],
                "--hidden takes comma-separated numbers, not 'ten,five'.")


def test_cli_zero_epochs(env, capsys):
    cli_refuses(env, capsys, ["fit", "penguins", "body_mass_g ~ . - year", "--out", "m", "--epochs", "0"],
                "--epochs must be a positive whole number, not 0.")


def test_cli_csv_with_a_repeated_column(env, capsys):
    (env.tmp / "dup.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    cli_refuses(env, capsys, ["fit", "dup.csv", "b ~ .", "--out", "m"],
                "'dup.csv' has more than one column named 'a'; rename them so that each column has its own name.")


def test_cli_empty_csv(env, capsys):
    (env.tmp / "empty.csv").write_text("")
    cli_refuses(env, capsys, ["fit", "empty.csv", "b ~ a", "--out", "m"],
                "Cannot read 'empty.csv' as CSV: No columns to parse from file")


def test_cli_out_that_is_a_file(env, capsys):
    (env.tmp / "taken").write_text("keep me")
    cli_refuses(env, capsys, ["fit", "penguins", "body_mass_g ~ . - year", "--out", "taken", "--epochs", "1"],
                "--out 'taken' exists and is not a folder.")
    assert (env.tmp / "taken").read_text() == "keep me"


def test_cli_predict_from_a_folder_without_a_model(env, capsys):
    (env.tmp / "empty").mkdir()
    cli_refuses(env, capsys, ["predict", "empty", "penguins"], "No model file at 'empty/model.nnfit'.")


def test_cli_predict_with_a_pickle(env, capsys):
    (env.tmp / "evil.nnfit").write_bytes(pickle.dumps(["not", "a", "model"]))
    cli_refuses(env, capsys, ["predict", "evil.nnfit", "penguins"],
                "'evil.nnfit' is a pickle (or torch.save) file; nnfit never loads those, because loading them can run "
                "code. Save models with fit.save().")


def test_cli_predict_out_that_is_a_directory(env, capsys):
    env.mass.save("mass.nnfit")
    (env.tmp / "out").mkdir()
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "penguins", "--out", "out"],
                "Cannot write to 'out': it is a directory.")


def test_cli_evaluate_data_without_the_response(env, capsys):
    env.mass.save("mass.nnfit")
    (env.tmp / "new.csv").write_text("species,island\nAdelie,Dream\n")
    cli_refuses(env, capsys, ["evaluate", "mass.nnfit", "new.csv"],
                "evaluate needs the response: the data has no column 'body_mass_g'.")


# ====================================================================== model files that lie
# A lying file is refused for the price of reading its header: each case measures the peak
# memory (Python's allocations, and the process's resident high-water mark) of the refusal
# against loading the honest file it was made from.
MB = 2**20


def _cost(call):
    """(peak traced bytes, growth of the resident high-water mark in bytes) of call()."""
    import resource
    import tracemalloc

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        call()
    except ModelFileError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return peak, grown


def refuses_cheaply(env, honest, lying, message):
    """nf.load(lying) is refused with ``message`` (as ``refuses`` checks), for no more than ten
    times the memory of loading ``honest``, plus a few MB. (Its time is not asserted: on a
    shared machine a timing is noise; memory is what a lying file must not get.)

    Reading a file costs memory in proportion to its size (parsing JSON does), so a lying file
    may also use up to 64 bytes per byte it holds; what it must never get is memory in
    proportion to the sizes it declares (1.6 GB for two layers of 20,000 units)."""
    nf.load(honest)  # warm the imports both loads use
    honest_peak, honest_grown = _cost(lambda: nf.load(honest))
    refuses(env, lambda: nf.load(lying), ModelFileError, message)
    peak, grown = _cost(lambda: nf.load(lying))
    size = os.stat(lying).st_size if os.path.isfile(lying) and not os.path.islink(lying) else 0
    assert peak < 10 * honest_peak + 4 * MB + 64 * size, (peak, honest_peak, size)
    assert grown < 10 * honest_grown + 64 * MB, (grown, honest_grown)


def _honest(env, name="mass"):
    getattr(env, name).save(f"{name}.nnfit")
    return files.read(f"{name}.nnfit")


def honest_file(env, name="mass"):
    getattr(env, name).save(f"{name}.nnfit")
    return f"{name}.nnfit"


def lie(env, edit, name="mass"):
    """An honest file, its metadata changed by ``edit`` and its checksum made right again
    (as anyone who edits a file on purpose would); returns (honest path, lying path)."""
    tensors, metadata = _honest(env, name)
    edit(metadata, tensors)
    files.write("lying.nnfit", tensors, metadata)
    return f"{name}.nnfit", "lying.nnfit"


def lie_in_text(env, old, new, name="mass"):
    """As ``lie``, but on the metadata's JSON text (for JSON that Python could not even dump)."""
    from safetensors.torch import save

    tensors, metadata = _honest(env, name)
    text = json.dumps(metadata, sort_keys=True)
    assert old in text
    text = text.replace(old, new, 1)
    (env.tmp / "lying.nnfit").write_bytes(save(tensors, metadata={"nnfit": text, "checksum": files._checksum(tensors, text)}))
    return f"{name}.nnfit", "lying.nnfit"


def raw_file(path, header, data=b"", length=None):
    """A safetensors file written by hand: 8 bytes of header length, the header, the data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(text) if length is None else length
    path.write_bytes(size.to_bytes(8, "little") + text + data)


def _meta(text="{}"):
    return {"nnfit": text, "checksum": "0"}


def _p(env, name="mass"):
    return len(getattr(env, name).design.columns)


def test_a_file_declaring_two_layers_of_20000_units_is_refused_without_building_them(env):
    def edit(metadata, tensors):
        metadata["architecture"].update(hidden=[20000, 20000], activation=["relu", "relu"], dropout=[0.0, 0.0])

    honest, lying = lie(env, edit)
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: architecture needs the tensor "
                                        "'hidden.1.weight', which the file does not hold.")


def test_a_layer_wider_than_its_tensor_is_refused_naming_the_field(env):
    honest, lying = lie(env, lambda m, t: m["architecture"].update(hidden=[20000]))
    p = _p(env)
    refuses_cheaply(env, honest, lying, f"'lying.nnfit' is not a valid nnfit model file: architecture.hidden[0] is "
                                        f"20000, but the tensor 'hidden.0.weight' has the shape [4, {p}] (expected [20000, {p}]).")


def test_20000_dropout_entries_are_refused_by_their_count(env):
    honest, lying = lie(env, lambda m, t: m["architecture"].update(dropout=[0.1] * 20000))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: architecture.dropout has 20000 "
                                        "values, but architecture.hidden has 1 layers.")


def test_20000_layers_are_refused_by_the_layer_cap(env):
    def edit(metadata, tensors):
        metadata["architecture"].update(hidden=[1] * 20000, activation=["relu"] * 20000, dropout=[0.0] * 20000)

    honest, lying = lie(env, edit)
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: architecture.hidden must be a "
                                        "list of at most 256 layer sizes, not [" + "1, " * 18 + "1,....")


def test_20000_activations_are_refused_by_their_count(env):
    honest, lying = lie(env, lambda m, t: m["architecture"].update(activation=["relu"] * 20000))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: architecture.activation has "
                                        "20000 values, but architecture.hidden has 1 layers.")


@pytest.mark.parametrize("field, value, message", [
    ("input_size", 20000, "architecture.input_size is 20000, but the tensor 'hidden.0.weight' has the shape [4, P] "
                          "(expected [4, 20000])"),
    ("output_size", 20000, "architecture.output_size is 20000, but the tensor 'output.weight' has the shape [1, 4] "
                           "(expected [20000, 4])"),
    ("input_size", -1, "architecture.input_size is -1, not a whole number from 0 to 16777216"),
    ("output_size", 2**40, "architecture.output_size is 1099511627776, not a whole number from 1 to 16777216"),
    ("hidden", [True], "architecture.hidden[0] is True, not a whole number from 1 to 16777216"),
    ("hidden", "4", "architecture.hidden must be a list of at most 256 layer sizes, not '4'"),
    ("activation", ["evil"], "architecture.activation[0] is 'evil', not one of relu, sigmoid, tanh, identity, linear, "
                             "elu, gelu, leaky_relu, silu, softplus"),
    ("activation", ["x" * 10**6], "architecture.activation[0] is '" + "x" * 56 + "..., not the name of an activation"),
    ("dropout", [1.5], "architecture.dropout[0] is 1.5, not a probability in [0, 1)"),
    ("dropout", [float("nan")], "architecture.dropout[0] is nan, not a probability in [0, 1)"),
    ("embeddings", [[10**7, 50]], "architecture needs the tensor 'embed.0.weight', which the file does not hold"),
    ("n_models", 10**6, "architecture.n_models is 1000000, not a whole number from 1 to 10000"),
    ("n_models", 2, "architecture.dropout has 1 values, but architecture.n_models is 2"),
    ("code", "__import__('os')", "architecture has the unknown field 'code'"),
])
def test_each_architecture_field_is_checked_against_caps_and_tensors(env, field, value, message):
    honest, lying = lie(env, lambda m, t: m["architecture"].__setitem__(field, value))
    message = message.replace("[4, P]", f"[4, {_p(env)}]")
    refuses_cheaply(env, honest, lying, f"'lying.nnfit' is not a valid nnfit model file: {message}.")


def test_a_stacked_file_with_more_models_than_its_tensors_is_refused(env, penguins):
    ensemble = nf.mlp("body_mass_g ~ bill_length_mm", data=penguins.dropna().head(40), hidden=3, epochs=1, seed=1,
                      n_models=2, verbose=False)
    ensemble.save("ensemble.nnfit")
    tensors, metadata = files.read("ensemble.nnfit")
    metadata["architecture"].update(n_models=3, dropout=[[0.0]] * 3)
    files.write("lying.nnfit", tensors, metadata)
    refuses_cheaply(env, "ensemble.nnfit", "lying.nnfit", "'lying.nnfit' is not a valid nnfit model file: "
                    "architecture.n_models is 3, but the tensor 'weights.0' has the shape [2, 1, 3] (expected [3, 1, 3]).")


def test_a_file_with_nan_weights_is_refused(env):
    honest, lying = lie(env, lambda m, t: t["output.bias"].fill_(float("nan")))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: the tensor 'output.bias' holds "
                                        "NaN or infinite values (a fit that diverged, or a damaged file).")


def test_a_stacked_file_whose_dropout_tensor_differs_from_its_architecture_is_refused(env, penguins):
    ensemble = nf.mlp("body_mass_g ~ bill_length_mm", data=penguins.dropna().head(40), hidden=3, epochs=1, seed=1,
                      n_models=2, dropout=0.2, verbose=False)
    ensemble.save("ensemble.nnfit")
    tensors, metadata = files.read("ensemble.nnfit")
    tensors["dropout"] = torch.full((2, 1), 1.5)
    files.write("lying.nnfit", tensors, metadata)
    refuses_cheaply(env, "ensemble.nnfit", "lying.nnfit", "'lying.nnfit' is not a valid nnfit model file: the tensor "
                    "'dropout' does not hold the rates of architecture.dropout.")


def test_an_embedding_table_with_more_rows_than_levels_is_refused(env, penguins):
    embedded = nf.mlp("body_mass_g ~ island + flipper_length_mm", data=penguins.dropna(), hidden=2, epochs=1, seed=1,
                      embed=["island"], verbose=False)
    embedded.save("embedded.nnfit")
    tensors, metadata = files.read("embedded.nnfit")
    size = metadata["architecture"]["embeddings"][0][1]
    metadata["architecture"]["embeddings"] = [[10, size]]
    tensors["embed.0.weight"] = torch.zeros(10, size)
    files.write("lying.nnfit", tensors, metadata)
    refuses_cheaply(env, "embedded.nnfit", "lying.nnfit", "'lying.nnfit' is not a valid nnfit model file: "
                    "architecture.embeddings[0][0] is 10 rows, but the embedded factor 'island' has 3 levels.")


def test_a_tensor_the_architecture_has_no_place_for_is_refused(env):
    honest, lying = lie(env, lambda m, t: t.__setitem__("extra.weight", torch.zeros(3)))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: the file holds the tensor "
                                        "'extra.weight', which architecture has no place for.")


@pytest.mark.parametrize("field", ["task", "design", "architecture", "settings", "history"])
def test_a_missing_top_level_field_is_named(env, field):
    honest, lying = lie(env, lambda m, t: m.pop(field))
    refuses_cheaply(env, honest, lying, f"'lying.nnfit' is not a valid nnfit model file: the field {field!r} is missing.")


@pytest.mark.parametrize("field", ["formula", "optimizer", "batch_size", "n_train"])
def test_a_missing_setting_is_named(env, field):
    honest, lying = lie(env, lambda m, t: m["settings"].pop(field))
    refuses_cheaply(env, honest, lying,
                    f"'lying.nnfit' is not a valid nnfit model file: the field 'settings.{field}' is missing.")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(task="regresion"), "task is 'regresion', not one of regression, binary, multiclass"),
    (lambda m: m.update(design=["a", "list"]), "design is a list, not an object"),
    (lambda m: m.update(settings="fast"), "settings is a text, not an object"),
    (lambda m: m.update(history={"rows": 3}), "history is an object, not a list of rows"),
    (lambda m: m["history"].__setitem__(0, ["train", "loss"]),
     "history[0] is ['train', 'loss'], not a row [set, metric, epoch, value] or [set, metric, epoch, value, model]"),
    (lambda m: m["history"].__setitem__(1, ["train", "loss", -1, 0.5]),
     "history[1] is ['train', 'loss', -1, 0.5], not a row [set, metric, epoch, value] or [set, metric, epoch, value, model]"),
    (lambda m: m["history"].__setitem__(0, ["train", "loss", 1, None]),
     "history[0] is ['train', 'loss', 1, None], not a row [set, metric, epoch, value] or [set, metric, epoch, value, model]"),
    (lambda m: m["settings"].update(batch_size=-32), "settings.batch_size is -32, not a positive whole number or null"),
    (lambda m: m["settings"].update(n_train="all"), "settings.n_train is 'all', not a whole number of rows"),
    (lambda m: m["settings"].update(formula=["y", "x"]), "settings.formula is ['y', 'x'], not a text"),
    (lambda m: m["settings"].update(lr=-0.01), "settings.lr is -0.01, not a learning rate (or a list of them)"),
])
def test_each_setting_and_history_row_is_checked(env, edit, message):
    honest, lying = lie(env, lambda m, t: edit(m))
    refuses_cheaply(env, honest, lying, f"'lying.nnfit' is not a valid nnfit model file: {message}.")


def test_a_scaling_centre_shorter_than_the_columns_is_refused(env):
    honest, lying = lie(env, lambda m, t: m["design"].update(center=[0.0]))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: The saved design's field "
                                        f"'center' must hold {_p(env)} numbers, one per column.")


def test_scale_values_longer_than_the_columns_are_refused(env):
    honest, lying = lie(env, lambda m, t: m["design"].update(scale_values=[1.0] * 50))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: The saved design's field "
                                        f"'scale_values' must hold {_p(env)} numbers, one per column.")


def test_a_response_scale_of_the_wrong_length_is_refused(env):
    honest, lying = lie(env, lambda m, t: m["design"].update(response_scale=[1.0, 2.0]))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: The saved design's field "
                                        "'response_scale' must hold 1 numbers, one per column.")


def test_a_levels_list_shorter_than_the_outputs_is_refused(env):
    def edit(metadata, tensors):
        metadata["design"]["levels"] = ["Adelie", "Gentoo"]
        metadata["design"]["variables"]["species"]["levels"] = ["Adelie", "Gentoo"]

    honest, lying = lie(env, edit, name="species")
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: design.levels has 2 levels, "
                                        "but architecture.output_size is 3.")


def test_a_classifier_file_claiming_to_be_a_regression_is_refused(env):
    honest, lying = lie(env, lambda m, t: m.update(task="regression"), name="species")
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: task is 'regression', but the "
                                        "design's response is a factor.")


def test_a_regression_file_claiming_to_be_a_classifier_is_refused(env):
    honest, lying = lie(env, lambda m, t: m.update(task="multiclass"))
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: task is 'multiclass', but the "
                                        "design's response is numeric.")


@pytest.mark.parametrize("dtype", ["U500000000", "<U500000000", "S1000000000", "object", "V99999999", "O", "float128"])
def test_a_stored_array_with_a_text_or_huge_dtype_is_refused_before_numpy_sees_it(env, dtype):
    def edit(metadata, tensors):
        metadata["design"]["transform_state"] = {"poly(x)": {"__array__": ["a", "b"], "dtype": dtype}}

    honest, lying = lie(env, edit)
    refuses_cheaply(env, honest, lying, f"'lying.nnfit' is not a valid nnfit model file: design.transform_state.poly(x) "
                                        f"has the array dtype {dtype!r}; stored arrays hold only numbers (bool, float16, "
                                        "float32, float64, int16, int32, int64, int8, uint16, uint32, uint64, uint8).")


_DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("old, new", [
    ('"history": [', '"history": [' + _DEEP + ", "),
    ('"settings": {', '"settings": {"deep": ' + _DEEP + ", "),
    ('"design": {', '"design": {"deep": ' + "{\"a\": " * 100_000 + "1" + "}" * 100_000 + ", "),
])
def test_json_nested_100000_deep_is_refused_before_it_is_parsed(env, old, new):
    honest, lying = lie_in_text(env, old, new)
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: the metadata nests lists and "
                                        "objects more than 64 levels deep.")


def test_a_million_empty_lists_are_refused_before_they_are_parsed(env):
    honest, lying = lie_in_text(env, '"settings": {', '"settings": {"rows": [' + "[], " * 1_000_000 + "[]], ")
    refuses_cheaply(env, honest, lying, "'lying.nnfit' is not a valid nnfit model file: the metadata holds more than "
                                        "1000000 lists and objects.")


def test_brackets_inside_strings_do_not_count_as_nesting(env):
    honest, lying = lie(env, lambda m, t: m["settings"].update(note="[" * 1000 + "{" * 1000))
    assert nf.load(lying).settings["note"] == "[" * 1000 + "{" * 1000


# ---------------------------------------------------------------------- headers written by hand
_NNFIT = {"nnfit": json.dumps({"format": "nnfit-model", "format_version": 1, "kind": "mlp"}), "checksum": "0"}


def _tensor(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize("header, data, message", [
    ({"w": _tensor(dtype="U500000000")}, bytes(8),
     "the tensor 'w' has the dtype 'U500000000'; a model file holds only numbers (F64, F32, F16, BF16, I64, I32, I16, "
     "I8, U8, BOOL)"),
    ({"w": _tensor(dtype="STR")}, bytes(8),
     "the tensor 'w' has the dtype 'STR'; a model file holds only numbers (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)"),
    ({"w": _tensor(shape=(10**9,))}, bytes(8),
     "the tensor 'w' declares the shape [1000000000] of F32 (4000000000 bytes) but spans 8 bytes"),
    ({"w": _tensor(shape=(1,) * 9, offsets=(0, 4))}, bytes(4),
     "the tensor 'w' has the shape [1, 1, 1, 1, 1, 1, 1, 1, 1]; a shape is at most 8 whole numbers"),
    ({"w": _tensor(shape=(-2,))}, bytes(8), "the tensor 'w' has the shape [-2]; a shape is at most 8 whole numbers"),
    ({"w": _tensor(offsets=(8, 0))}, bytes(8), "the tensor 'w' has the byte offsets [8, 0], not [start, end]"),
    ({"w": _tensor(), "v": _tensor()}, bytes(8), "the tensors' byte offsets overlap or leave gaps"),
    ({"w": dict(_tensor(), code="print(1)")}, bytes(8),
     "the tensor 'w' is not described by exactly a dtype, a shape and data_offsets"),
    ({f"t{i}": _tensor(shape=(0,), offsets=(0, 0)) for i in range(10_001)}, b"",
     "the file declares 10001 tensors, more than the 10000 a model file may hold"),
])
def test_a_hand_written_header_that_lies_is_refused_before_any_tensor_is_read(env, header, data, message):
    raw_file(env.tmp / "lying.nnfit", dict(header, __metadata__=_NNFIT), data)
    refuses_cheaply(env, honest_file(env), "lying.nnfit",
                    f"'lying.nnfit' is not a valid nnfit model file: {message}.")


@pytest.mark.parametrize("data, message", [
    (bytes(4), "its tensors declare 8 bytes of data, but the file holds 4"),
    (bytes(108), "its tensors declare 8 bytes of data, but the file holds 108"),
])
def test_tensor_data_shorter_or_longer_than_declared_reads_as_corruption(env, data, message):
    raw_file(env.tmp / "lying.nnfit", {"w": _tensor(), "__metadata__": _NNFIT}, data)
    refuses(env, lambda: nf.load("lying.nnfit"), ModelFileError,
            f"'lying.nnfit' is not an nnfit model file or is corrupted ({message}).")


def test_a_header_length_of_a_terabyte_is_refused_without_reading(env):
    raw_file(env.tmp / "lying.nnfit", {"w": _tensor(), "__metadata__": _NNFIT}, bytes(8), length=2**40)
    size = (env.tmp / "lying.nnfit").stat().st_size
    refuses_cheaply(env, honest_file(env), "lying.nnfit", "'lying.nnfit' is not an nnfit model file or is "
                    f"corrupted (its header declares {2**40} bytes, but the file has {size}).")


def test_a_header_over_the_cap_is_refused_before_it_is_read(env, monkeypatch):
    from nnfit import schema

    raw_file(env.tmp / "big.nnfit", {"w": _tensor(), "__metadata__": _NNFIT}, bytes(8))
    declared = int.from_bytes((env.tmp / "big.nnfit").read_bytes()[:8], "little")
    monkeypatch.setattr(schema, "MAX_HEADER_BYTES", 64)
    refuses(env, lambda: nf.load("big.nnfit"), ModelFileError, f"'big.nnfit' is not a valid nnfit model file: its "
            f"header declares {declared} bytes, more than the 64 nnfit reads.")


def test_a_safetensors_header_nested_100000_deep_is_refused_before_it_is_parsed(env):
    raw_file(env.tmp / "lying.nnfit", b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    refuses_cheaply(env, honest_file(env), "lying.nnfit", "'lying.nnfit' is not a valid nnfit model "
                    "file: the safetensors header nests lists and objects more than 64 levels deep.")


def test_a_header_that_is_not_an_object_is_refused(env):
    raw_file(env.tmp / "lying.nnfit", ["not", "an", "object"])
    refuses(env, lambda: nf.load("lying.nnfit"), ModelFileError,
            "'lying.nnfit' is not an nnfit model file or is corrupted (its header is not a JSON object).")


def test_an_unterminated_string_of_escaped_quotes_is_refused_in_linear_time(env):
    """A naive string pattern backtracks quadratically on '"' followed by a million '\\"'."""
    raw_file(env.tmp / "lying.nnfit", b'{"w": "' + b'\\"' * 1_000_000)
    refuses_cheaply(env, honest_file(env), "lying.nnfit", re.compile(
        r"'lying\.nnfit' is not an nnfit model file or is corrupted \(Unterminated string starting at: .+\)\."))


def test_metadata_with_an_unterminated_string_is_refused_in_linear_time(env):
    raw_file(env.tmp / "lying.nnfit", {"__metadata__": {"nnfit": '{"format": "' + '\\"' * 1_000_000, "checksum": "0"}})
    refuses_cheaply(env, honest_file(env), "lying.nnfit", re.compile(
        r"'lying\.nnfit' is not an nnfit model file or is corrupted \(Unterminated string starting at: .+\)\."))


def test_brackets_that_do_not_pair_up_are_refused(env):
    raw_file(env.tmp / "lying.nnfit", b'{"w": [}' + b" " * 8)
    refuses(env, lambda: nf.load("lying.nnfit"), ModelFileError,
            "'lying.nnfit' is not an nnfit model file or is corrupted (Expecting value: line 1 column 8 (char 7)).")


@pytest.mark.parametrize("payload, detail", [(b"", "it is 0 bytes long"), (b"\x01\x00\x00\x00\x00\x00\x00", "it is 7 bytes long")])
def test_files_too_short_to_hold_a_header(env, payload, detail):
    (env.tmp / "short.nnfit").write_bytes(payload)
    refuses(env, lambda: nf.load("short.nnfit"), ModelFileError,
            f"'short.nnfit' is not an nnfit model file or is corrupted ({detail}).")


def test_a_format_version_of_5000_digits_is_refused(env):
    honest, lying = lie_in_text(env, '"format_version": 1', '"format_version": ' + "9" * 5000)
    refuses(env, lambda: nf.load(lying), ModelFileError,
            re.compile(r"'lying\.nnfit' is not an nnfit model file or is corrupted \(Exceeds the limit \(4300 digits\) "
                       r"for integer string conversion.*\)\."))


# ---------------------------------------------------------------------- only regular files
def _within(seconds, call):
    """call() in a thread; fails if it has not returned in ``seconds`` (it would block forever)."""
    import threading

    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "nf.load blocked"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_a_named_pipe_is_refused_without_blocking(env):
    os.mkfifo(env.tmp / "pipe.nnfit")
    refuses(env, lambda: _within(10, lambda: nf.load("pipe.nnfit")), ModelFileError,
            "'pipe.nnfit' is a named pipe, not a regular file; nnfit reads model files only from regular files.")


def test_a_link_to_dev_zero_is_refused_without_reading(env):
    os.symlink("/dev/zero", env.tmp / "zero.nnfit")
    honest = honest_file(env)
    refuses_cheaply(env, honest, "zero.nnfit", "'zero.nnfit' is a character device, not a regular file; nnfit reads "
                    "model files only from regular files.")


def test_dev_urandom_is_refused_without_reading(env):
    refuses(env, lambda: nf.load("/dev/urandom"), ModelFileError,
            "'/dev/urandom' is a character device, not a regular file; nnfit reads model files only from regular files.")


def test_a_unix_socket_is_refused(env):
    import socket

    server = socket.socket(socket.AF_UNIX)
    server.bind("model.sock")
    try:
        refuses(env, lambda: nf.load("model.sock"), ModelFileError,
                "'model.sock' is a socket, not a regular file; nnfit reads model files only from regular files.")
    finally:
        server.close()


def test_a_dangling_link_is_no_model_file(env):
    os.symlink("nowhere.nnfit", env.tmp / "dangling.nnfit")
    refuses(env, lambda: nf.load("dangling.nnfit"), ModelFileError, "No model file at 'dangling.nnfit'.")


# ---------------------------------------------------------------------- signed files
KEY = b"our team's secret"


def test_a_signed_file_without_the_key_is_refused(env):
    env.mass.save("signed.nnfit", key=KEY)
    refuses(env, lambda: nf.load("signed.nnfit"), ModelFileError,
            "'signed.nnfit' is signed; load it with the key it was signed with: nf.load(path, key=...).")


def test_an_unsigned_file_with_a_key_is_refused(env):
    env.mass.save("mass.nnfit")
    refuses(env, lambda: nf.load("mass.nnfit", key=KEY), ModelFileError,
            "'mass.nnfit' is not signed, so the key cannot vouch for it; load it without key= only if you trust where "
            "it came from, or sign it: fit.save(path, key=...).")


def test_a_signed_file_with_another_key_is_refused(env):
    env.mass.save("signed.nnfit", key=KEY)
    refuses(env, lambda: nf.load("signed.nnfit", key="another secret"), ModelFileError,
            "'signed.nnfit' was not signed with this key: it was changed after it was signed, or signed with another key.")


def test_a_signed_file_edited_with_a_recomputed_checksum_is_refused(env):
    """The checksum catches accidents; only the signature catches an edit made on purpose."""
    from safetensors import safe_open
    from safetensors.torch import save

    env.mass.save("signed.nnfit", key=KEY)
    tensors, metadata = files.read("signed.nnfit", key=KEY)
    with safe_open("signed.nnfit", "pt") as handle:
        signature = handle.metadata()["signature"]
    metadata["settings"]["formula"] = "body_mass_g ~ . + year"
    text = json.dumps(metadata, sort_keys=True)
    (env.tmp / "signed.nnfit").write_bytes(save(tensors, metadata={
        "nnfit": text, "checksum": files._checksum(tensors, text), "signature": signature}))
    refuses(env, lambda: nf.load("signed.nnfit", key=KEY), ModelFileError,
            "'signed.nnfit' was not signed with this key: it was changed after it was signed, or signed with another key.")


def test_a_signed_file_with_its_signature_stripped_is_refused_with_the_key(env):
    env.mass.save("signed.nnfit", key=KEY)
    tensors, metadata = files.read("signed.nnfit", key=KEY)
    files.write("signed.nnfit", tensors, metadata)  # rewritten without a signature
    refuses(env, lambda: nf.load("signed.nnfit", key=KEY), ModelFileError,
            "'signed.nnfit' is not signed, so the key cannot vouch for it; load it without key= only if you trust where "
            "it came from, or sign it: fit.save(path, key=...).")


@pytest.mark.parametrize("key, error, message", [
    (12345, ArgumentTypeError, "key must be bytes or a str (a secret your team shares), not int."),
    ("", ArgumentError, "key must not be empty; use a secret your team shares, e.g. secrets.token_hex(32)."),
    (b"", ArgumentError, "key must not be empty; use a secret your team shares, e.g. secrets.token_hex(32)."),
])
def test_a_bad_key_is_refused_before_anything_is_written(env, key, error, message):
    refuses(env, lambda: env.mass.save("signed.nnfit", key=key), error, message)


def test_a_bad_key_at_load_is_refused(env):
    env.mass.save("signed.nnfit", key=KEY)
    refuses(env, lambda: nf.load("signed.nnfit", key=3.5), ArgumentTypeError,
            "key must be bytes or a str (a secret your team shares), not float.")


# ---------------------------------------------------------------------- checkpoints and luz-style files
def test_a_checkpoint_with_a_text_dtype_is_refused(env):
    from nnfit.train import checkpoints

    files.write("ck.nnfit", {}, {"kind": "checkpoint", "module": "Net", "state": {"rng": {"__array__": ["a"],
                                                                                            "dtype": "U500000000"}}})
    refuses(env, lambda: checkpoints.read_checkpoint("ck.nnfit"), ModelFileError,
            "'ck.nnfit' is not a valid nnfit model file: state.rng has the array dtype 'U500000000'; stored arrays hold "
            "only numbers (bool, float16, float32, float64, int16, int32, int64, int8, uint16, uint32, uint64, uint8).")


def test_unpack_refuses_a_text_dtype_on_its_own(env):
    with pytest.raises(ValueError) as caught:
        files.unpack({"__array__": ["a"], "dtype": "U500000000"}, {})
    assert str(caught.value) == "a stored array has the dtype 'U500000000', not a numeric one"


def test_a_module_file_whose_hparams_ask_for_a_huge_network_is_refused_before_it_is_built(env):
    env.linear.save("linear.nnfit")
    tensors, metadata = files.read("linear.nnfit")
    metadata["hparams"] = {"in_features": 3, "out_features": 10**5}  # 1.2 MB of weights beside 16 bytes
    files.write("lying.nnfit", tensors, metadata)
    refuses(env, lambda: nf.load("lying.nnfit", module=nn.Linear), ModelFileError,
            "'lying.nnfit' is not a valid nnfit model file: its hparams {'in_features': 3, 'out_features': 100000} make "
            "Linear with 'weight' of shape [100000, 3], but the file holds [1, 3].")
    metadata["hparams"] = {"in_features": 10**6, "out_features": 10**6}  # 4 TB if it were built
    files.write("lying.nnfit", tensors, metadata)
    peak, grown = _cost(lambda: nf.load("lying.nnfit", module=nn.Linear))
    assert peak < 4 * MB and grown < 64 * MB


def test_a_checksum_that_is_not_ascii_reads_as_corruption(env):
    from safetensors.torch import save

    tensors, metadata = _honest(env)
    (env.tmp / "lying.nnfit").write_bytes(save(tensors, metadata={"nnfit": json.dumps(metadata), "checksum": "ü" * 64}))
    refuses(env, lambda: nf.load("lying.nnfit"), ModelFileError,
            "'lying.nnfit' is corrupted: its checksum does not match its contents.")


def test_a_checkpoint_whose_weights_name_missing_tensors_is_refused(env):
    files.write("ck.nnfit", {}, {"kind": "checkpoint", "module": "Linear", "state": {"model": {"weight": {"__tensor__": "w"}}}})
    refuses(env, lambda: nf.load("ck.nnfit", module=nn.Linear(3, 1)), ModelFileError,
            "'ck.nnfit' is not a valid nnfit model file: state.model ('w').")


def test_a_module_file_whose_hparams_are_not_an_object_is_refused(env):
    env.linear.save("linear.nnfit")
    tensors, metadata = files.read("linear.nnfit")
    metadata["hparams"] = ["in_features", 10**9]
    files.write("linear.nnfit", tensors, metadata)
    refuses(env, lambda: nf.load("linear.nnfit", module=nn.Linear), ModelFileError,
            "'linear.nnfit' is not a valid nnfit model file: hparams is not an object.")


# ====================================================================== the command line never destroys work
@pytest.fixture(scope="module")
def fitted_folder(tmp_path_factory):
    """What `nnfit fit` writes for a regression (copied into each test that needs an earlier fit)."""
    folder = tmp_path_factory.mktemp("cli") / "m"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["fit", "penguins", "body_mass_g ~ . - year", "--out", str(folder), "--hidden", "2",
                         "--epochs", "1", "--seed", "1"]) == 0
    return folder


def earlier_fit(env, fitted_folder, name="m"):
    import shutil

    shutil.copytree(fitted_folder, env.tmp / name)
    return env.tmp / name


@pytest.fixture()
def no_training(monkeypatch):
    """Fails the test if training starts: every argument must be checked before."""
    from nnfit import mlpfit

    def trained(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(mlpfit, "mlp", trained)


def dead_pid():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


FIT = ["fit", "penguins", "body_mass_g ~ . - year", "--out", "m", "--hidden", "2", "--epochs", "1"]


@pytest.mark.parametrize("options, message", [
    (["--lr", "-0.01"], "--lr must be a finite number above 0, not -0.01."),
    (["--lr", "nan"], "--lr must be a finite number above 0, not nan."),
    (["--lr", "inf"], "--lr must be a finite number above 0, not inf."),
    (["--lr", "0"], "--lr must be a finite number above 0, not 0.0."),
    (["--epochs", "-3"], "--epochs must be a positive whole number, not -3."),
    (["--batch-size", "0"], "--batch-size must be a positive whole number, not 0."),
    (["--valid", "1.5"], "--valid must lie strictly between 0 and 1, not 1.5."),
    (["--valid", "0"], "--valid must lie strictly between 0 and 1, not 0.0."),
    (["--dropout", "1"], "dropout must lie in [0, 1), not 1.0."),
    (["--dropout", "0.1,0.2"], "dropout has 2 values but there are 1 hidden layers."),
    (["--hidden", "0"], "hidden layer sizes must be positive whole numbers, not 0."),
    (["--activation", "nope"], "Unknown activation 'nope'; choose one of: elu, gelu, identity, leaky_relu, linear, relu, "
                               "sigmoid, silu, softplus, tanh."),
    (["--optimizer", "nope"], "Unknown optimizer 'nope'; choose one of: adagrad, adam, adamw, rmsprop, sgd."),
])
def test_cli_fit_checks_every_option_before_training(env, capsys, no_training, options, message):
    cli_refuses(env, capsys, FIT + options, message)


def test_cli_fit_refuses_a_folder_holding_a_users_file(env, capsys, no_training):
    (env.tmp / "m").mkdir()
    (env.tmp / "m" / "notes.txt").write_text("my notes")
    for overwrite in ([], ["--overwrite"]):
        cli_refuses(env, capsys, FIT + overwrite, "--out 'm' holds files nnfit did not write (notes.txt); nnfit never "
                    "replaces them: choose another folder, or move them away.")
    assert (env.tmp / "m" / "notes.txt").read_text() == "my notes"


def test_cli_fit_refuses_a_folder_with_the_users_own_model_file(env, capsys, no_training):
    (env.tmp / "m").mkdir()
    (env.tmp / "m" / "model.nnfit").write_bytes(b"the user's model")
    (env.tmp / "m" / "metrics.csv").write_text("a,b\n1,2\n")
    cli_refuses(env, capsys, FIT + ["--overwrite"], "--out 'm' holds files nnfit did not write (metrics.csv, "
                "model.nnfit); nnfit never replaces them: choose another folder, or move them away.")


def test_cli_fit_refuses_a_folder_named_model_nnfit_inside_out(env, capsys, no_training):
    (env.tmp / "m" / "model.nnfit").mkdir(parents=True)
    cli_refuses(env, capsys, FIT, "--out 'm' holds files nnfit did not write (model.nnfit); nnfit never replaces them: "
                "choose another folder, or move them away.")


def test_cli_fit_refuses_an_earlier_fit_without_overwrite(env, capsys, no_training, fitted_folder):
    earlier_fit(env, fitted_folder)
    cli_refuses(env, capsys, FIT, "--out 'm' holds an earlier fit (learning_curves.png, metrics.csv, model.nnfit, "
                "truth_vs_predicted.png); pass --overwrite to replace it, or choose another folder.")


def test_cli_fit_refuses_nnfit_files_the_user_changed(env, capsys, no_training, fitted_folder):
    folder = earlier_fit(env, fitted_folder)
    (folder / "metrics.csv").write_text("my edited metrics\n")
    cli_refuses(env, capsys, FIT + ["--overwrite"], "--out 'm' holds files changed since nnfit wrote them "
                "(metrics.csv); nnfit never replaces them: choose another folder, or move them away.")
    assert (folder / "metrics.csv").read_text() == "my edited metrics\n"


def test_cli_fit_refuses_a_listed_file_replaced_by_a_folder(env, capsys, no_training, fitted_folder):
    folder = earlier_fit(env, fitted_folder)
    (folder / "learning_curves.png").unlink()
    (folder / "learning_curves.png").mkdir()
    cli_refuses(env, capsys, FIT + ["--overwrite"], "--out 'm' holds files changed since nnfit wrote them "
                "(learning_curves.png); nnfit never replaces them: choose another folder, or move them away.")


def test_cli_fit_treats_a_broken_manifest_as_the_users_file(env, capsys, no_training, fitted_folder):
    folder = earlier_fit(env, fitted_folder)
    (folder / ".nnfit-manifest.json").write_text("{")
    cli_refuses(env, capsys, FIT + ["--overwrite"], "--out 'm' holds files nnfit did not write (.nnfit-manifest.json, "
                "learning_curves.png, metrics.csv, model.nnfit, truth_vs_predicted.png); nnfit never replaces them: "
                "choose another folder, or move them away.")


def test_cli_fit_does_not_take_a_users_file_named_like_a_temporary_for_its_own(env, capsys, no_training):
    (env.tmp / "m").mkdir()
    (env.tmp / "m" / f".notes.txt.{dead_pid()}-0123abcd.tmp").write_text("mine")
    cli_refuses(env, capsys, FIT, re.compile(r"--out 'm' holds files nnfit did not write \(\.notes\.txt\.\d+-0123abcd"
                                             r"\.tmp\); nnfit never replaces them: choose another folder, or move them away\."))


def test_cli_fit_keeps_a_dead_staging_folder_that_holds_a_users_folder(env, capsys, no_training):
    staging = env.tmp / "m" / f".nnfit-{dead_pid()}-0123abcd"
    (staging / "photos").mkdir(parents=True)
    cli_refuses(env, capsys, FIT, re.compile(r"--out 'm' holds files nnfit did not write \(\.nnfit-\d+-0123abcd\); "
                                             r"nnfit never replaces them: choose another folder, or move them away\."))


def test_cli_fit_out_that_is_the_data_file(env, capsys, no_training):
    env.penguins.to_csv(env.tmp / "data.csv", index=False)
    cli_refuses(env, capsys, ["fit", "data.csv", "body_mass_g ~ .", "--out", "data.csv"],
                "--out 'data.csv' is the data file; choose another folder for the model and plots.")


def test_cli_fit_out_below_a_file(env, capsys, no_training):
    (env.tmp / "data.csv").write_text("a,b\n1,2\n")
    cli_refuses(env, capsys, FIT[:3] + ["--out", "data.csv/m"],
                "--out 'data.csv/m' cannot be made: 'data.csv' is a file, not a folder.")


def test_cli_fit_into_a_read_only_folder(env, capsys, monkeypatch, no_training):
    def refused(path, mode=0o777):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(cli.os, "mkdir", refused)  # what a read-only folder does (root ignores permissions)
    cli_refuses(env, capsys, FIT, "Cannot write to --out 'm': Permission denied.")


def test_cli_fit_on_a_full_disk_leaves_nothing_and_keeps_the_earlier_fit(env, capsys, monkeypatch, fitted_folder):
    folder = earlier_fit(env, fitted_folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    cli_refuses(env, capsys, FIT + ["--overwrite"], "Cannot write 'm/model.nnfit': No space left on device.")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_cli_predict_refuses_to_write_over_its_data(env, capsys):
    env.mass.save("mass.nnfit")
    env.penguins.head(5).to_csv(env.tmp / "data.csv", index=False)
    before = (env.tmp / "data.csv").read_bytes()
    for out in ("data.csv", "./data.csv", str(env.tmp / "data.csv")):
        cli_refuses(env, capsys, ["predict", "mass.nnfit", "data.csv", "--out", out, "--overwrite"],
                    f"--out {out!r} is the data file; nnfit never writes over its input: choose another file.")
    os.link(env.tmp / "data.csv", env.tmp / "same.csv")
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "data.csv", "--out", "same.csv", "--overwrite"],
                "--out 'same.csv' is the data file; nnfit never writes over its input: choose another file.")
    assert (env.tmp / "data.csv").read_bytes() == before


def test_cli_predict_refuses_to_write_over_the_model(env, capsys):
    env.mass.save("mass.nnfit")
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "penguins", "--out", "mass.nnfit", "--overwrite"],
                "--out 'mass.nnfit' is the model file; choose another file for the predictions.")


def test_cli_predict_refuses_an_existing_file_without_overwrite(env, capsys):
    env.mass.save("mass.nnfit")
    (env.tmp / "old.csv").write_text("keep me\n")
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "penguins", "--out", "old.csv"],
                "--out 'old.csv' exists; pass --overwrite to replace it, or choose another file.")
    assert (env.tmp / "old.csv").read_text() == "keep me\n"


def test_cli_predict_into_a_missing_folder(env, capsys):
    env.mass.save("mass.nnfit")
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "penguins", "--out", "no/p.csv"],
                "Cannot write 'no/p.csv': the folder 'no' does not exist.")


def test_cli_predict_on_data_that_has_a_pred_column(env, capsys):
    """A second `nnfit predict` on the first one's output: refused, naming the column."""
    env.mass.save("mass.nnfit")
    env.penguins.head(5).to_csv(env.tmp / "data.csv", index=False)
    assert cli.main(["predict", "mass.nnfit", "data.csv", "--out", "pred.csv"]) == 0
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "pred.csv", "--out", "again.csv"],
                "The data already has the column '.pred', where nnfit puts its predictions (is it the output of an "
                "earlier 'nnfit predict'?); drop or rename that column first.")


def test_cli_predict_a_classifier_on_data_that_has_its_columns(env, capsys):
    env.species.save("species.nnfit")
    env.penguins.head(5).assign(**{".pred_Gentoo": 1.0}).to_csv(env.tmp / "data.csv", index=False)
    cli_refuses(env, capsys, ["predict", "species.nnfit", "data.csv"],
                "The data already has the column '.pred_Gentoo', where nnfit puts its predictions (is it the output of "
                "an earlier 'nnfit predict'?); drop or rename that column first.")


def test_cli_predict_on_a_full_disk(env, capsys, monkeypatch):
    env.mass.save("mass.nnfit")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "penguins", "--out", "p.csv"],
                "Cannot write 'p.csv': No space left on device.")


def test_cli_predict_into_a_read_only_folder(env, capsys, monkeypatch):
    env.mass.save("mass.nnfit")
    (env.tmp / "locked").mkdir()
    real_open = os.open

    def refused(path, *args, **kwargs):
        if "locked" in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", refused)
    cli_refuses(env, capsys, ["predict", "mass.nnfit", "penguins", "--out", "locked/p.csv"],
                "Cannot write 'locked/p.csv': Permission denied.")


def test_cli_predict_from_a_folder_whose_model_is_a_folder(env, capsys):
    (env.tmp / "m" / "model.nnfit").mkdir(parents=True)
    cli_refuses(env, capsys, ["predict", "m", "penguins"], "'m/model.nnfit' is a directory, not a model file.")
    cli_refuses(env, capsys, ["evaluate", "m", "penguins"], "'m/model.nnfit' is a directory, not a model file.")


def test_cli_predict_with_a_lying_model_file(env, capsys):
    honest, lying = lie(env, lambda m, t: m["architecture"].update(hidden=[20000]))
    p = _p(env)
    cli_refuses(env, capsys, ["predict", lying, "penguins"], f"'lying.nnfit' is not a valid nnfit model file: "
                f"architecture.hidden[0] is 20000, but the tensor 'hidden.0.weight' has the shape [4, {p}] "
                f"(expected [20000, {p}]).")


# ---------------------------------------------------------------------- leftovers of killed runs
def test_cli_fit_removes_leftovers_of_killed_runs_and_keeps_live_ones(env, capsys, fitted_folder):
    folder = earlier_fit(env, fitted_folder)
    dead = dead_pid()
    stale = folder / f".nnfit-{dead}-0123abcd"
    stale.mkdir()
    (stale / "model.nnfit").write_bytes(b"half a model")
    (folder / f".model.nnfit.{dead}-89abcdef.tmp").write_bytes(b"half a model")
    (env.tmp / f".nnfit-{dead}-00000000").mkdir()  # beside --out, where a first fit stages
    live = folder / f".metrics.csv.{os.getpid()}-0123abcd.tmp"  # a write still going (this process)
    live.write_bytes(b"being written")
    assert cli.main(FIT + ["--overwrite"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".nnfit-manifest.json", "learning_curves.png", "metrics.csv", "model.nnfit", "truth_vs_predicted.png", live.name])
    assert sorted(p.name for p in env.tmp.iterdir()) == ["m"]


def test_cli_fit_ignores_manifest_entries_outside_its_folder(env, capsys, fitted_folder):
    folder = earlier_fit(env, fitted_folder)
    victim = env.tmp / "victim.txt"
    victim.write_text("the user's file")
    manifest = json.loads((folder / ".nnfit-manifest.json").read_text())
    digest = __import__("hashlib").sha256(victim.read_bytes()).hexdigest()
    manifest["files"]["../victim.txt"] = [digest]
    manifest["files"][str(victim)] = [digest]
    (folder / ".nnfit-manifest.json").write_text(json.dumps(manifest))
    # The manifest's own hash is not checked (nnfit rewrites it); its outside entries are dropped.
    assert cli.main(FIT + ["--overwrite"]) == 0
    assert victim.read_text() == "the user's file"
    listed = json.loads((folder / ".nnfit-manifest.json").read_text())["files"]
    assert sorted(listed) == ["learning_curves.png", "metrics.csv", "model.nnfit", "truth_vs_predicted.png"]


# ---------------------------------------------------------------------- nnfit lab
@pytest.fixture()
def fake_labs(monkeypatch):
    import sys
    import types

    import nnfit

    labs = types.ModuleType("nnfit.labs")
    labs.LABS = {"penguins": "the R course's two penguin labs", "hitters": "ISLR Table 10.2"}
    labs.calls = []
    labs.run = lambda **kwargs: labs.calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "nnfit.labs", labs)
    monkeypatch.setattr(nnfit, "labs", labs, raising=False)
    return labs


def test_cli_lab_with_an_unknown_name(env, capsys, fake_labs):
    cli_refuses(env, capsys, ["lab", "mars"], "Unknown lab 'mars'; choose one of: penguins, hitters.")
    assert fake_labs.calls == []


def test_cli_lab_with_zero_epochs(env, capsys, fake_labs):
    cli_refuses(env, capsys, ["lab", "hitters", "--epochs", "0"], "--epochs must be a positive whole number, not 0.")
    assert fake_labs.calls == []


# ====================================================================== handled, not refused
def test_missing_and_infinite_predictors_are_left_out_and_predicted_as_nan(env):
    frame = env.penguins.dropna().head(20).copy()
    frame.loc[frame.index[3], "bill_length_mm"] = np.inf
    frame.loc[frame.index[5], "flipper_length_mm"] = np.nan
    with pytest.warns(MissingValuesWarning) as caught:
        X, y = nf.Design("body_mass_g ~ bill_length_mm + flipper_length_mm").fit(frame).tensors(frame)
    assert str(caught[-1].message) == (
        "Left out 2 of 20 rows with a missing value (bill_length_mm: 1, flipper_length_mm: 1)."
    )
    assert X.shape == (18, 3) and torch.isfinite(X).all()
    predicted = env.mass.predict(frame)
    assert list(predicted.index) == list(frame.index)
    assert predicted.isna().tolist() == [i in (3, 5) for i in range(20)]


def test_missing_and_infinite_responses_are_left_out_of_training(env):
    frame = env.penguins.dropna().head(40).copy()
    frame.loc[frame.index[:3], "body_mass_g"] = [np.nan, np.inf, -np.inf]
    with pytest.warns(MissingValuesWarning, match=r"^Left out 3 of 40 rows with a missing value \(body_mass_g: 3\)\.$"):
        fit = nf.mlp("body_mass_g ~ flipper_length_mm", data=frame, hidden=2, epochs=1, seed=1, verbose=False)
    assert fit.settings["n_train"] == 37


def test_a_single_row_fits_and_predicts_one_value(env):
    row = env.penguins.dropna().head(1)
    fit = nf.mlp("body_mass_g ~ bill_length_mm + sex", data=row, hidden=2, epochs=2, seed=1, verbose=False)
    predicted = fit.predict(env.penguins.dropna().head(3))
    assert predicted.shape == (3,) and np.isfinite(predicted).all()
    one = linear().fit((X10[:1], Y10[:1]), epochs=2, seed=1, verbose=False)
    assert one.predict(X10[:1]).shape == (1, 1)


@pytest.mark.parametrize("factor", [1e300, 1e-300])
def test_huge_and_tiny_magnitudes_are_standardized(env, factor):
    frame = env.penguins.dropna()
    extreme = frame.assign(bill_length_mm=frame["bill_length_mm"] * factor, body_mass_g=frame["body_mass_g"] * factor)
    design = nf.Design("body_mass_g ~ bill_length_mm", scale=True, scale_response=True).fit(extreme)
    X, y = design.tensors(extreme)
    plain = nf.Design("body_mass_g ~ bill_length_mm", scale=True, scale_response=True).fit(frame)
    X0, y0 = plain.tensors(frame)
    assert torch.allclose(X, X0, atol=1e-5) and torch.allclose(y, y0, atol=1e-5)
    assert design.scale_[1] == pytest.approx(frame["bill_length_mm"].std() * factor, rel=1e-9)
    fit = nf.mlp("body_mass_g ~ bill_length_mm + species", data=extreme, hidden=4, epochs=3, seed=1, verbose=False)
    predicted = fit.predict(extreme)
    relative = (predicted / extreme["body_mass_g"]).to_numpy()
    assert np.isfinite(relative).all() and 0.5 < np.median(relative) < 1.5


def test_predict_keeps_input_order_with_a_shuffled_index(env):
    frame = env.penguins.sample(frac=1.0, random_state=3)
    predicted = env.mass.predict(frame)
    assert list(predicted.index) == list(frame.index)
    by_row = pd.concat([env.mass.predict(frame.iloc[[i]]) for i in (0, 1, 2)])
    assert np.allclose(predicted.iloc[:3].fillna(-1), by_row.fillna(-1))
