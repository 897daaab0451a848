"""setup -> fit -> predict/evaluate with any data and any module: fit options, custom training,
a CNN on images, an LSTM on sequences, devices, the fitted print and mistakes."""

import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nnfit as nf
from nnfit.errors import ArgumentError, DataError


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(80, 3, generator=g)
    return X, X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(80, 1, generator=g)


@pytest.fixture(scope="module")
def classes():
    g = torch.Generator().manual_seed(1)
    y = torch.cat([torch.zeros(60), torch.ones(30), torch.full((10,), 2.0)]).long()
    return torch.randn(100, 4, generator=g) + nn.functional.one_hot(y, 4).float(), y


def linear(metrics=(), loss=None, optimizer="sgd", lr=0.05, out=1, inputs=3):
    return (nf.setup(nn.Linear, loss=loss or nn.MSELoss(), optimizer=optimizer, metrics=list(metrics))
            .set_hparams(in_features=inputs, out_features=out).set_opt_hparams(lr=lr))


class Rows(Dataset):
    """A plain map-style Dataset (not a TensorDataset), so fit goes through a DataLoader."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


class Count(nf.callbacks.Callback):
    def __init__(self, hook):
        self.n = 0
        setattr(self, hook, self.count)

    def count(self, ctx):
        self.n += 1


# --- the luz verbs ------------------------------------------------------------------------

def test_setup_set_hparams_and_set_opt_hparams_reach_the_module_and_optimizer(data):
    fitted = (nf.setup(nn.Linear, loss="mse", optimizer=torch.optim.RMSprop).set_hparams(in_features=3, out_features=1)
              .set_opt_hparams(lr=0.003, alpha=0.9).fit(data, epochs=1, verbose=False, seed=1))
    group = fitted.ctx.opt.param_groups[0]
    assert (type(fitted.ctx.opt), group["lr"], group["alpha"]) == (torch.optim.RMSprop, 0.003, 0.9)
    assert (fitted.model.in_features, fitted.model.out_features) == (3, 1)
    with pytest.raises(ArgumentError) as error:
        nf.setup(nn.Linear, loss="mse").set_hparams(in_features=3, outputs=1).fit(data, epochs=1)
    assert str(error.value).startswith("Cannot build Linear with set_hparams(in_features=3, outputs=1): ")


def test_setup_backward_replaces_the_backward_call(data):
    calls = []

    def doubled(loss):
        calls.append(loss.ndim)
        (2 * loss).backward()

    twice = nf.setup(nn.Linear, loss="mse", optimizer="sgd", backward=doubled).set_hparams(
        in_features=3, out_features=1).set_opt_hparams(lr=0.05).fit(data, epochs=2, verbose=False, seed=1)
    plain = linear(lr=0.1).fit(data, epochs=2, verbose=False, seed=1)  # SGD: 2 x gradient == 2 x rate
    assert torch.allclose(twice.model.weight, plain.model.weight, atol=1e-6)
    assert calls == [0] * 6
    with pytest.raises(nf.errors.ArgumentTypeError) as error:
        nf.setup(nn.Linear, loss="mse", backward="retain")
    assert str(error.value) == "backward must be a function of the loss, such as lambda loss: loss.backward(), not 'retain'."


def test_the_history_is_a_long_frame_and_plots_as_learning_curves(data):
    fitted = linear([nf.metrics.MAE()]).fit(data, epochs=3, valid_data=0.25, verbose=False, seed=1)
    history = fitted.metrics
    assert list(history.columns) == ["set", "metric", "epoch", "value"]
    assert len(history) == 3 * 2 * 2 and history.epoch.max() == 3
    figure = fitted.plot()
    assert [axis.get_title() for axis in figure.axes] == ["loss", "mae"]
    assert [line.get_label() for line in figure.axes[1].lines] == ["train", "valid"]
    assert list(figure.axes[1].lines[0].get_ydata()) == history[(history.set == "train") & (history.metric == "mae")].value.tolist()


# --- epochs and validation data ------------------------------------------------------------

def test_epochs_min_greater_than_max_is_a_clear_error(data):
    with pytest.raises(ArgumentError) as error:
        linear().fit(data, epochs=(5, 3))
    assert str(error.value) == "epochs=(min, max) needs min <= max; got (5, 3)."


@pytest.mark.parametrize("fraction, shown", [(0, "0.0"), (1, "1.0"), (1.5, "1.5")])
def test_a_valid_fraction_outside_0_1_is_a_clear_error(data, fraction, shown):
    with pytest.raises(ArgumentError) as error:
        linear().fit(data, valid_data=fraction)
    assert str(error.value) == f"valid_data as a fraction must lie strictly between 0 and 1, not {shown}."


def test_a_valid_fraction_of_a_classifier_is_stratified(classes):
    seen = []

    class Look(nf.callbacks.Callback):
        def on_fit_begin(self, ctx):
            seen.append((torch.bincount(ctx.train_data.y).tolist(), torch.bincount(ctx.valid_data.y).tolist()))

    linear(loss=nn.CrossEntropyLoss(), out=3, inputs=4).fit(classes, epochs=1, valid_data=0.2, callbacks=[Look()],
                                                            verbose=False, seed=1)
    assert seen == [([48, 24, 8], [12, 6, 2])]


@pytest.mark.parametrize("form", ["tuple", "dataset", "dataloader"])
def test_valid_data_as_tuple_dataset_or_dataloader_scores_those_rows(data, form):
    X, y = data
    valid = (X[:20] * 2, y[:20] * 2)
    given = {"tuple": valid, "dataset": Rows(*valid), "dataloader": DataLoader(Rows(*valid), batch_size=7)}[form]
    fitted = linear([nf.metrics.MAE()]).fit((X[20:], y[20:]), epochs=2, valid_data=given, verbose=False, seed=1)
    last = fitted.last_metrics()["valid"]
    again = fitted.evaluate(valid).metrics
    assert last["loss"] == pytest.approx(again["loss"], rel=1e-5)
    assert last["mae"] == pytest.approx(again["mae"], rel=1e-6)


def test_evaluate_takes_other_metrics_and_dataloader_options(data):
    fitted = linear([nf.metrics.MAE()]).fit(data, epochs=1, verbose=False, seed=1)
    X, y = data
    with torch.no_grad():
        pred = fitted.model(X)
    calls = []

    def collate(rows):
        calls.append(len(rows))
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])

    result = fitted.evaluate(Rows(X, y), batch_size=50, metrics=["rmse", nf.metrics.R2()],
                             dataloader_options={"collate_fn": collate})
    assert sorted(result.metrics) == ["loss", "r2", "rmse"]
    assert result.metrics["rmse"] == pytest.approx(float(((pred - y) ** 2).mean().sqrt()), rel=1e-5)
    assert calls == [50, 30]


def test_fit_and_predict_take_a_dataloader_as_well_as_tensors(data):
    X, y = data
    from_loader = linear().fit(DataLoader(Rows(X, y), batch_size=80), epochs=3, verbose=False, seed=1)
    from_tensors = linear().fit((X, y), epochs=3, batch_size=None, verbose=False, seed=1)  # the same full batches
    assert torch.allclose(from_loader.model.weight, from_tensors.model.weight, atol=1e-6)
    expected = from_loader.predict(X)
    assert torch.allclose(from_loader.predict(DataLoader(Rows(X, y), batch_size=7)), expected)
    assert torch.allclose(from_loader.predict(TensorDataset(X)), expected)


# --- data options --------------------------------------------------------------------------

def test_dataloader_options_reach_the_dataloader(data):
    calls = []

    def collate(rows):
        calls.append(len(rows))
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])

    linear().fit(Rows(*data), epochs=2, batch_size=32, dataloader_options={"collate_fn": collate}, verbose=False, seed=1)
    assert calls == [32, 32, 16] * 2


@pytest.mark.parametrize("as_dataset", [False, True])
def test_drop_last_leaves_out_the_short_training_batch(data, as_dataset):
    source = Rows(*data) if as_dataset else data
    counts = []
    for drop_last in (False, True):
        count = Count("on_train_batch_end")
        fitted = linear().fit(source, epochs=1, batch_size=32, drop_last=drop_last, callbacks=[count], verbose=False, seed=1)
        counts.append(count.n)
    assert counts == [3, 2]


def test_class_weights_equal_the_loss_own_class_weights(classes):
    weights = torch.tensor([1.0, 2.0, 6.0])
    ours = linear(loss=nn.CrossEntropyLoss(), out=3, inputs=4).fit(classes, epochs=2, class_weight=weights, verbose=False, seed=2)
    torchs = linear(loss=nn.CrossEntropyLoss(weight=weights), out=3, inputs=4).fit(classes, epochs=2, verbose=False, seed=2)
    assert torch.allclose(ours.model.weight, torchs.model.weight, atol=1e-6)
    assert ours.last_metrics()["train"]["loss"] == pytest.approx(torchs.last_metrics()["train"]["loss"], rel=1e-5)


def test_balanced_class_weights_are_scikit_learn_s(classes):
    from sklearn.utils.class_weight import compute_class_weight

    y = classes[1].numpy()
    expected = dict(enumerate(compute_class_weight("balanced", classes=np.unique(y), y=y)))
    balanced = linear(loss=nn.CrossEntropyLoss(), out=3, inputs=4).fit(classes, epochs=1, class_weight="balanced", verbose=False, seed=2)
    given = linear(loss=nn.CrossEntropyLoss(), out=3, inputs=4).fit(classes, epochs=1, class_weight=expected, verbose=False, seed=2)
    assert torch.allclose(balanced.model.weight, given.model.weight, atol=1e-6)


def test_whole_sample_weights_act_like_repeated_rows(data):
    X, y = data
    repeats = torch.arange(len(X)) % 3  # 0, 1 or 2 copies of each row
    weighted = linear().fit((X, y), epochs=1, batch_size=None, sample_weight=repeats, verbose=False, seed=4)
    repeated = linear().fit((X.repeat_interleave(repeats, 0), y.repeat_interleave(repeats, 0)), epochs=1, batch_size=None,
                            verbose=False, seed=4)
    assert torch.allclose(weighted.model.weight, repeated.model.weight, atol=1e-6)


def test_sample_weights_are_checked(data):
    with pytest.raises(DataError) as error:
        linear().fit(data, sample_weight=torch.ones(5))
    assert str(error.value) == "sample_weight has 5 values but the data has 80 rows; give one per row."
    with pytest.raises(ArgumentError) as error:
        linear(loss=lambda p, t: ((p - t) ** 2).mean()).fit(data, sample_weight=torch.ones(80))
    assert str(error.value).startswith("sample_weight and class_weight need a torch loss module with a reduction option")
    with pytest.raises(ArgumentError) as error:
        linear().fit(Rows(*data), class_weight="balanced")
    assert str(error.value) == (
        "sample_weight and class_weight need (X, y) data in memory; with a Dataset or DataLoader, "
        "weight the rows in your own loss function."
    )


def test_metrics_can_run_in_training_only_or_validation_only(data):
    metrics = [nf.metrics.MAE(), nf.metrics.train_only(nf.metrics.RMSE()), nf.metrics.valid_only(nf.metrics.R2())]
    fitted = linear(metrics).fit(data, epochs=2, valid_data=0.25, verbose=False, seed=1)
    names = fitted.metrics.groupby("set").metric.apply(lambda m: sorted(set(m))).to_dict()
    assert names == {"train": ["loss", "mae", "rmse"], "valid": ["loss", "mae", "r2"]}
    assert sorted(fitted.evaluate(data).metrics) == ["loss", "mae", "r2"]


# --- custom training -----------------------------------------------------------------------

class OwnLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x):
        return self.linear(x)

    def loss(self, pred, target):
        return (pred - target).abs().mean()

    def predict(self, x):
        return self.forward(x) * 100


def test_a_module_may_bring_its_own_loss_and_predict(data):
    fitted = nf.setup(OwnLoss).fit(data, epochs=2, verbose=False, seed=1)
    X, y = data
    with torch.no_grad():
        raw = fitted.model(X)
    assert fitted.evaluate(data).metrics["loss"] == pytest.approx(float((raw - y).abs().mean()), rel=1e-5)
    assert torch.allclose(fitted.predict(X), raw * 100)


class GAN(nn.Module):
    """A generator of 2-d points and a discriminator, each with its own optimizer and a custom step."""

    def __init__(self):
        super().__init__()
        self.generator = nn.Linear(2, 2)
        self.discriminator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))

    def set_optimizers(self, lr=0.02):
        return {"generator": torch.optim.Adam(self.generator.parameters(), lr=lr),
                "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr)}

    def step(self, ctx):
        real = ctx.input
        bce = nn.functional.binary_cross_entropy_with_logits
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        fake = self.generator(torch.randn(len(real), 2))
        d_opt, g_opt = ctx.optimizers["discriminator"], ctx.optimizers["generator"]
        d_opt.zero_grad()
        d_loss = bce(self.discriminator(real), ones) + bce(self.discriminator(fake.detach()), zeros)
        d_loss.backward()
        d_opt.step()
        g_opt.zero_grad()
        g_loss = bce(self.discriminator(fake), ones)
        g_loss.backward()
        g_opt.step()
        ctx.loss = {"generator": g_loss.detach(), "discriminator": d_loss.detach()}


def test_a_gan_trains_with_two_named_optimizers_and_its_own_step():
    g = torch.Generator().manual_seed(0)
    real = torch.tensor([3.0, -2.0]) + 0.3 * torch.randn(256, 2, generator=g)
    fitted = nf.setup(GAN).set_opt_hparams(lr=0.01).fit((real,), epochs=150, batch_size=64, verbose=False, seed=0)
    assert sorted(set(fitted.metrics.metric)) == ["loss_discriminator", "loss_generator"]
    assert list(fitted.ctx.optimizers) == ["generator", "discriminator"]
    with torch.no_grad():
        made = fitted.model.generator(torch.randn(2000, 2, generator=g))
    assert torch.allclose(made.mean(0), torch.tensor([3.0, -2.0]), atol=0.5)


# --- any data, any module ------------------------------------------------------------------

class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.classify = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.classify(self.features(x).flatten(1))


def test_a_cnn_learns_the_8x8_digits_from_a_dataset():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=digits.target, random_state=0)
    fitted = (nf.setup(SmallCNN, loss=nn.CrossEntropyLoss(), metrics=[nf.metrics.Accuracy()])
              .set_opt_hparams(lr=0.003)
              .fit(Rows(images[train], labels[train]), epochs=8, batch_size=64, verbose=False, seed=0))
    result = fitted.evaluate(DataLoader(TensorDataset(images[test], labels[test]), batch_size=100))
    assert result.metrics["accuracy"] >= 0.95
    assert result.n == len(test)
    predicted = fitted.predict(images[test]).argmax(1)
    assert float((predicted == labels[test]).float().mean()) == pytest.approx(result.metrics["accuracy"])


class SumLSTM(nn.Module):
    def __init__(self, hidden=24):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.out(output[:, -1])


def test_an_lstm_learns_to_sum_a_sequence():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(640, 10, 1, generator=g)
    y = X.sum(dim=1) / 3
    fitted = (nf.setup(SumLSTM, loss=nn.MSELoss(), metrics=[nf.metrics.R2()]).set_opt_hparams(lr=0.01)
              .fit((X[:512], y[:512]), epochs=25, batch_size=32, valid_data=(X[512:], y[512:]), verbose=False, seed=0))
    assert fitted.last_metrics()["valid"]["r2"] >= 0.9


# --- devices and the fitted print ----------------------------------------------------------

def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from nnfit.train.learner import resolve_device

    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ArgumentError) as error:
        resolve_device("gpu7")
    assert str(error.value).startswith("Unknown device 'gpu7': ")


def test_data_and_metric_state_follow_the_model(data):
    seen = {}

    class Look(nf.callbacks.Callback):
        def on_train_end(self, ctx):
            seen["model"] = next(ctx.model.parameters()).device
            seen["data"] = ctx.train_data.X.device
            seen["metric"] = ctx.train_metrics[0]._sum.device

    fitted = linear([nf.metrics.MAE()]).fit(data, epochs=1, device="cpu", callbacks=[Look()], verbose=False, seed=1)
    assert seen == {"model": torch.device("cpu"), "data": torch.device("cpu"), "metric": torch.device("cpu")}
    assert fitted.device == torch.device("cpu")


def test_the_fitted_print_shows_time_last_metrics_and_module(data):
    fitted = linear([nf.metrics.MAE()]).fit(data, epochs=3, valid_data=0.25, verbose=False, seed=1)
    text = repr(fitted)
    last = fitted.last_metrics()
    lines = text.splitlines()
    assert lines[0] == "<nnfit Fitted> Linear, 4 parameters"
    assert re.fullmatch(r"  trained 3 epochs in \d+\.\d\d s \(\d+\.\d ms per epoch\) on cpu, 1 thread\(s\)", lines[1])
    assert lines[2] == (f"  last epoch: train: loss {last['train']['loss']:.4g}, mae {last['train']['mae']:.4g} | "
                        f"valid: loss {last['valid']['loss']:.4g}, mae {last['valid']['mae']:.4g}")
    assert lines[3] == "  module: Linear(in_features=3, out_features=1, bias=True)"


def test_the_luz_parity_table_is_complete_and_its_tests_exist():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "luz-parity.md").read_text()
    tests = "".join(path.read_text() for path in (root / "tests").glob("test_*.py"))
    assert [name for name in re.findall(r"::(test_\w+)", doc) if f"def {name}(" not in tests] == []
    callbacks = [name for name, value in vars(nf.callbacks).items()
                 if isinstance(value, type) and issubclass(value, nf.callbacks.Callback) and value is not nf.callbacks.Callback]
    metrics = [name for name, value in vars(nf.metrics).items()
               if isinstance(value, type) and issubclass(value, nf.metrics.Metric) and not name.startswith("_")
               and name not in ("Metric", "Rescaled")]
    checkpoint = ["ModelCheckpoint", "KeepBestModel", "Interrupt", "AutoResume"]
    assert [name for name in callbacks + metrics + checkpoint if f"nf.callbacks.{name}" not in doc
            and f"nf.metrics.{name}" not in doc and f"`{name}`" not in doc and f", `{name}`" not in doc
            and f"{name}," not in doc] == []


def test_predict_in_blocks_gives_each_row_the_same_bits_whatever_comes_with_it():
    from nnfit.train.learner import predict_in_blocks

    torch.manual_seed(0)
    net = nf.MLP(7, [50], 3).eval()
    X = torch.randn(2500, 7)
    with torch.no_grad():
        full = predict_in_blocks(net, X)
        assert full.shape == (2500, 3)
        for rows in ([0], [1, 2, 3], list(range(10)), list(range(1023, 1030)), torch.randperm(2500).tolist()):
            assert torch.equal(predict_in_blocks(net, X[rows]), full[rows])
        pieces = [X[:5], X[5:1500], X[1500:1501], X[1501:]]  # a stream of batches of any sizes
        assert torch.equal(predict_in_blocks(net, iter(pieces)), full)
        assert predict_in_blocks(net, X[:0]).shape == (0, 3)


def test_predict_in_blocks_reports_errors_for_the_rows_given(data):
    X, y = data
    fitted = linear().fit((X, y), epochs=1, verbose=False)
    with pytest.raises(nf.errors.TrainingError) as error:
        fitted.predict(torch.zeros(2, 5))
    assert str(error.value) == (
        "Linear failed while predicting: RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x5 and 3x1)"
    )


def test_a_rejected_optimizer_setting_is_an_argument_error(data):
    with pytest.raises(ArgumentError) as error:
        linear(lr=-0.5).fit(data, epochs=1, verbose=False)
    assert str(error.value) == "The optimizer sgd cannot be built with set_opt_hparams(lr=-0.5): Invalid learning rate: -0.5."


def test_a_luz_style_fit_saves_signed_and_loads_only_with_its_key(data, tmp_path):
    from nnfit.errors import ModelFileError

    X, y = data
    fitted = linear().fit((X, y), epochs=2, verbose=False, seed=1)
    fitted.save(tmp_path / "signed.nnfit", key=b"team key")
    same = nf.load(tmp_path / "signed.nnfit", module=nn.Linear, key=b"team key")
    with torch.no_grad():
        assert torch.allclose(same(X), fitted.predict(X))
    with pytest.raises(ModelFileError, match="signed"):
        nf.load(tmp_path / "signed.nnfit", module=nn.Linear)
