"""Private normalisation per modality over the stacked ``(M*B, C, H, W)`` tensor.

State-dict layout (documented choice): every per-modality parameter and buffer is one tensor
with the modality on the first axis, ``weight``/``bias``/``running_mean``/``running_var`` of
shape ``(M, C)``; row ``m`` is modality ``m``'s norm (``bn2.weight[1]`` is the second modality's
gamma). ``num_batches_tracked`` is a single counter: every modality sees every batch.

A norm can also be an *exchange site*: with ``exchange_threshold`` set, its output goes through
:func:`cenfusion.nn.channel_exchange` with its own gamma, and :func:`cenfusion.nn.sparsity_penalty`
penalises its scaling factors.

Under a per-sample presence mask (``presence``, set by :func:`cenfusion.nn.presence_context`;
see :mod:`cenfusion.nn.presence`) a training norm takes each modality's statistics over its
present rows only and the exchange draws from present modalities only; the masked path is
composite (slower) and taken only when some sample lacks a modality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cenfusion.nn.dispatch import composite_path_needed
from cenfusion.nn.exchange import channel_exchange
from cenfusion.nn.stacking import split_modalities


class ModalityNorm(nn.Module):
    """Parameters, buffers and the exchange step shared by the private norms."""

    def __init__(
        self,
        num_features: int,
        num_modalities: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        exchange_threshold: float | None = None,
        exchange_site: bool | None = None,
    ) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError(f"num_modalities must be >= 1, got {num_modalities}")
        self.num_features = num_features
        self.num_modalities = num_modalities
        self.eps = eps
        self.momentum = momentum
        self.exchange_threshold = exchange_threshold
        # A site is where the method may exchange; it keeps its L1 term when exchange is off
        # (the paper's "private BN + half-channel L1" ablation row).
        self.exchange_site = (
            exchange_threshold is not None if exchange_site is None else exchange_site
        )
        shape = (num_modalities, num_features)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        # (M, B) boolean while a forward pass runs under a presence mask, else None
        self.presence: Tensor | None = None

    def restrict_modalities(self, rows: list[int]) -> None:
        """Keep only the modalities ``rows`` (in that order): their gamma, beta and running
        statistics (see :meth:`cenfusion.nn.StackedModel.with_modalities`)."""
        index = torch.tensor(rows, device=self.weight.device)
        self.weight = nn.Parameter(self.weight.detach().index_select(0, index))
        self.bias = nn.Parameter(self.bias.detach().index_select(0, index))
        self.running_mean = self.running_mean.index_select(0, index)
        self.running_var = self.running_var.index_select(0, index)
        self.num_modalities = len(rows)

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        text = f"{self.num_features}, num_modalities={self.num_modalities}, eps={self.eps}"
        if self.exchange_threshold is not None:
            text += f", exchange_threshold={self.exchange_threshold}"
        return text

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected input (M*B, {self.num_features}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] % self.num_modalities:
            raise ValueError(
                f"{type(self).__name__}: batch axis {x.shape[0]} is not a multiple of "
                f"num_modalities={self.num_modalities}"
            )

    def _momentum_factor(self) -> float:
        """The running-average factor for this step (cumulative average when momentum=None)."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def _normalise_with_running_stats(self, x: Tensor) -> Tensor:
        """Evaluation-mode normalisation: per modality, a fixed affine map of the input."""
        if composite_path_needed():
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)
            shift = self.bias - self.running_mean * scale
            shape = (self.num_modalities, 1, self.num_features, 1, 1)
            per_modality = x.unflatten(0, (self.num_modalities, -1))
            return torch.addcmul(shift.view(shape), per_modality, scale.view(shape)).flatten(0, 1)
        return _StackedBatchNorm.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            False,
            0.0,
            self.eps,
            self.num_modalities,
        )

    def _exchange(self, y: Tensor) -> Tensor:
        if self.exchange_threshold is None:
            return y
        return channel_exchange(
            y, self.weight, self.exchange_threshold, self.num_modalities, self.presence
        )

    def _update_running_stats(
        self, m: int, mean: Tensor, unbiased_var: Tensor, momentum: float
    ) -> None:
        with torch.no_grad():
            self.running_mean[m].mul_(1 - momentum).add_(
                mean.to(self.running_mean.dtype), alpha=momentum
            )
            self.running_var[m].mul_(1 - momentum).add_(
                unbiased_var.to(self.running_var.dtype), alpha=momentum
            )

    def _affine(self, m: int, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """``(x - mean) / sqrt(var + eps) * gamma_m + beta_m`` with per-channel statistics
        broadcast over ``x`` (rows, C, H, W) or given per row (rows, C)."""
        shape = (-1, self.num_features, 1, 1) if mean.dim() == 2 else (1, -1, 1, 1)
        scale = torch.rsqrt(var + self.eps).view(shape) * self.weight[m].view(1, -1, 1, 1)
        return (x - mean.view(shape)) * scale + self.bias[m].view(1, -1, 1, 1)


class ModalityBatchNorm2d(ModalityNorm):
    """One BatchNorm2d per modality, applied to the stacked ``(M*B, C, H, W)`` tensor.

    Batch statistics are taken per modality (over its ``B`` samples), exactly as ``M`` separate
    ``nn.BatchNorm2d`` would. The fast path writes every modality's normalised slice straight
    into one output tensor (no concatenation copy); traced, scripted and compiled code takes an
    equivalent composite path.
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if not self.training:
            return self._exchange(self._normalise_with_running_stats(x))
        momentum = self._momentum_factor()
        if self.presence is not None:
            return self._exchange(self._masked_batch_norm(x, momentum))
        if composite_path_needed():
            y = torch.cat(
                [
                    F.batch_norm(
                        x_m,
                        self.running_mean[m],
                        self.running_var[m],
                        self.weight[m],
                        self.bias[m],
                        True,
                        momentum,
                        self.eps,
                    )
                    for m, x_m in enumerate(split_modalities(x, self.num_modalities))
                ]
            )
        else:
            y = _StackedBatchNorm.apply(
                x,
                self.weight,
                self.bias,
                self.running_mean,
                self.running_var,
                True,
                momentum,
                self.eps,
                self.num_modalities,
            )
        return self._exchange(y)

    def _masked_batch_norm(self, x: Tensor, momentum: float) -> Tensor:
        """Training statistics of modality ``m`` over its present rows only (a modality absent
        from every sample: its running statistics, left as they are)."""
        assert self.presence is not None
        outputs = []
        for m, x_m in enumerate(split_modalities(x, self.num_modalities)):
            rows = x_m[self.presence[m]].float()
            if rows.shape[0] == 0:
                mean, var = self.running_mean[m], self.running_var[m]
            else:
                mean = rows.mean(dim=(0, 2, 3))
                var = rows.var(dim=(0, 2, 3), unbiased=False)
                count = rows.numel() // self.num_features
                unbiased = var * (count / (count - 1)) if count > 1 else var
                self._update_running_stats(m, mean.detach(), unbiased.detach(), momentum)
            outputs.append(self._affine(m, x_m.float(), mean, var).to(x.dtype))
        return torch.cat(outputs)


class ModalityInstanceNorm2d(ModalityNorm):
    """One affine InstanceNorm2d with running statistics per modality (the translation norm).

    Training normalises each sample by its own statistics and updates modality ``m``'s running
    statistics from its samples, as ``nn.InstanceNorm2d(affine=True, track_running_stats=True)``
    does; evaluation uses the running statistics, as that module does.
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if not self.training:
            return self._exchange(self._normalise_with_running_stats(x))
        momentum = self._momentum_factor()
        if self.presence is not None:
            return self._exchange(self._masked_instance_norm(x, momentum))
        y = torch.cat(
            [
                F.instance_norm(
                    x_m,
                    self.running_mean[m],
                    self.running_var[m],
                    self.weight[m],
                    self.bias[m],
                    True,
                    momentum,
                    self.eps,
                )
                for m, x_m in enumerate(split_modalities(x, self.num_modalities))
            ]
        )
        return self._exchange(y)

    def _masked_instance_norm(self, x: Tensor, momentum: float) -> Tensor:
        """Every sample by its own statistics, as always; the running statistics move towards
        the mean of the *present* samples' statistics only (as ``F.instance_norm`` averages
        all of them)."""
        assert self.presence is not None
        outputs = []
        for m, x_m in enumerate(split_modalities(x, self.num_modalities)):
            values = x_m.float()
            mean = values.mean(dim=(2, 3))
            var = values.var(dim=(2, 3), unbiased=False)
            present = self.presence[m]
            if bool(present.any()):
                count = values.shape[2] * values.shape[3]
                unbiased = var[present] * (count / (count - 1)) if count > 1 else var[present]
                self._update_running_stats(
                    m, mean[present].mean(0).detach(), unbiased.mean(0).detach(), momentum
                )
            outputs.append(self._affine(m, values, mean, var).to(x.dtype))
        return torch.cat(outputs)


class _StackedBatchNorm(torch.autograd.Function):
    """``M`` native batch norms written into slices of one output, and their exact backward."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        use_batch_stats: bool,
        momentum: float,
        eps: float,
        num_modalities: int,
    ) -> Tensor:
        out = torch.empty_like(x)
        save_mean = x.new_empty(weight.shape, dtype=_stat_dtype(x))
        save_invstd = x.new_empty(weight.shape, dtype=_stat_dtype(x))
        xs = split_modalities(x, num_modalities)
        outs = split_modalities(out, num_modalities)
        for m in range(num_modalities):
            torch.ops.aten.native_batch_norm.out(
                xs[m],
                weight[m],
                bias[m],
                running_mean[m],
                running_var[m],
                use_batch_stats,
                momentum,
                eps,
                out=outs[m],
                save_mean=save_mean[m],
                save_invstd=save_invstd[m],
            )
        ctx.save_for_backward(x, weight, running_mean, running_var, save_mean, save_invstd)
        ctx.use_batch_stats = use_batch_stats
        ctx.eps = eps
        ctx.num_modalities = num_modalities
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight, running_mean, running_var, save_mean, save_invstd = ctx.saved_tensors
        num_modalities = ctx.num_modalities
        grad_out = grad_out.contiguous(memory_format=_memory_format(x))
        grad_x = torch.empty_like(x)
        grad_weight = torch.empty_like(weight)
        grad_bias = torch.empty_like(weight)
        grad_outs = split_modalities(grad_out, num_modalities)
        xs = split_modalities(x, num_modalities)
        grad_xs = split_modalities(grad_x, num_modalities)
        for m in range(num_modalities):
            torch.ops.aten.native_batch_norm_backward.out(
                grad_outs[m],
                xs[m],
                weight[m],
                running_mean[m],
                running_var[m],
                save_mean[m] if ctx.use_batch_stats else None,
                save_invstd[m] if ctx.use_batch_stats else None,
                ctx.use_batch_stats,
                ctx.eps,
                [True, True, True],
                out0=grad_xs[m],
                out1=grad_weight[m],
                out2=grad_bias[m],
            )
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None


def _stat_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _memory_format(x: Tensor) -> torch.memory_format:
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format
