"""Data-parallel training without DDP's module wrapper: what `fit` needs when a trial is N workers.

The methods call `model.features(x, a, b)` and `model(z, start=s)` and own several optimisers
(greedy's heads, layer_to_layer's student + teacher), so DDP's forward/backward hooks would miss
most of what they train. Instead, once `prepare_model` ran in a worker, every optimiser's `step()`
first averages the gradients of all its parameters over the workers (one flat all-reduce per
step, via torch's global optimiser pre-hook), BatchNorm layers normalise over the global batch,
and every worker takes its own shard of each global batch. With identical initial weights (the
same seed everywhere, then a broadcast from rank 0) every worker then applies the same update,
so the weights stay identical across workers. Pure torch.distributed: works with any launcher
(Ray Train's TorchTrainer, torchrun, a test's spawned processes).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

from trainables.errors import UserError

DRIVER_CPU = 0.01  # the Tune trial that only drives a worker group (Ray refuses an empty bundle)


def world_size() -> int:
    """Workers in the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This worker's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shard_slice(global_batch: int) -> slice:
    """This worker's contiguous part of a global batch of `global_batch` samples (equal parts)."""
    n = world_size()
    if global_batch % n:
        raise UserError(
            f"batch_size={global_batch} does not split evenly over {n} workers; "
            f"use a multiple of {n}"
        )
    size = global_batch // n
    return slice(rank() * size, (rank() + 1) * size)


def _average_gradients(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Optimiser pre-step hook: replace every parameter's gradient by its mean over the workers."""
    grads = [
        p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
    ]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


_hook: RemovableHandle | None = None


def _average_gradients_from_now_on() -> None:
    """Register the averaging hook once per process; it acts on every optimiser of this worker."""
    global _hook
    if _hook is None:
        _hook = register_optimizer_step_pre_hook(_average_gradients)


def prepare_model(modules: list[nn.Module], device: torch.device) -> None:
    """With several workers: BatchNorm over the global batch in `modules`, rank 0's weights on every
    worker, and from now on every optimiser step of this process averages its gradients first. Call
    it after a stage is set up (methods build heads lazily); it changes modules in place, so
    optimisers keep their parameters."""
    if world_size() == 1:
        return
    _average_gradients_from_now_on()
    for module in modules:
        for child in module.modules():
            _sync_batchnorm(child, device)
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def _sync_batchnorm(module: nn.Module, device: torch.device) -> None:
    """Turn a BatchNorm layer into torch's SyncBatchNorm (accelerators) or GlobalBatchNorm
    (CPU/gloo: torch's needs a GPU) by swapping its class: same parameters and buffers, so
    optimisers holding them stay valid."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm) or isinstance(
        module, (nn.SyncBatchNorm, GlobalBatchNorm)
    ):
        return
    if device.type == "cpu":
        module.__class__ = GlobalBatchNorm
    else:
        module.__class__ = nn.SyncBatchNorm
        module.process_group = (
            None  # the default (whole world) group, as SyncBatchNorm's constructor sets
        )


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over workers (the gradient of a sum is the sum of the gradients)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the global batch (all workers), for the CPU/gloo
    case.

    The global mean comes from per-channel sums and counts summed over the workers (differentiably),
    the variance from a second sum of squared deviations from that mean (two passes: the one-pass
    E[x^2] - mean^2 loses digits on the large activations of DGL's deep heads). Every worker
    normalises with the global mean and biased variance and updates the running statistics with
    the unbiased one. Eval mode is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(input)
        dims = [d for d in range(input.dim()) if d != 1]
        x = input.float()
        channels = x.shape[1]
        shape = [1, channels] + [1] * (input.dim() - 2)
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        total = stats[-1]
        mean = stats[:channels] / total
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * total / (total - 1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def sum_over_workers(values: list[float]) -> list[float]:
    """Element-wise sums over the workers (the values themselves with one worker)."""
    return _reduce(values, dist.ReduceOp.SUM)


def max_over_workers(values: list[float]) -> list[float]:
    """Element-wise maxima over the workers."""
    return _reduce(values, dist.ReduceOp.MAX)


def _reduce(values: list[float], op: Any) -> list[float]:
    if world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()
