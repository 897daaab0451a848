"""Metrics against scikit-learn on random inputs, fed in batches as the loop feeds them."""

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

import nnfit as nf
from nnfit.errors import ArgumentError

BATCHES = (0, 17, 50, 83, 120)  # uneven batches: the epoch value must not depend on them


def batched(metric, pred, target):
    metric.reset()
    for start, stop in zip(BATCHES, BATCHES[1:]):
        metric.update(pred[start:stop], target[start:stop])
    return float(metric.compute())


@pytest.fixture()
def regression():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(120, 1, generator=g)
    return target + 0.5 * torch.randn(120, 1, generator=g), target


@pytest.fixture()
def multiclass():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (120,), generator=g)
    logits = torch.randn(120, 4, generator=g) + 1.5 * torch.nn.functional.one_hot(target, 4)
    return logits, target


@pytest.fixture()
def binary():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 2, (120,), generator=g)
    logits = torch.randn(120, 1, generator=g) + (target.reshape(-1, 1) - 0.5) * 1.5
    return logits, target


def numpy(t):
    return t.detach().numpy().astype(np.float64)


@pytest.mark.parametrize(
    "metric, reference",
    [
        (nf.metrics.MAE(), sk.mean_absolute_error),
        (nf.metrics.MSE(), sk.mean_squared_error),
        (nf.metrics.RMSE(), sk.root_mean_squared_error),
        (nf.metrics.R2(), sk.r2_score),
    ],
)
def test_regression_metrics_equal_scikit_learn(metric, reference, regression):
    pred, target = regression
    assert batched(metric, pred, target) == pytest.approx(reference(numpy(target), numpy(pred)), rel=1e-6)


def test_r2_of_several_outputs_is_their_mean_as_in_scikit_learn():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(120, 3, generator=g)
    pred = target + torch.randn(120, 3, generator=g)
    assert batched(nf.metrics.R2(), pred, target) == pytest.approx(sk.r2_score(numpy(target), numpy(pred)), rel=1e-6)


def test_multiclass_metrics_equal_scikit_learn(multiclass):
    logits, target = multiclass
    y = target.numpy()
    classes = logits.argmax(1).numpy()
    probabilities = numpy(logits.double().softmax(1))
    expected = {
        nf.metrics.Accuracy(): sk.accuracy_score(y, classes),
        nf.metrics.AUROC(): sk.roc_auc_score(y, probabilities, multi_class="ovr", average="macro"),
        nf.metrics.AUROC(average="weighted"): sk.roc_auc_score(y, probabilities, multi_class="ovr", average="weighted"),
        nf.metrics.AUROC(average="micro"): sk.roc_auc_score(np.eye(4)[y], probabilities, average="micro"),
        nf.metrics.LogLoss(): sk.log_loss(y, probabilities),
        nf.metrics.TopKAccuracy(k=2): sk.top_k_accuracy_score(y, probabilities, k=2),
        nf.metrics.Precision(average="macro"): sk.precision_score(y, classes, average="macro"),
        nf.metrics.Precision(average="micro"): sk.precision_score(y, classes, average="micro"),
        nf.metrics.Recall(average="macro"): sk.recall_score(y, classes, average="macro"),
        nf.metrics.Recall(average="micro"): sk.recall_score(y, classes, average="micro"),
        nf.metrics.F1(average="macro"): sk.f1_score(y, classes, average="macro"),
        nf.metrics.F1(average="micro"): sk.f1_score(y, classes, average="micro"),
    }
    for metric, value in expected.items():
        assert batched(metric, logits, target) == pytest.approx(value, rel=1e-9), metric


def test_binary_metrics_equal_scikit_learn(binary):
    logits, target = binary
    y = target.numpy()
    positive = numpy(logits.double().sigmoid()).reshape(-1)
    classes = (positive > 0.5).astype(int)
    expected = {
        nf.metrics.Accuracy(): sk.accuracy_score(y, classes),
        nf.metrics.BinaryAccuracy(): sk.accuracy_score(y, classes),
        nf.metrics.BinaryAccuracy(threshold=0.7): sk.accuracy_score(y, (positive > 0.7).astype(int)),
        nf.metrics.AUROC(): sk.roc_auc_score(y, positive),
        nf.metrics.LogLoss(): sk.log_loss(y, positive),
        nf.metrics.Precision(): sk.precision_score(y, classes),
        nf.metrics.Recall(): sk.recall_score(y, classes),
        nf.metrics.F1(): sk.f1_score(y, classes),
        nf.metrics.F1(average="macro"): sk.f1_score(y, classes, average="macro"),
        nf.metrics.F1(average="micro"): sk.f1_score(y, classes, average="micro"),
    }
    for metric, value in expected.items():
        assert batched(metric, logits, target) == pytest.approx(value, rel=1e-9), metric


def test_probabilities_instead_of_logits_give_the_same_values(binary, multiclass):
    logits, target = binary
    probabilities = logits.double().sigmoid()
    for cls in (nf.metrics.BinaryAccuracy, nf.metrics.AUROC, nf.metrics.LogLoss, nf.metrics.F1):
        assert batched(cls(from_logits=False), probabilities, target) == pytest.approx(
            batched(cls(), logits, target), rel=1e-9
        ), cls
    logits, target = multiclass
    probabilities = logits.double().softmax(1)
    assert batched(nf.metrics.LogLoss(from_logits=False), probabilities, target) == pytest.approx(
        batched(nf.metrics.LogLoss(), logits, target), rel=1e-9
    )


def test_auroc_counts_ties_as_one_half_like_scikit_learn():
    scores = torch.tensor([0.2, 0.2, 0.5, 0.5, 0.5, 0.9, 0.1, 0.9])
    target = torch.tensor([0, 1, 0, 1, 1, 1, 0, 0])
    metric = nf.metrics.AUROC(from_logits=False)
    metric.update(scores, target)
    assert float(metric.compute()) == pytest.approx(sk.roc_auc_score(target.numpy(), scores.numpy()))


def test_macro_average_skips_classes_never_seen_like_scikit_learn():
    # 4 score columns, but class 3 is neither true nor predicted anywhere
    logits = torch.tensor([[3.0, 0, 0, -9], [0, 3.0, 0, -9], [0, 0, 3.0, -9], [3.0, 0, 0, -9]])
    target = torch.tensor([0, 1, 1, 2])
    classes = logits.argmax(1).numpy()
    for cls, reference in ((nf.metrics.Precision, sk.precision_score), (nf.metrics.Recall, sk.recall_score), (nf.metrics.F1, sk.f1_score)):
        metric = cls(average="macro")
        metric.update(logits, target)
        assert float(metric.compute()) == pytest.approx(reference(target.numpy(), classes, average="macro")), cls


def test_metrics_accumulate_without_reading_the_device(monkeypatch, multiclass):
    logits, target = multiclass
    reads = []
    for method in ("item", "tolist", "__float__", "__int__", "__bool__", "numpy"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _o=original, _m=method, **k: reads.append(_m) or _o(self, *a, **k))
    metrics = [nf.metrics.Accuracy(), nf.metrics.AUROC(), nf.metrics.F1(average="macro"), nf.metrics.LogLoss(), nf.metrics.TopKAccuracy(2)]
    for metric in metrics:
        for start in range(0, 120, 10):
            metric.update(logits[start : start + 10], target[start : start + 10])
    assert reads == []


def test_an_empty_metric_is_nan_and_reset_clears_it(regression):
    pred, target = regression
    metric = nf.metrics.MAE()
    assert np.isnan(float(metric.compute()))
    metric.update(pred, target)
    metric.reset()
    metric.update(pred[:2], target[:2])
    assert float(metric.compute()) == pytest.approx(float((pred[:2] - target[:2]).abs().mean()))


def test_metric_names_and_directions():
    assert [m.name for m in (nf.metrics.F1(), nf.metrics.F1(average="macro"), nf.metrics.TopKAccuracy(3),
                             nf.metrics.AUROC(), nf.metrics.AUROC(average="micro"))] == [
        "f1", "f1_macro", "top3_accuracy", "auroc", "auroc_micro"]
    assert [m.maximize for m in (nf.metrics.MAE(), nf.metrics.R2(), nf.metrics.AUROC(), nf.metrics.LogLoss())] == [
        False, True, True, False]


def test_metrics_resolve_from_names():
    assert type(nf.metrics.resolve("auroc")) is nf.metrics.AUROC
    assert type(nf.metrics.resolve(nf.metrics.RMSE)) is nf.metrics.RMSE
    with pytest.raises(ArgumentError) as error:
        nf.metrics.resolve("accuracyy")
    assert str(error.value).startswith("Unknown metric 'accuracyy'; choose one of: acc, accuracy, auc, auroc,")


def test_train_only_and_valid_only_mark_copies():
    mae = nf.metrics.MAE()
    train, valid = nf.metrics.train_only(mae), nf.metrics.valid_only("rmse")
    assert (train.only, valid.only, hasattr(mae, "only")) == ("train", "valid", False)
    chosen = nf.metrics.for_set([mae, train, valid], "valid")
    assert [type(m) for m in chosen] == [nf.metrics.MAE, nf.metrics.RMSE]


@pytest.mark.parametrize(
    "make, pred, message",
    [
        (lambda: nf.metrics.Precision(), torch.zeros(4, 3),
         "Precision(average='binary') needs two classes; the predictions have 3 columns. Use average='macro' or average='micro'."),
        (lambda: nf.metrics.BinaryAccuracy(), torch.zeros(4, 3),
         "BinaryAccuracy needs one score per row; the predictions have 3 columns. Use nf.metrics.Accuracy() for several classes."),
        (lambda: nf.metrics.TopKAccuracy(k=3), torch.zeros(4, 3),
         "TopKAccuracy(k=3) needs more than 3 class scores per row; the predictions have 3."),
    ],
)
def test_classification_metrics_refuse_predictions_of_the_wrong_shape(make, pred, message):
    with pytest.raises(ArgumentError) as error:
        make().update(pred, torch.zeros(4, dtype=torch.int64))
    assert str(error.value) == message


def test_bad_metric_options_are_clear_errors():
    with pytest.raises(ArgumentError) as error:
        nf.metrics.F1(average="weighted")
    assert str(error.value) == "F1 takes average='binary', 'macro' or 'micro', not 'weighted'."
    with pytest.raises(ArgumentError) as error:
        nf.metrics.AUROC(average="none")
    assert str(error.value) == "AUROC takes average='macro', 'weighted' or 'micro', not 'none'."
    with pytest.raises(ArgumentError) as error:
        nf.metrics.TopKAccuracy(k=0)
    assert str(error.value) == "TopKAccuracy needs k to be a positive whole number, not 0."
