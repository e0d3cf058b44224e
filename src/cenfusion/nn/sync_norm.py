"""Private batch norms whose statistics span every process of a distributed run.

With ``train.sync_bn`` every :class:`~cenfusion.nn.ModalityBatchNorm2d` becomes a
:class:`SyncModalityBatchNorm2d` and every ``nn.BatchNorm2d`` (the shared-norm ablation) a
:class:`SyncBatchNorm2d`: same parameters, buffers and state-dict keys, but the batch mean and
variance (per modality) are reduced over all processes with a differentiable all-reduce, on
the CPU (gloo) as on CUDA (nccl). ``torch.nn.SyncBatchNorm`` is CUDA-only and knows nothing of
modalities. In one process, or in evaluation, they are the plain modules.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cenfusion.nn.norm import ModalityBatchNorm2d


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """A differentiable sum over processes: the gradient of every process's input is the sum
    of the gradients of every process's output (each output is the same sum)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _all_reduce(tensor: Tensor) -> Tensor:
    return _AllReduceSum.apply(tensor)


def synced_batch_norm(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float,
    eps: float,
) -> Tensor:
    """Batch norm with statistics over every process's samples, for ``M`` norms at once.

    x: ``(M, B, C, H, W)``; weight, bias, running statistics: ``(M, C)``. Mean and (biased)
    variance are summed over ``B, H, W`` of every process in float32, two passes for accuracy;
    the running variance gets the unbiased estimate, as ``nn.BatchNorm2d`` keeps it.
    """
    dims = (1, 3, 4)
    values = x.float()
    count = values.new_tensor([x.shape[1] * x.shape[3] * x.shape[4]])
    totals = _all_reduce(torch.cat([values.sum(dims).flatten(), count]))
    n = totals[-1]
    mean = (totals[:-1] / n).view(x.shape[0], x.shape[2])
    centred = values - mean[:, None, :, None, None]
    var = _all_reduce((centred * centred).sum(dims)) / n
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    y = centred * scale[:, None, :, None, None]
    if bias is not None:
        y = y + bias[:, None, :, None, None]
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.detach(), momentum)
            unbiased = var.detach() * (n / (n - 1).clamp(min=1))
            running_var.lerp_(unbiased, momentum)
    return y.to(x.dtype)


class SyncModalityBatchNorm2d(ModalityBatchNorm2d):
    """:class:`~cenfusion.nn.ModalityBatchNorm2d` whose batch statistics (per modality) are taken
    over the samples of every process; same parameters, buffers and state-dict keys. In one
    process, or in evaluation, it is the plain module."""

    supports_presence = False  # its statistics are all-reduced over every row

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        self._check_input(x)
        momentum = self._momentum_factor()
        y = synced_batch_norm(
            x.unflatten(0, (self.num_modalities, -1)),
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            momentum,
            self.eps,
        )
        return self._exchange(y.flatten(0, 1))


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (the shared-norm ablation) with statistics over every process, on CPU
    as on CUDA; the plain module in one process, in evaluation or without running statistics."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world_size() == 1 or not self.track_running_stats:
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"SyncBatchNorm2d: expected (B, C, H, W), got {tuple(x.shape)}")
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

        def row(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[None]

        y = synced_batch_norm(
            x[None],
            row(self.weight),
            row(self.bias),
            row(self.running_mean),
            row(self.running_var),
            momentum,
            self.eps,
        )
        return y[0]


def convert_sync_batch_norm(model: nn.Module) -> int:
    """Make every batch norm of ``model`` synchronise its statistics; returns how many.

    The classes are swapped in place (the synchronised ones add no state), so checkpoints
    load into either kind. Instance norms (translation) are per sample and stay as they are.
    """
    converted = 0
    for module in model.modules():
        if type(module) is ModalityBatchNorm2d:
            module.__class__ = SyncModalityBatchNorm2d
            converted += 1
        elif type(module) is nn.BatchNorm2d:
            module.__class__ = SyncBatchNorm2d
            converted += 1
    return converted
