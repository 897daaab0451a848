"""Categorical embeddings: the Design's level codes, MLP(embeddings=), nf.mlp(embed=, unknown=)."""

import numpy as np
import pandas as pd
import pytest
import torch

import nnfit as nf
from nnfit.design import EMBED_LEVELS
from nnfit.errors import ArgumentError, DataError, FormulaError, LevelError
from nnfit.modules import embedding_size


def _levels(n, prefix="c"):
    return [f"{prefix}{i:03d}" for i in range(n)]


def _cities(n_rows, seed, n_levels=200):
    """y depends on x through two hidden numbers per city: structure an embedding can learn."""
    latent = np.random.default_rng(0).normal(size=(n_levels, 2))
    rng = np.random.default_rng(seed)
    city = rng.integers(0, n_levels, n_rows)
    x = rng.normal(size=n_rows)
    y = 2 * latent[city, 0] + x * latent[city, 1] + 0.3 * rng.normal(size=n_rows)
    levels = _levels(n_levels)
    return pd.DataFrame({"y": y, "x": x, "city": pd.Categorical(np.array(levels)[city], categories=levels)})


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "zip": pd.Categorical(rng.choice(_levels(12, "z"), n), categories=_levels(12, "z")),
        "x": rng.normal(size=n),
        "city": pd.Categorical(rng.choice(_levels(30), n), categories=_levels(30)),
        "few": pd.Categorical(rng.choice(_levels(EMBED_LEVELS, "f"), n), categories=_levels(EMBED_LEVELS, "f")),
    })


def test_auto_embeds_factors_with_many_levels(small):
    design = nf.Design("y ~ .", scale=True, intercept=False, embed="auto").fit(small)
    assert list(design.embedded_) == ["zip", "city"]  # column order; 'few' has exactly EMBED_LEVELS levels
    assert design.embedded_["city"] == _levels(30)
    assert design.columns == ["x"] + [f"few{level}" for level in _levels(EMBED_LEVELS, "f")[1:]]
    m = design.transform(small)
    np.testing.assert_array_equal(m.codes, np.column_stack([small["zip"].cat.codes, small["city"].cat.codes]))
    np.testing.assert_array_equal(m.inputs(), np.column_stack([m.X, m.codes]))
    X, _ = design.tensors(small)
    assert X.shape == (300, 1 + 9 + 2)
    assert "  embedded: zip (12 levels)\n  embedded: city (30 levels)" in repr(design)


def test_explicit_embed_and_its_errors(small):
    design = nf.Design("y ~ x + few", embed=["few"]).fit(small)
    assert list(design.embedded_) == ["few"] and design.columns == ["(Intercept)", "x"]
    with pytest.raises(FormulaError) as error:
        nf.Design("y ~ x + city + city:x", embed=["city"]).fit(small)
    assert str(error.value) == "Column 'city' can be embedded only as a main effect, but the formula also uses it in 'x:city'."  # R's label
    assert nf.Design("y ~ x + city + city:x", embed="auto").fit(small).embedded_ == {}  # auto keeps it dummy-coded
    with pytest.raises(DataError) as error:
        nf.Design("y ~ x", embed=["city"]).fit(small)
    assert str(error.value) == "embed names 'city', which is not a predictor in the formula."
    with pytest.raises(ArgumentError) as error:
        nf.Design("y ~ x + city", embed=["x"]).fit(small)
    assert str(error.value) == "Column 'x' is numeric; only factors can be embedded."
    with pytest.raises(ArgumentError) as error:
        nf.Design("y ~ x", unknown="drop")
    assert str(error.value) == "unknown must be 'error' or 'other', not 'drop'."


def test_mlp_module_replaces_codes_with_vectors():
    torch.manual_seed(0)
    net = nf.MLP(2, hidden=[], output_size=1, embeddings=[(5, 3)])
    x = torch.tensor([[0.5, -1.0, 4.0], [1.0, 2.0, 0.0]])
    vectors = net.embed[0].weight[[4, 0]]
    expected = torch.cat([x[:, :2], vectors], dim=1) @ net.output.weight.T + net.output.bias
    assert torch.allclose(net(x), expected)
    assert net.architecture()["embeddings"] == [[5, 3]]
    assert "embeddings" not in nf.MLP(2, hidden=3).architecture()
    assert [embedding_size(n) for n in (11, 30, 99, 100, 1000)] == [6, 15, 50, 50, 50]


def test_embedding_beats_one_hot_on_held_out_data():
    training, testing = _cities(3000, seed=1), _cities(1000, seed=2)
    rmse = {"auto": [], None: []}
    for seed in (1, 2, 3):
        for embed in rmse:
            fit = nf.mlp("y ~ x + city", data=training, hidden=32, epochs=20, batch_size=64, seed=seed,
                         verbose=False, embed=embed)
            rmse[embed].append(fit.evaluate(testing)["rmse"])
    assert fit.model.architecture().get("embeddings") is None
    embedded, one_hot = np.mean(rmse["auto"]), np.mean(rmse[None])
    assert embedded < 0.95 * one_hot, rmse


def test_unknown_levels_error_or_other(small):
    new = small.head(3).astype({"city": object})
    new.loc[1, "city"] = "elsewhere"
    strict = nf.mlp("y ~ .", data=small, hidden=4, epochs=2, seed=1, verbose=False, embed="auto")
    assert strict.model.embeddings == [[12, 6], [30, 15]]
    with pytest.raises(LevelError) as error:
        strict.predict(new)
    assert str(error.value) == (
        "Column 'city' has the level 'elsewhere', which training never saw (levels: c000, c001, c002, c003, c004, "
        "c005, c006, c007, c008, c009, ... (30 in all)); fit with unknown='other' to give new levels an 'other' code."
    )
    lenient = nf.mlp("y ~ .", data=small, hidden=4, epochs=2, seed=1, verbose=False, embed="auto", unknown="other")
    assert lenient.model.embeddings == [[13, 6], [31, 15]]
    table = lenient.model.embed[1].weight
    assert torch.allclose(table[30], table[:30].mean(dim=0))  # "other" is the average city
    predicted = lenient.predict(new)
    assert lenient.design.transform(new).codes[:, 1].tolist() == [small["city"].cat.codes[0], 30, small["city"].cat.codes[2]]
    with torch.no_grad():
        by_hand = lenient.model(torch.as_tensor(lenient.design.transform(new).inputs(), dtype=torch.float32))
    np.testing.assert_allclose(predicted.to_numpy(), lenient.design.unscale_response(by_hand.double().numpy())[:, 0])
    with pytest.raises(LevelError, match="^Column 'few' has the level 'f999'"):  # dummy-coded factors still refuse
        lenient.predict(new.astype({"few": object}).assign(few="f999"))


def test_save_and_load_with_embeddings(small, tmp_path):
    fit = nf.mlp("y ~ .", data=small, hidden=4, epochs=2, seed=1, verbose=False, embed="auto", unknown="other")
    fit.save(tmp_path / "cities.nnfit")
    same = nf.load(tmp_path / "cities.nnfit")
    assert list(same.design.embedded_) == ["zip", "city"]  # the file's JSON sorts keys; the order survives
    assert same.design.unknown == "other"
    pd.testing.assert_series_equal(same.predict(small), fit.predict(small))
    pd.testing.assert_frame_equal(same.coef(), fit.coef())
    coef = fit.coef()
    assert coef["term"].iloc[0] == "E(zip)_{z000,1}"
    assert coef[coef["layer"] == "embedding city"].shape[0] == 31 * 15
    assert coef.loc[coef["layer"] == "hidden 1", "from"].unique().tolist()[:4] == ["(bias)", "x", "few" + "f001", "few" + "f002"]
    assert "  embedded factor city: 30 levels, each a learned vector E(city) of 15 numbers, input beside X" in repr(fit)


def test_embed_with_several_models_is_refused(small):
    with pytest.raises(ArgumentError) as error:
        nf.mlp("y ~ .", data=small, epochs=1, embed="auto", n_models=2, verbose=False)
    assert str(error.value) == "embed is not supported with n_models > 1 yet; fit one model, or leave embed=None."


def test_cli_embeds_and_predicts_an_unseen_level(tmp_path, small):
    from nnfit.cli import main

    small.to_csv(tmp_path / "train.csv", index=False)
    new = small.head(3).astype({"city": object})
    new.loc[0, "city"] = "elsewhere"
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["fit", str(tmp_path / "train.csv"), "y ~ .", "--out", str(tmp_path / "model"), "--hidden", "4",
                 "--epochs", "2", "--seed", "1", "--embed", "auto", "--unknown", "other"]) == 0
    model = nf.load(tmp_path / "model" / "model.nnfit")
    assert list(model.design.embedded_) == ["zip", "city"] and model.model.embeddings == [[13, 6], [31, 15]]
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    written = pd.read_csv(tmp_path / "p.csv")[".pred"]
    np.testing.assert_allclose(written.to_numpy(), model.predict(pd.read_csv(tmp_path / "new.csv")).to_numpy())
    assert written.notna().all()
