"""layer_to_layer (Bhyravabhottla & Lee 2023): early blocks are a student with an auxiliary head,
later blocks a teacher.

Per batch (docs/design.md), with split s, student S = blocks[0..s-1], teacher
T = blocks[s..L-1] + head:
    z = S(x);  u = a_k(z);  v = T(z.detach() if beta == 0 else grad_scale(z, beta))
    L_T = CE(v, y);  L_S = (1 - alpha) CE(u, y) + alpha tau^2 KL(softmax(v/tau) || softmax(u/tau))
one backward of L_T + L_S, one optimiser step. The split moves forward stage by stage
(s_1 = clamp(round(r L), 1, L-1), s_{k+1} = min(s_k + step, L-1), until it reaches L-1),
then an optional end-to-end finetune. Only the current split's auxiliary head exists: it is built
when its stage starts and dropped (with its optimiser state) when the next split's stage starts,
while the model's optimiser state and the schedule carry across stages.
docs/layer_to_layer.md explains the choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import TrainConfig, check_choice, check_range
from trainables.errors import UserError
from trainables.methods.aux_heads import AUX_KINDS, build_aux_head
from trainables.methods.base import Method, MethodParams, Stage
from trainables.methods.optim import make_optimizer, make_scheduler
from trainables.models import BlockNet

HEAD_GROUP = 1  # the optimiser's param group of the current auxiliary head (group 0: the model)
HEAD_RESOLUTION = (
    8  # the conv head's input is pooled to this size (aux_heads' conv head pools to <= 8x8)
)


@dataclass
class LayerToLayerParams(MethodParams):
    """layer_to_layer's knobs; defaults reach standard's accuracy on digits/seed_cnn
    (docs/layer_to_layer.md)."""

    split_ratio: float = 0.4
    split_step: int = 1
    stage_fracs: Any = None  # None (equal stages), a list of positive numbers, or "1,2,1"
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    teacher_grad: float = 1.0
    finetune_frac: float = 0.0
    aux: str = "conv"

    def __post_init__(self) -> None:
        check_range("split_ratio", self.split_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_range("split_step", self.split_step, 1, None)
        if int(self.split_step) != self.split_step:
            raise UserError(f"split_step={self.split_step!r} must be a whole number >= 1")
        self.split_step = int(self.split_step)
        self.stage_fracs = _parse_fracs(self.stage_fracs)
        check_range("kd_alpha", self.kd_alpha, 0.0, 1.0)
        check_range("kd_temperature", self.kd_temperature, 0.0, None, low_open=True)
        check_range("teacher_grad", self.teacher_grad, 0.0, 1.0)
        check_range("finetune_frac", self.finetune_frac, 0.0, 1.0, high_open=True)
        check_choice("aux", self.aux, AUX_KINDS)


def _parse_fracs(value: Any) -> tuple[float, ...] | None:
    """stage_fracs as a tuple of positive floats; accepts a list, one number or a comma string."""
    if value is None:
        return None
    items = value
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, (int, float)):
        items = [value]
    try:
        fracs = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise UserError(
            f"stage_fracs={value!r} must be a list of positive numbers, e.g. 1,2,1"
        ) from None
    if not fracs:
        raise UserError(
            "stage_fracs=[] is empty; give one positive number per stage or leave it unset"
        )
    for frac in fracs:
        check_range("stage_fracs", frac, 0.0, None, low_open=True)
    return fracs


def split_schedule(num_blocks: int, ratio: float, step: int) -> list[int]:
    """Student sizes per stage: s_1 = clamp(round half up(r L), 1, L-1), then +step until L-1."""
    if num_blocks < 2:
        raise UserError(f"layer_to_layer needs a model with >= 2 blocks, got {num_blocks}")
    split = min(max(math.floor(ratio * num_blocks + 0.5), 1), num_blocks - 1)
    splits = [split]
    while split < num_blocks - 1:
        split = min(split + step, num_blocks - 1)
        splits.append(split)
    return splits


class _GradScale(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` unchanged, with the gradient flowing back through it scaled by `scale` (no copy)."""
    return _GradScale.apply(x, scale)


class _ForkAndPool(torch.autograd.Function):
    """z -> (z, avg_pool2d(z, k)) as one node. Backward adds the pooled branch's gradient, spread
    over each k x k window, into the other branch's gradient in place: the split output's two
    gradients never both exist at full size, and no full-size zero-filled pooling gradient is made
    (memory and CPU time: benchmarks/README.md)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.k = k
        return z.view_as(z), F.avg_pool2d(z, k)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor, grad_pooled: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        k = ctx.k
        n, c, h, w = grad.shape
        grad.view(n, c, h // k, k, w // k, k).add_(
            grad_pooled.view(n, c, h // k, 1, w // k, 1), alpha=1 / k**2
        )
        return grad, None


def fork_and_pool(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, avg_pool2d(z, k)), with the two branches' gradients summed in place into one tensor."""
    return _ForkAndPool.apply(z, k)


class LayerToLayer(Method):
    """Student blocks + aux head learn from labels and the teacher; teacher blocks learn from the
    student's features."""

    name = "layer_to_layer"
    Params = LayerToLayerParams
    params: LayerToLayerParams
    PLAN_KNOBS = (
        "split_ratio",
        "split_step",
        "stage_fracs",
        "finetune_frac",
        "kd_alpha",
        "kd_temperature",
    )
    FEWER_STAGES = "a larger split_step"

    def __init__(
        self,
        config: TrainConfig,
        model: BlockNet,
        num_classes: int,
        device: torch.device,
        steps_per_epoch: int,
        stage_epochs: list[int] | None = None,
    ):
        super().__init__(config, model, num_classes, device, steps_per_epoch, stage_epochs)
        p = self.params
        num_blocks = model.num_blocks
        self.splits = split_schedule(num_blocks, p.split_ratio, p.split_step)
        fracs = p.stage_fracs or (1.0,) * len(self.splits)
        if len(fracs) != len(self.splits):
            raise UserError(
                f"stage_fracs has {len(fracs)} entries but split_ratio={p.split_ratio}, "
                f"split_step={p.split_step} "
                f"give {len(self.splits)} stages (splits {self.splits} of L={num_blocks}); "
                f"give {len(self.splits)} fractions or leave stage_fracs unset"
            )
        weights = [f / sum(fracs) * (1.0 - p.finetune_frac) for f in fracs]
        self.stages = [
            Stage(k, info={"split": s}, weight=w)
            for k, (s, w) in enumerate(zip(self.splits, weights))
        ]
        if p.finetune_frac > 0:
            self.stages.append(
                Stage(
                    len(self.splits),
                    info={"split": num_blocks, "finetune": True},
                    weight=p.finetune_frac,
                )
            )
        self.shapes = model.feature_shapes()
        self.aux = nn.ModuleDict()  # {str(split): head} of the current split only (see `_use_head`)
        self.pool = 1  # the head's input pooling (see `_head_pool`)
        self.split = self.splits[0]
        self.finetune = False
        self.optimizer: torch.optim.Optimizer | None = None

    def layout(self) -> list[Stage]:
        return list(self.stages)

    def aux_modules(self) -> nn.ModuleDict:
        return self.aux

    def start_stage(self, stage: Stage) -> None:
        """Move the split and swap in its head; the one optimiser and schedule span the whole
        run."""
        self.finetune = bool(stage.info.get("finetune"))
        self.split = self.splits[-1] if self.finetune else stage.info["split"]
        self._use_head(self.split)
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.model.parameters(), self.config)
            self.optimizer.add_param_group({"params": list(self.head().parameters())})
            self.scheduler = make_scheduler(
                self.optimizer, self.config, self.total_epochs() * self.steps_per_epoch
            )

    def head(self) -> nn.Module:
        """The current split's auxiliary head (the student's classifier)."""
        return self.aux[str(self.split)]

    def _use_head(self, split: int) -> None:
        """Make `split`'s head the only one: build it unless it exists (restored from a checkpoint),
        drop the previous head with its optimiser state, and point the optimiser's head group at the
        new parameters."""
        key = str(split)
        if key in self.aux:
            return
        for old in list(self.aux):
            if self.optimizer is not None:
                for param in self.aux[old].parameters():
                    self.optimizer.state.pop(param, None)
            del self.aux[old]
        shape = self.shapes[split - 1]
        self.pool = _head_pool(shape, self.params.aux)
        if self.pool > 1:
            shape = (shape[0], shape[1] // self.pool, shape[2] // self.pool)
        self.aux[key] = build_aux_head(shape, self.num_classes, self.params.aux).to(self.device)
        if self.optimizer is not None:
            self.optimizer.param_groups[HEAD_GROUP]["params"] = list(self.aux[key].parameters())

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The losses of one batch with their graph (one forward through student and teacher)."""
        if self.finetune:
            return {"loss": self.criterion(self.model(x), y)}
        p = self.params
        z = self.model.features(x, 0, self.split)
        if p.teacher_grad == 0:
            z_teacher, z_head = z.detach(), self._pooled(z)
        else:
            z_teacher, z_head = fork_and_pool(z, self.pool) if self.pool > 1 else (z, z)
            z_teacher = z_teacher if p.teacher_grad == 1 else grad_scale(z_teacher, p.teacher_grad)
        v = self.model(z_teacher, start=self.split).float()
        u = self.head()(
            z_head
        ).float()  # after the teacher: autograd then runs the head's backward first
        teacher_loss = self.criterion(v, y)
        tau = p.kd_temperature
        kd = F.kl_div(
            F.log_softmax(u / tau, dim=1),
            F.log_softmax(v.detach() / tau, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        student_loss = (1 - p.kd_alpha) * self.criterion(u, y) + p.kd_alpha * tau**2 * kd
        return {
            "loss": teacher_loss + student_loss,
            "teacher_loss": teacher_loss,
            "student_loss": student_loss,
        }

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.autocast():
            losses = self.losses(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        self.scheduler.step()
        return {key: value.detach() for key, value in losses.items()}

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Full network ('main') and the current student head ('student'; the last one during
        finetune)."""
        z = self.model.features(x, 0, self.split)
        return {"main": self.model(z, start=self.split), "student": self.student_logits(z)}

    def student_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The current head's logits from the student's output `z` (blocks[:split])."""
        return self.head()(self._pooled(z))

    def _pooled(self, z: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(z, self.pool) if self.pool > 1 else z

    def stage_metrics(self, stage: Stage) -> dict[str, Any]:
        return {"stage": stage.index, "split": stage.info["split"]}

    def final_metrics(self) -> dict[str, Any]:
        return {"split_schedule": [[s.index, s.info["split"], s.epochs] for s in self.plan()]}

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "head_split": self.split,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Saved with the same head: as is. Saved at a stage boundary, before the split moved: the
        model's state and the schedule as saved, the new head without state, exactly as `_use_head`
        left the live run."""
        optimizer_state = state["optimizer"]
        if state["head_split"] != self.split:
            optimizer_state = _with_fresh_head(
                optimizer_state,
                len(self.optimizer.param_groups[0]["params"]),
                len(self.optimizer.param_groups[HEAD_GROUP]["params"]),
            )
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(state["scheduler"])

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint holds the head in use when it was taken: build that head, then load it."""
        for split in sorted({int(name.split(".", 1)[0]) for name in state}):
            self._use_head(split)
        self.aux.load_state_dict(state)


def _head_pool(feature_shape: tuple[int, ...], aux: str) -> int:
    """The average-pool factor layer_to_layer applies before a `conv` head (1: none), so the head's
    own pooling to HEAD_RESOLUTION happens in `fork_and_pool`; only for sizes that pool exactly."""
    if aux != "conv" or len(feature_shape) != 3:
        return 1
    _, height, width = feature_shape
    if height <= HEAD_RESOLUTION or height % HEAD_RESOLUTION or width != height:
        return 1
    return height // HEAD_RESOLUTION


def _with_fresh_head(saved: dict[str, Any], model_params: int, head_params: int) -> dict[str, Any]:
    """An optimiser state_dict whose head group (saved with another head) points at a new head of
    `head_params` parameters with no state; the model's state (indices < model_params) and every
    group's settings are kept."""
    groups = [dict(group) for group in saved["param_groups"]]
    groups[HEAD_GROUP]["params"] = list(range(model_params, model_params + head_params))
    state = {index: value for index, value in saved["state"].items() if int(index) < model_params}
    return {"state": state, "param_groups": groups}
