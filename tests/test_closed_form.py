"""The closed-form engine for 1 or K networks against autograd and torch.optim."""

import pytest
import torch

import nnfit as nf
from nnfit.train import closed_form
from nnfit.train.ensemble import StackedMLP, row_losses
from nnfit.train.losses import BinaryLogitLoss, SampleWeighted

OPTIMIZERS = [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.02}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.2}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.02}),
    (torch.optim.RMSprop, {"lr": 0.01, "weight_decay": 0.02}),
    (torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5}),
    (torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.02}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.3}),
]
TASKS = {"regression": ("mse", 2), "multiclass": ("cross_entropy", 3), "binary": ("binary", 1)}


def stacked_layers(net: StackedMLP, opt: closed_form.Optimizer) -> closed_form.Layers:
    L = len(net.weights)
    return closed_form.Layers(opt.params[:L], opt.params[L:], opt.grads[:L], opt.grads[L:], net.activations,
                              [1 - p for p in net.drop_p])


def batch(task, K=3, n=6, p=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(K, n, p, generator=g)
    outputs = TASKS[task][1]
    if task == "regression":
        return x, torch.randn(K, n, outputs, generator=g)
    return x, torch.randint(0, max(outputs, 2), (K, n), generator=g)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("task", list(TASKS))
def test_stacked_gradients_equal_autograd_with_and_without_missing_rows(activation, task):
    torch.manual_seed(0)
    kind, outputs = TASKS[task]
    nets = [nf.MLP(5, hidden=[7, 4], output_size=outputs, activation=activation) for _ in range(3)]
    x, target = batch(task)
    rows_in = torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2, [1.0] * 5 + [0.0]])
    for weight, total in [(None, None), (rows_in, rows_in.sum(dim=1))]:
        ours, theirs = StackedMLP(nets).train(), StackedMLP(nets).train()
        opt = closed_form.Optimizer(ours.parameters(), torch.optim.SGD, {"lr": 0.1}, n_models=3)
        pred, loss = stacked_layers(ours, opt).train_step(x, target, closed_form.LOSSES[kind], weight, total)
        per_row = row_losses(theirs(x), target, task)
        expected = per_row.mean(dim=1) if weight is None else (per_row * weight).sum(dim=1) / total
        expected.sum().backward()
        torch.testing.assert_close(loss, expected.detach())
        torch.testing.assert_close(pred, theirs(x).detach())
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["mse", "cross_entropy", "binary"])
def test_each_loss_with_row_weights_is_the_sample_weighted_torch_loss(kind):
    loss_fn = {"mse": torch.nn.MSELoss(), "cross_entropy": torch.nn.CrossEntropyLoss(), "binary": BinaryLogitLoss()}[kind]
    outputs = {"mse": 2, "cross_entropy": 3, "binary": 1}[kind]
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(9, outputs, generator=g, requires_grad=True)
    target = torch.randn(9, 2, generator=g) if kind == "mse" else torch.randint(0, max(outputs, 2), (9,), generator=g)
    weight = torch.rand(9, generator=g)
    if kind == "binary":  # BinaryLogitLoss has no reduction option: weight its rows by hand
        expected = (torch.nn.functional.binary_cross_entropy_with_logits(pred[:, 0], target.float(), reduction="none")
                    * weight).sum() / weight.sum()
    else:
        expected = SampleWeighted(loss_fn)(pred, target, weight)
    expected.backward()
    loss, grad = closed_form.LOSSES[kind](pred.detach(), target, weight)
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(grad, pred.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("optimizer_class, options", OPTIMIZERS)
def test_k_stacked_models_each_follow_torch_optim_with_their_own_lr_and_weight_decay(optimizer_class, options):
    K = 3
    torch.manual_seed(1)
    stacked = [torch.randn(K, 4, 3), torch.randn(K, 1, 3)]
    ours = [p.clone().requires_grad_(True) for p in stacked]
    rates = [options["lr"] * (k + 1) for k in range(K)]
    decays = [options.get("weight_decay", 0.0) * k for k in range(K)]
    opt = closed_form.Optimizer(ours, optimizer_class, {**options, "lr": rates, "weight_decay": decays}, n_models=K)
    singles = [[p[k].clone().requires_grad_(True) for p in stacked] for k in range(K)]
    torch_opts = [optimizer_class(singles[k], **{**options, "lr": rates[k], "weight_decay": decays[k]}) for k in range(K)]
    for _ in range(6):
        grads = [torch.randn_like(p) for p in stacked]
        for mine, grad in zip(opt.grads, grads):
            mine.copy_(grad)
        opt.step()
        for k in range(K):
            for param, grad in zip(singles[k], grads):
                param.grad = grad[k].clone()
            torch_opts[k].step()
    for k in range(K):
        for mine, theirs in zip(ours, singles[k]):
            torch.testing.assert_close(mine[k].detach(), theirs.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer_class, options", [(torch.optim.Adam, {"lr": 0.1}), (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})])
def test_a_model_that_sits_steps_out_does_not_move_and_keeps_its_own_step_count(optimizer_class, options):
    start = torch.randn(2, 3)
    ours = start.clone().requires_grad_(True)
    opt = closed_form.Optimizer([ours], optimizer_class, options, n_models=2)
    single = start[0].clone().requires_grad_(True)
    torch_opt = optimizer_class([single], **options)
    grads = [torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    for step, grad in enumerate(grads):
        opt.grads[0].copy_(grad)
        if step in (1, 2):  # model 1 sits out, model 2 trains
            opt.step(active=torch.tensor([False, True]))
            assert torch.equal(ours[0].detach(), single.detach())
        else:
            opt.step()
            single.grad = grad[0].clone()
            torch_opt.step()
    assert opt.model_steps.tolist() == [3.0, 5.0]
    torch.testing.assert_close(ours[0].detach(), single.detach(), rtol=1e-6, atol=1e-7)


def test_k_models_trained_together_equal_each_trained_alone():
    K, kind = 3, "cross_entropy"
    torch.manual_seed(2)
    nets = [nf.MLP(5, hidden=[6], output_size=3, activation="tanh") for _ in range(K)]
    x, target = batch("multiclass", K=K, n=8)
    stacked = StackedMLP(nets)
    opt = closed_form.Optimizer(stacked.parameters(), torch.optim.Adam, {"lr": [0.01, 0.02, 0.03]}, n_models=K)
    layers = stacked_layers(stacked, opt)
    for _ in range(4):
        layers.train_step(x, target, closed_form.LOSSES[kind])
        opt.step()
    for k, net in enumerate(nets):  # one model: 2-D weights, an nn.Linear's (out, in) layout
        single = closed_form.Optimizer(net.parameters(), torch.optim.Adam, {"lr": 0.01 * (k + 1)})
        alone = closed_form.Layers([w.t() for w in single.params[0::2]], single.params[1::2],
                                   [g.t() for g in single.grads[0::2]], single.grads[1::2], ["tanh"])
        for _ in range(4):
            alone.train_step(x[k], target[k], closed_form.LOSSES[kind])
            single.step()
        torch.testing.assert_close(stacked.unstack(k).hidden[0].weight, net.hidden[0].weight.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stacked.unstack(k).output.bias, net.output.bias.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("uniform_noise", [False, True])
def test_per_model_dropout_keeps_each_models_share_of_units(uniform_noise):
    torch.manual_seed(3)
    nets = [nf.MLP(2, hidden=[4000], dropout=p) for p in (0.0, 0.5, 0.9)]
    stacked = StackedMLP(nets)
    opt = closed_form.Optimizer(stacked.parameters(), torch.optim.SGD, {"lr": 0.0}, n_models=3)
    L = len(stacked.weights)
    layers = closed_form.Layers(opt.params[:L], opt.params[L:], opt.grads[:L], opt.grads[L:], stacked.activations,
                                [1 - p for p in stacked.drop_p], uniform_noise=uniform_noise)
    _, saved = layers.forward_saving(torch.ones(3, 1, 2))
    noise = saved[0][2]
    kept = (noise > 0).float().mean(dim=(1, 2))
    torch.testing.assert_close(kept, torch.tensor([1.0, 0.5, 0.1]), atol=0.03, rtol=0)
    torch.testing.assert_close(noise.amax(dim=(1, 2)), torch.tensor([1.0, 2.0, 10.0]))


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.RMSprop, torch.optim.Adam])
def test_an_optimizer_goes_on_from_its_state_dict(optimizer_class):
    options = {"lr": 0.05, "momentum": 0.9} if optimizer_class is not torch.optim.Adam else {"lr": 0.05}
    grads = [torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    start = torch.randn(2, 3)
    straight = start.clone().requires_grad_(True)
    opt = closed_form.Optimizer([straight], optimizer_class, options, n_models=2)
    for grad in grads:
        opt.grads[0].copy_(grad)
        opt.step()
    first = start.clone().requires_grad_(True)
    before = closed_form.Optimizer([first], optimizer_class, options, n_models=2)
    for grad in grads[:3]:
        before.grads[0].copy_(grad)
        before.step()
    state = before.state_dict()
    resumed = first.detach().clone().requires_grad_(True)
    after = closed_form.Optimizer([resumed], optimizer_class, {"lr": 1.0}, n_models=2)
    after.load_state_dict(state)
    assert after.param_groups[0]["lr"] == 0.05 and after.steps == 3
    for grad in grads[3:]:
        after.grads[0].copy_(grad)
        after.step()
    assert torch.equal(resumed.detach(), straight.detach())


@pytest.mark.parametrize("optimizer_class, options", OPTIMIZERS)
def test_torch_step_updates_a_torch_optimizer_as_its_own_step_does_bit_for_bit(optimizer_class, options):
    """The loop steps torch's own optimizers with ``torch_step``: the same parameters and the same
    state_dict as ``opt.step()``, step after step, with two parameter groups."""
    g = torch.Generator().manual_seed(4)
    start = [torch.randn(5, 3, generator=g), torch.randn(3, generator=g), torch.randn(2, 5, generator=g)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(6)]

    def trained(fast):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = optimizer_class([{"params": params[:2]}, {"params": params[2:], "lr": options["lr"] / 2}], **options)
        step = closed_form.torch_step(opt) if fast else opt.step
        for batch in grads:
            for p, grad in zip(params, batch):
                p.grad = grad.clone()
            step()
        return params, opt.state_dict()

    (ours, our_state), (theirs, their_state) = trained(True), trained(False)
    assert type(closed_form.torch_step(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1))).__name__ == "TorchStep"
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert our_state["param_groups"] == their_state["param_groups"]
    for k, state in their_state["state"].items():
        assert sorted(our_state["state"][k]) == sorted(state)
        for name, value in state.items():
            assert torch.equal(our_state["state"][k][name], value), name


def test_torch_step_leaves_to_torch_what_it_does_not_implement():
    param = torch.nn.Parameter(torch.ones(2))
    for opt in (torch.optim.Adam([param], amsgrad=True), torch.optim.RMSprop([param], centered=True),
                torch.optim.SGD([param], lr=0.1, maximize=True), torch.optim.Adagrad([param])):
        assert not isinstance(closed_form.torch_step(opt), closed_form.TorchStep), opt
    scheduled = torch.optim.SGD([param], lr=0.1)
    torch.optim.lr_scheduler.StepLR(scheduled, step_size=1)  # wraps scheduled.step to count its calls
    assert not isinstance(closed_form.torch_step(scheduled), closed_form.TorchStep)
    hooked = torch.optim.SGD([param], lr=0.1)
    hooked.register_step_post_hook(lambda *args: None)
    assert not isinstance(closed_form.torch_step(hooked), closed_form.TorchStep)


def _twin_steps(make, schedule):
    """The same parameters stepped by torch's own step and by torch_step; ``schedule(k, params, opt)``
    sets each step's gradients (and may change the optimizer); the parameters after every step."""
    results = []
    for use_ours in (False, True):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2))]
        opt = make(params)
        step = closed_form.torch_step(opt) if use_ours else opt.step  # once, as the loop takes it each epoch
        for k in range(6):
            schedule(k, params, opt)
            step()
        results.append([p.detach().clone() for group in opt.param_groups for p in group["params"]])
    return results


def test_torch_step_equals_torch_when_some_parameters_have_no_momentum_buffer_yet():
    def schedule(k, params, opt):
        params[0].grad = torch.full((3,), 0.5 + k)
        params[1].grad = None if k == 0 else torch.full((2,), -1.0 - k)  # the first step leaves b out

    theirs, ours = _twin_steps(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), schedule)
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b)


def test_torch_step_equals_torch_after_a_group_with_other_options_is_added():
    def schedule(k, params, opt):
        if k == 2:  # a new parameter, in a group asking for what the closed form does not implement
            opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "amsgrad": True, "maximize": True})
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.full_like(p, 0.3 * (k + 1))

    theirs, ours = _twin_steps(lambda p: torch.optim.Adam(p, lr=0.05), schedule)
    assert len(theirs) == len(ours) == 3
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b)
