"""A catalogue of hostile input across Design, fit, predict, evaluate, save/load and the CLI.

Each refused case asserts the exception class and its exact message (or, where torch or
pandas supply part of it, the part nnfit writes), that no file was left behind in the
working folder, and that the fitted models did not change. The cases that nnfit handles
rather than refuses (missing and infinite values, one row, extreme magnitudes) assert the
result.
"""

import errno
import os
import pickle
import re
import tempfile
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


@pytest.mark.parametrize("rhs, culprit", [
    ("bill_length_mm + I(__import__('os').system('touch pwned'))", "'__import__'"),
    ("bill_length_mm + I(open('pwned', 'w'))", "'open'"),
    ('bill_length_mm + I(f"{open(chr(112), chr(119))}")', """'f"{open(chr(112), chr(119))}"'"""),
])
def test_load_a_file_whose_formula_would_run_code(env, rhs, culprit):
    """The checksum guards against accidents, not against someone who rewrites the file."""
    env.mass.save("mass.nnfit")
    tensors, metadata = files.read(env.tmp / "mass.nnfit")
    metadata["design"]["rhs"] = rhs
    files.write(env.tmp / "mass.nnfit", tensors, metadata)
    refuses(env, lambda: nf.load("mass.nnfit"), ModelFileError,
            f"The model file's contents are inconsistent: The saved formula {rhs!r} uses {culprit}, which nnfit "
            "does not evaluate when it loads a file (it could run code).")
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

        def refused(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(tempfile, "mkstemp", refused)
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
    assert captured.err == f"nnfit: error: {message}\n"
    assert listing(env.tmp) == before


def test_cli_missing_data_file(env, capsys):
    cli_refuses(env, capsys, ["fit", "nosuch.csv", "y ~ x", "--out", "m"],
                "No data file 'nosuch.csv', and no bundled data set of that name (penguins).")


def test_cli_response_that_is_not_a_column(env, capsys):
    cli_refuses(env, capsys, ["fit", "penguins", "mass ~ .", "--out", "m"],
                "The response 'mass' is not a column of the data (did you mean 'body_mass_g'?).")


def test_cli_hidden_that_is_not_numbers(env, capsys):
    cli_refuses(env, capsys, ["fit", "penguins", "body_mass_g ~ .", "--out", "m", "--hidden", "ten,five"],
                "--hidden takes comma-separated numbers, not 'ten,five'.")


def test_cli_zero_epochs(env, capsys):
    cli_refuses(env, capsys, ["fit", "penguins", "body_mass_g ~ . - year", "--out", "m", "--epochs", "0"],
                "epochs must be a positive whole number, not 0.")


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
