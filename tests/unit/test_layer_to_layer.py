"""Unit tests for layer_to_layer: split schedule, epoch allocation, validation, gradient routing,
losses, resume."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from trainables.config import TrainConfig, parse_value
from trainables.data import Batcher, DataSplits, ImageSet
from trainables.methods import layer_to_layer as l2l
from trainables.methods.budget import allocate_epochs
from trainables.methods.layer_to_layer import HEAD_GROUP, LayerToLayer, split_schedule
from trainables.models import MODELS, build_model
from trainables.training import fit, validate

ConfigFactory = Callable[..., TrainConfig]


@pytest.fixture
def l2l_config(make_config: ConfigFactory) -> ConfigFactory:
    """make_config for layer_to_layer with a 10-epoch budget (seed_cnn's 3 stages + finetune fit),
    in whole epochs (budget_unit=epochs: these tests pin epochs per stage; the FLOPs plans are
    tests/unit/test_compute.py's)."""

    def make(**overrides: Any) -> TrainConfig:
        return make_config(
            **{"method": "layer_to_layer", "epochs": 10, "budget_unit": "epochs", **overrides}
        )

    return make


def _method(config: TrainConfig, num_classes: int = 10) -> LayerToLayer:
    torch.manual_seed(0)
    model = build_model(config.model, num_classes, config.width)
    method = LayerToLayer(config, model, num_classes, torch.device("cpu"), steps_per_epoch=1)
    method.start_stage(method.plan()[0])
    return method


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _subset(splits: DataSplits, n: int) -> DataSplits:
    return dataclasses.replace(splits, train=ImageSet(splits.train.x[:n], splits.train.y[:n]))


# --- schedule -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "num_blocks,ratio,step,expected",
    [
        (5, 0.4, 1, [2, 3, 4]),  # seed_cnn default: the reference run (docs/results.md)
        (5, 0.5, 1, [3, 4]),  # 2.5 rounds half up
        (5, 0.01, 1, [1, 2, 3, 4]),  # clamped up to 1
        (5, 0.99, 1, [4]),  # clamped down to L-1: one stage
        (5, 0.4, 2, [2, 4]),
        (5, 0.2, 2, [1, 3, 4]),  # the last step is cut at L-1
        (13, 0.4, 3, [5, 8, 11, 12]),  # vgg16
        (2, 0.9, 5, [1]),
    ],
)
def test_split_schedule(num_blocks: int, ratio: float, step: int, expected: list[int]) -> None:
    assert split_schedule(num_blocks, ratio, step) == expected


def test_split_schedule_needs_two_blocks() -> None:
    with pytest.raises(ValueError, match=">= 2 blocks"):
        split_schedule(1, 0.5, 1)


@pytest.mark.parametrize(
    "weights,epochs,expected",
    [
        ([1, 1, 1], 10, [4, 3, 3]),
        ([1, 1, 1], 3, [1, 1, 1]),
        ([0.98, 0.01, 0.01], 5, [3, 1, 1]),  # every stage gets >= 1 epoch
        ([0.8 / 3] * 3 + [0.2], 10, [3, 3, 2, 2]),  # three stages + 20% finetune
        ([1, 2, 1], 8, [2, 4, 2]),
    ],
)
def test_allocate_epochs(weights: list[float], epochs: int, expected: list[int]) -> None:
    assert allocate_epochs(weights, epochs) == expected


@pytest.mark.parametrize("epochs", range(4, 40, 3))
@pytest.mark.parametrize("weights", [[1, 1, 1, 1], [5, 1, 1, 0.1], [0.3, 0.3, 0.3, 0.1]])
def test_allocate_epochs_adds_up(weights: list[float], epochs: int) -> None:
    alloc = allocate_epochs(weights, epochs)
    assert sum(alloc) == epochs and min(alloc) >= 1
    pairs = [
        (i, j) for i in range(len(weights)) for j in range(len(weights)) if weights[i] > weights[j]
    ]
    assert all(alloc[i] >= alloc[j] for i, j in pairs)  # a larger fraction never gets fewer epochs


@pytest.mark.parametrize(
    "params,epochs,expected",
    [
        ({}, 10, [[0, 2, 4], [1, 3, 3], [2, 4, 3]]),
        ({"finetune_frac": 0.2}, 10, [[0, 2, 3], [1, 3, 3], [2, 4, 2], [3, 5, 2]]),
        (
            {"stage_fracs": [1, 2, 1], "finetune_frac": 0.5},
            16,
            [[0, 2, 2], [1, 3, 4], [2, 4, 2], [3, 5, 8]],
        ),
        ({"split_ratio": 0.8}, 7, [[0, 4, 7]]),
        ({"stage_fracs": "3,1", "split_step": 2}, 4, [[0, 2, 3], [1, 4, 1]]),
    ],
)
def test_plan_spans_the_budget(
    l2l_config: ConfigFactory, params: dict[str, Any], epochs: int, expected: list[list[int]]
) -> None:
    method = _method(l2l_config(epochs=epochs, **params))
    assert method.final_metrics()["split_schedule"] == expected
    assert sum(stage.epochs for stage in method.plan()) == epochs
    assert list(method.aux_modules()) == [
        str(expected[0][1])
    ]  # only the first stage's head exists yet


def test_stage_fracs_of_wrong_length_names_expected_length(l2l_config: ConfigFactory) -> None:
    with pytest.raises(ValueError, match="give 3 fractions"):
        _method(l2l_config(stage_fracs=[1, 1]))


def test_plan_errors_come_before_the_data_loads(l2l_config: ConfigFactory, tmp_path) -> None:
    with pytest.raises(ValueError, match="give 3 fractions"):
        fit(l2l_config(stage_fracs=[1, 1], dataset="cifar100", data_dir=str(tmp_path)))


def test_too_small_budget_names_minimum(l2l_config: ConfigFactory) -> None:
    with pytest.raises(ValueError, match="4 stages.*use epochs >= 4 or a larger split_step"):
        _method(l2l_config(epochs=3, finetune_frac=0.1))


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value",
    [
        ("split_ratio", 0.0),
        ("split_ratio", 1.0),
        ("split_step", 0),
        ("split_step", 1.5),
        ("stage_fracs", []),
        ("stage_fracs", [1, -1]),
        ("stage_fracs", "a,b"),
        ("stage_fracs", [1, 0]),
        ("kd_alpha", -0.1),
        ("kd_alpha", 1.5),
        ("kd_temperature", 0.0),
        ("teacher_grad", -0.5),
        ("teacher_grad", 1.5),
        ("finetune_frac", 1.0),
        ("finetune_frac", -0.1),
        ("aux", "mlp"),
    ],
)
def test_bad_values_name_the_key(l2l_config: ConfigFactory, key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=key):
        validate(l2l_config(**{key: value}))


def test_unknown_param_is_named(l2l_config: ConfigFactory) -> None:
    with pytest.raises(ValueError, match="split_raito.*valid: .*split_ratio"):
        validate(l2l_config(split_raito=0.4))


@pytest.mark.parametrize("value", [[1, 2, 1], parse_value("1,2,1"), "1, 2, 1", (1.0, 2.0, 1.0)])
def test_stage_fracs_forms(l2l_config: ConfigFactory, value: Any) -> None:
    method = _method(l2l_config(epochs=8, stage_fracs=value))
    assert method.params.stage_fracs == (1.0, 2.0, 1.0)
    assert [stage.epochs for stage in method.plan()] == [2, 4, 2]


# --- losses and gradient routing ------------------------------------------------------------
def _teacher_loss_grads(l2l_config: ConfigFactory, beta: float) -> tuple[LayerToLayer, list, list]:
    method = _method(l2l_config(teacher_grad=beta))
    method.eval_mode()  # no dropout: the same forward for every beta
    x, y = _batch()
    method.losses(x, y)["teacher_loss"].backward()
    split = method.split
    student = [p.grad for block in method.model.blocks[:split] for p in block.parameters()]
    teacher = [p.grad for block in method.model.blocks[split:] for p in block.parameters()]
    teacher += [p.grad for p in method.model.head.parameters()]
    return method, student, teacher


def test_beta0_teacher_loss_does_not_reach_student(l2l_config: ConfigFactory) -> None:
    _, student, teacher = _teacher_loss_grads(l2l_config, 0.0)
    assert all(g is None or not g.any() for g in student)
    assert all(g is not None for g in teacher) and any(g.abs().sum() > 0 for g in teacher)


def test_beta_scales_teacher_gradient_into_student(l2l_config: ConfigFactory) -> None:
    _, full, teacher_full = _teacher_loss_grads(l2l_config, 1.0)
    _, half, teacher_half = _teacher_loss_grads(l2l_config, 0.5)
    assert all(g is not None for g in full) and all(g.abs().sum() > 0 for g in full)
    for g1, g05 in zip(full, half):
        torch.testing.assert_close(g05, 0.5 * g1)
    for t1, t05 in zip(teacher_full, teacher_half):  # the teacher's own gradient is unscaled
        torch.testing.assert_close(t05, t1)


def test_kd_alpha_0_student_loss_is_plain_ce(l2l_config: ConfigFactory) -> None:
    method = _method(l2l_config(kd_alpha=0.0))
    method.eval_mode()
    x, y = _batch()
    with torch.no_grad():
        losses = method.losses(x, y)
        u = method.student_logits(method.model.features(x, 0, method.split))
        torch.testing.assert_close(losses["student_loss"], F.cross_entropy(u, y))
        assert torch.equal(losses["loss"], losses["teacher_loss"] + losses["student_loss"])


def test_kd_alpha_1_student_loss_is_tempered_kl_teacher_to_student(
    l2l_config: ConfigFactory,
) -> None:
    tau = 3.0
    method = _method(l2l_config(kd_alpha=1.0, kd_temperature=tau))
    method.eval_mode()
    x, y = _batch()
    with torch.no_grad():
        losses = method.losses(x, y)
        z = method.model.features(x, 0, method.split)
        p_teacher = F.softmax(method.model(z, start=method.split) / tau, dim=1)
        p_student = F.softmax(method.student_logits(z) / tau, dim=1)
        kl = (p_teacher * (p_teacher.log() - p_student.log())).sum(1).mean()
    torch.testing.assert_close(losses["student_loss"], tau**2 * kl)
    assert losses["student_loss"] > 0


def test_train_step_updates_student_head_and_reports_losses(l2l_config: ConfigFactory) -> None:
    method = _method(l2l_config(teacher_grad=0.0))
    head = method.head()
    before = [p.clone() for p in head.parameters()]
    out = method.train_step(*_batch())
    assert set(out) == {"loss", "teacher_loss", "student_loss"}
    assert all(not v.requires_grad and math.isfinite(float(v)) for v in out.values())
    assert all(not torch.equal(b, a) for b, a in zip(before, head.parameters()))


def test_kd_term_sends_no_gradient_into_the_teacher(l2l_config: ConfigFactory) -> None:
    """The student learns from the teacher's soft output; the teacher must not learn from the
    student's loss."""
    method = _method(l2l_config(kd_alpha=1.0, teacher_grad=1.0))
    method.eval_mode()
    method.losses(*_batch())["student_loss"].backward()
    teacher = [*method.model.blocks[method.split :].parameters(), *method.model.head.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in teacher)
    student = [*method.model.blocks[: method.split].parameters(), *method.head().parameters()]
    assert all(p.grad is not None and p.grad.any() for p in student)


@pytest.mark.parametrize("teacher_grad", [1.0, 0.5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fork_and_pool_matches_plain_autograd(
    l2l_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
    teacher_grad: float,
    channels_last: bool,
) -> None:
    """The fast path (the head's pooling and the teacher's input in one node, gradients summed in
    place) gives the losses and gradients of the plain graph (avg_pool2d on a shared z)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, y = _batch()
    x = x.contiguous(memory_format=fmt)
    results = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(l2l, "fork_and_pool", lambda z, k: (z, F.avg_pool2d(z, k)))
        method = _method(l2l_config(teacher_grad=teacher_grad))
        method.model.to(memory_format=fmt)
        method.eval_mode()  # no dropout: both runs see the same forward
        assert (
            method.pool == 2
        )  # seed_cnn's split 2 gives 16x16 features: the head pools them to 8x8
        losses = method.losses(x, y)
        losses["loss"].backward()
        grads = [q.grad.clone() for q in [*method.model.parameters(), *method.head().parameters()]]
        results.append(({k: v.detach() for k, v in losses.items()}, grads))
    (fast_losses, fast_grads), (plain_losses, plain_grads) = results
    for key in plain_losses:
        torch.testing.assert_close(fast_losses[key], plain_losses[key])
    for fast_grad, plain_grad in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(fast_grad, plain_grad)


# --- lazy heads and the one optimiser ---------------------------------------------------------
def _optimizer_params(method: LayerToLayer) -> list[int]:
    return [id(p) for group in method.optimizer.param_groups for p in group["params"]]


def test_each_stage_holds_only_its_own_head(l2l_config: ConfigFactory) -> None:
    method = _method(l2l_config(finetune_frac=0.2))
    model_params = [id(p) for p in method.model.parameters()]
    seen: list[torch.nn.Module] = []  # the heads themselves: ids of freed heads can be reused
    for stage in method.plan():
        method.start_stage(stage)
        method.train_step(*_batch())
        split = method.splits[-1] if stage.info.get("finetune") else stage.info["split"]
        assert list(method.aux_modules()) == [str(split)]
        head = [id(p) for p in method.head().parameters()]
        assert _optimizer_params(method) == model_params + head
        assert {id(p) for p in method.optimizer.state} <= set(
            model_params + head
        )  # no dropped head's state
        seen.append(method.head())
    assert len({id(head) for head in seen}) == len(
        method.splits
    )  # a new head per split; the finetune keeps the last one


def test_model_optimiser_state_carries_across_stages(l2l_config: ConfigFactory) -> None:
    method = _method(l2l_config())
    for _ in range(2):
        method.train_step(*_batch())
    state = {
        p: {k: v.clone() for k, v in method.optimizer.state[p].items()}
        for p in method.model.parameters()
    }
    lr = method.optimizer.param_groups[0]["lr"]
    method.start_stage(method.plan()[1])
    assert (
        method.optimizer.param_groups[0]["lr"]
        == method.optimizer.param_groups[HEAD_GROUP]["lr"]
        == lr
    )
    for param, saved in state.items():
        assert method.optimizer.state[param].keys() == saved.keys()
        assert all(torch.equal(method.optimizer.state[param][k], v) for k, v in saved.items())
    method.train_step(*_batch())
    assert all(float(method.optimizer.state[p]["step"]) == 3 for p in method.model.parameters())
    assert all(float(method.optimizer.state[p]["step"]) == 1 for p in method.head().parameters())


# --- through fit() ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(
    digits: DataSplits,
) -> tuple[TrainConfig, DataSplits, dict[str, Any], dict[int, dict[str, Any]]]:
    """One uninterrupted fit (splits 3 -> 4, then finetune) with a checkpoint file's content
    after every epoch."""
    config = TrainConfig.from_flat(
        dict(
            device="cpu",
            epochs=4,
            batch_size=32,
            width=0.25,
            method="layer_to_layer",
            split_ratio=0.6,
            finetune_frac=0.25,
        )
    )
    splits = _subset(digits, 128)
    checkpoints: dict[int, dict[str, Any]] = {}
    final = fit(
        config,
        lambda m, ckpt: checkpoints.__setitem__(m["epoch"], _roundtrip(ckpt())),
        splits=splits,
    )
    return config, splits, final, checkpoints


def test_split_increases_across_history(reference_run: tuple) -> None:
    _, _, final, _ = reference_run
    history = final["history"]
    assert [h["split"] for h in history] == [3, 3, 4, 5]
    assert [h["stage"] for h in history] == [0, 0, 1, 2]
    assert final["split_schedule"] == [[0, 3, 2], [1, 4, 1], [2, 5, 1]]
    assert len(final["stage_peak_mem_mb"]) == 3
    assert all(0.0 <= h["student_acc"] <= 1.0 for h in history)
    assert all(h["teacher_loss"] > 0 and h["student_loss"] > 0 for h in history[:3])
    assert "student_loss" not in history[3]  # finetune: plain CE on the whole network


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_first_and_last_stage(
    l2l_config: ConfigFactory, tiny_cifar10: DataSplits, name: str
) -> None:
    method = _method(l2l_config(model=name, epochs=20, teacher_grad=0.5))
    x, y = next(
        Batcher(tiny_cifar10).train_batches(tiny_cifar10.train, 8, torch.Generator().manual_seed(0))
    )
    for stage in (method.plan()[0], method.plan()[-1]):
        method.start_stage(stage)
        method.train_mode()
        losses = method.train_step(x, y)
        assert all(math.isfinite(float(v)) for v in losses.values()), (stage, losses)
        method.eval_mode()
        with torch.no_grad():
            outputs = method.predict(x)
        assert {k: tuple(v.shape) for k, v in outputs.items()} == {
            "main": (8, 10),
            "student": (8, 10),
        }
    assert method.split == method.model.num_blocks - 1


def _roundtrip(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint file gives back (and a deep copy, since state_dicts share the live
    tensors)."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_resume_mid_stage_and_at_boundaries_matches_uninterrupted(reference_run: tuple) -> None:
    config, splits, reference, checkpoints = reference_run
    for epoch in (
        1,
        2,
        3,
    ):  # inside stage 0, at the split 3 -> 4 boundary, at the start of the finetune
        resumed: dict[str, Any] = {}
        final = fit(
            config,
            lambda m, ckpt, resumed=resumed: resumed.update(_roundtrip(ckpt())),
            resume=checkpoints[epoch],
            splits=splits,
        )
        for key in ("train_loss", "val_loss", "split"):
            assert [h[key] for h in final["history"]] == [h[key] for h in reference["history"]], (
                epoch,
                key,
            )
        for part in ("model", "aux", "method"):
            assert _equal(resumed[part], checkpoints[4][part]), (
                f"{part} differs after resuming at epoch {epoch}"
            )


def _equal(a: Any, b: Any) -> bool:
    """Deep equality of nested state dicts, tensors compared bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b))
        )
    return a == b
