import pytest
import torch
from torch import nn

import nnfit as nf
from nnfit.errors import ArgumentError
from nnfit.train.vectorized import FittedMany


class Small(nn.Module):
    def __init__(self, p, dropout=0.0):
        super().__init__()
        self.a = nn.Linear(p, 8)
        self.drop = nn.Dropout(dropout)
        self.b = nn.Linear(8, 1)

    def forward(self, x):
        return self.b(self.drop(torch.tanh(self.a(x))))


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    X = torch.randn(120, 5)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0], [3.0]]) + 0.1 * torch.randn(120, 1)
    return X, y


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam"])
def test_model_k_equals_fit_with_seed_plus_k(data, optimizer):
    learner = nf.setup(Small, loss="mse", optimizer=optimizer, metrics=[nf.metrics.MAE()]).set_hparams(p=5)
    learner.set_opt_hparams(lr=0.01)
    many = learner.fit(data, epochs=4, n_models=3, seed=7)
    assert isinstance(many, FittedMany) and many.n_models == 3
    for k in range(3):
        alone = learner.fit(data, epochs=4, seed=7 + k, verbose=False)
        for a, b in zip(many.models[k].state_dict().values(), alone.model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        history = alone.metrics
        mine = many.metrics[(many.metrics["model"] == k + 1)].reset_index(drop=True)
        torch.testing.assert_close(torch.tensor(mine["value"].to_numpy()), torch.tensor(history["value"].to_numpy()),
                                   rtol=1e-4, atol=1e-4)


def test_predictions_mean_and_all(data):
    X, y = data
    many = nf.setup(Small, loss="mse").set_hparams(p=5, dropout=0.2).fit((X, y), epochs=2, n_models=4, seed=1)
    every = many.predict(X, type="all")
    assert every.shape == (4, 120, 1)
    torch.testing.assert_close(many.predict(X), every.mean(dim=0))
    for k in range(4):
        torch.testing.assert_close(every[k], many.models[k](X))
    table = many.evaluate((X, y))
    assert list(table.columns) == ["model", "loss"] and len(table) == 4
    assert table["loss"][0] == pytest.approx(float(nn.functional.mse_loss(every[0], y)), rel=1e-5)
    assert set(many.metrics["model"]) == {1, 2, 3, 4}


def test_dropout_masks_differ_between_models(data):
    X, y = data
    learner = nf.setup(Small, loss="mse", optimizer="sgd").set_hparams(p=5, dropout=0.5)
    many = learner.fit((X, y), epochs=1, n_models=2, seed=3)
    # Same seed for both would give equal models; different masks and orders give different ones.
    assert not torch.equal(many.models[0].a.weight, many.models[1].a.weight)


def test_unsupported_options_and_data(data):
    learner = nf.setup(Small, loss="mse").set_hparams(p=5)
    with pytest.raises(ArgumentError) as error:
        learner.fit(data, epochs=1, n_models=2, accumulate=2)
    assert str(error.value) == ("fit(n_models > 1) steps after every batch; accumulate must be 1. Fit one model to "
                                "accumulate gradients.")
    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(data[0])

        def __getitem__(self, i):
            return data[0][i], data[1][i]

    dataset = Rows()
    with pytest.raises(ArgumentError) as error:
        learner.fit(dataset, epochs=1, n_models=2)
    assert str(error.value) == "n_models > 1 needs in-memory (X, y) data: tensors or arrays, not a Dataset or DataLoader."
    with pytest.raises(ArgumentError) as error:
        learner.fit(data, epochs=1, n_models=0)
    assert str(error.value) == "n_models must be a positive whole number, not 0."


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 1)

    def forward(self, x):
        return self.a(x) if x.sum().item() > 0 else -self.a(x)


def test_a_module_vmap_cannot_batch(data):
    with pytest.raises(ArgumentError) as error:
        nf.setup(Branchy, loss="mse").fit(data, epochs=1, n_models=2)
    assert str(error.value).startswith("Branchy cannot be trained as several models at once (torch.func.vmap: ")


def test_luz_style_cross_validation(data):
    X, y = data
    learner = nf.setup(Small, loss="mse", optimizer="adam", metrics=[nf.metrics.MAE()]).set_hparams(p=5)
    learner.set_opt_hparams(lr=0.02)
    cv = nf.cross_validate(learner, (X, y), folds=4, epochs=30, seed=2)
    assert list(cv.folds.columns) == ["fold", "n", "loss", "mae"]
    assert cv.folds["n"].tolist() == [30, 30, 30, 30]
    assert cv.summary.set_index("metric").loc["mae", "mean"] < 1.0


def test_a_member_that_diverges_is_dropped_when_asked(data):
    from nnfit.train.vectorized import fit_many

    X, y = data
    y = y.clone()
    y[0] = 999.0

    def poisoned(pred, target):  # infinite for a batch holding row 0, which only model 2 trains on
        mse = ((pred - target) ** 2).mean()
        return torch.where((target > 900).any(), torch.full_like(mse, float("inf")), mse)

    learner = nf.setup(nn.Linear, loss=poisoned, optimizer="sgd").set_hparams(in_features=X.shape[1], out_features=1)
    rows = [torch.arange(1, 33), torch.arange(0, 32), torch.arange(2, 34)]
    fitted = fit_many(learner, (X, y), 3, 2, 8, 1, torch.device("cpu"), 1, train_rows=rows, on_divergence="drop")
    assert fitted.n_models == 2
    assert list(fitted.dropped) == ["model 2 of 3"]
    assert fitted.dropped["model 2 of 3"].startswith("The training loss of model 2 of 3 became inf in epoch 1.")
    assert sorted(fitted.metrics["model"].unique()) == [1, 2]
    assert torch.isfinite(fitted.predict(X)).all()


# ---------------------------------------------------------------- the K models as a fitted object
def setup():
    return nf.setup(nf.MLP, loss="mse").set_hparams(input_size=5, hidden=[8], output_size=1)


def test_k_models_save_and_load_back_as_k_modules(data, tmp_path):
    X, y = data
    many = setup().fit((X, y), epochs=3, seed=4, n_models=3, verbose=False)
    path = tmp_path / "three.nnfit"
    many.save(path)
    nets = nf.load(path, module=nf.MLP)
    assert [type(net) for net in nets] == [nf.MLP] * 3 and not any(net.training for net in nets)
    assert torch.equal(torch.stack([net(X) for net in nets]), many.predict(X, type="all"))
    instances = [nf.MLP(input_size=5, hidden=[8], output_size=1) for _ in range(3)]
    assert nf.load(path, module=instances) == instances
    assert torch.equal(instances[2](X), nets[2](X))
    with pytest.raises(nf.errors.ModelFileError, match=r"holds the weights of 3 copies of your module "
                                                         r"nnfit\.modules\.mlp\.MLP; pass it: nf\.load\(path, module=YourModule\)"):
        nf.load(path)
    with pytest.raises(nf.errors.ModelFileError, match=r"holds 3 models; pass the class or a list of 3 instances\.$"):
        nf.load(path, module=instances[:2])
    signed = tmp_path / "signed.nnfit"
    many.save(signed, key="k")
    assert len(nf.load(signed, module=nf.MLP, key="k")) == 3


def test_a_k_model_file_whose_tensors_or_count_were_edited_is_refused(data, tmp_path):
    from nnfit import files

    X, y = data
    many = setup().fit((X, y), epochs=1, seed=4, n_models=2, verbose=False)
    tensors = {f"model{k}.{name}": value for k, net in enumerate(many.models) for name, value in net.state_dict().items()}
    base = {"kind": "modules", "module": "nnfit.modules.mlp.MLP", "hparams": dict(many.learner.hparams), "n_models": 2}
    cases = {
        "count": ({**base, "n_models": 10**9}, tensors,
                  "n_models is 1000000000, not a whole number from 1 to the 8 tensors it holds."),
        "flag": ({**base, "n_models": True}, tensors, "n_models is True, not a whole number from 1 to the 8 tensors"),
        "stray": (base, {**tensors, "model2.hidden.0.bias": torch.zeros(8)},
                  "tensor 'model2.hidden.0.bias' belongs to none of its 2 models."),
        "padded": (base, {**tensors, "model01.x": torch.zeros(1)}, "tensor 'model01.x' belongs to none of its 2 models."),
        "shape": ({**base, "hparams": {**base["hparams"], "hidden": [10**6]}}, tensors, "make MLP with"),
    }
    for name, (metadata, held, message) in cases.items():
        path = tmp_path / f"{name}.nnfit"
        files.write(path, held, metadata)
        with pytest.raises(nf.errors.ModelFileError) as error:
            nf.load(path, module=nf.MLP)
        assert message in str(error.value), name


def test_k_models_plot_and_show_themselves(data):
    import matplotlib.pyplot as plt

    X, y = data
    many = setup().fit((X, y), epochs=3, seed=4, n_models=3, valid_data=0.25, verbose=False)
    figure = many.plot()
    assert [axis.get_title() for axis in figure.axes] == ["loss"]
    means = many.metrics.groupby(["set", "epoch"])["value"].mean()
    for line, split in zip(figure.axes[0].lines, ["train", "valid"]):
        assert list(line.get_ydata()) == pytest.approx(list(means[split]))
    last = many.last_metrics()
    assert last["valid"]["loss"] == pytest.approx(means["valid"].iloc[-1])
    html = many._repr_html_()
    assert "nnfit fitted models (3)" in html and "<img" in html
    plt.close("all")


def test_a_k_model_file_whose_hparams_build_more_than_it_holds_is_refused_before_building(data, tmp_path):
    import resource

    from nnfit import files

    X, y = data
    many = setup().fit((X, y), epochs=1, seed=4, n_models=2, verbose=False)
    metadata = {"kind": "modules", "module": "nnfit.modules.mlp.MLP", "n_models": 1,
                "hparams": {**many.learner.hparams, "hidden": [20_000, 20_000]}}  # 1.6 GB, beside one tensor
    files.write(tmp_path / "big.nnfit", {"model0.hidden.0.bias": torch.zeros(8)}, metadata)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(nf.errors.ModelFileError) as error:
        nf.load(tmp_path / "big.nnfit", module=nf.MLP)
    assert "has no tensor 'hidden.0.weight' that the MLP its hparams" in str(error.value)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 64 * 2**20
