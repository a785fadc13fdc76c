"""BatchNorm with the statistics of the global batch under DDP, so that K processes train the model one would.

Plain BatchNorm under DDP normalises each rank's sub-batch with that sub-batch's own mean and variance: the
K-process model then differs from the one-process model. `sync_batchnorm(model, device)` makes every BatchNorm
of a model use the statistics of the whole global batch:

- CUDA: `torch.nn.SyncBatchNorm.convert_sync_batchnorm`.
- elsewhere (CPU with gloo): torch 2.13's SyncBatchNorm refuses non-GPU inputs ("SyncBatchNorm expected input
  tensor to be on GPU ..."), so each `nn.BatchNorm2d` becomes a `CrossRankBatchNorm2d`. In training mode it
  sums, per channel, this rank's element count, sum and sum of squares (float64) over all ranks with one
  all-reduce, normalises with the global mean and biased variance, and moves the running statistics with the
  global mean and unbiased variance, as BatchNorm2d does on the whole batch. The all-reduce is differentiable
  (its backward all-reduces the gradients), so a rank's input gradient includes the other ranks' losses
  through the shared statistics, exactly as in one process. Ranks may hold different numbers of images (an
  uneven last batch). In eval mode, or without a process group, it is BatchNorm2d.

Both keep the parameter and buffer tensors and the state_dict keys of the BatchNorm they replace, so
checkpoints keep the plain BatchNorm2d layout and load with `sspnet.load_model`.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from sspnet import distributed as dist


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of rank r's input is the sum over ranks of the output gradients."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        out = t.clone()
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        tdist.all_reduce(grad, op=tdist.ReduceOp.SUM)
        return grad


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch of all ranks (module docstring).

    Input and output: B x C x H x W (B may differ between ranks). Collective: in training mode every rank must
    run the same forwards (and backwards) in the same order, as DDP requires anyway.
    """

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> CrossRankBatchNorm2d:
        """A CrossRankBatchNorm2d holding `bn`'s own parameter and buffer tensors (nothing copied)."""
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta")
        for name in ("weight", "bias"):
            setattr(new, name, getattr(bn, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(bn, name))
        return new.train(bn.training)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        xd = x.double()
        dims = [0, 2, 3]
        count = torch.full((1,), x.numel() // max(c, 1), dtype=torch.float64, device=x.device)
        total = _AllReduceSum.apply(torch.cat([xd.sum(dims), (xd * xd).sum(dims), count]))
        n = float(total[-1].detach())  # elements per channel in the global batch
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        self._update_running(mean.detach(), var.detach(), n)
        shape = (1, c, 1, 1)
        y = (x - mean.to(x.dtype).view(shape)) * torch.rsqrt(var.to(x.dtype) + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, n: float) -> None:
        """running = (1 - f) running + f batch, f = momentum (1 / batches seen when momentum is None); the
        variance unbiased over the n elements per channel of the global batch."""
        if not self.track_running_stats or self.running_mean is None:
            return
        self.num_batches_tracked.add_(1)
        f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.mul_(1 - f).add_(mean.to(self.running_mean.dtype), alpha=f)
        self.running_var.mul_(1 - f).add_(unbiased.to(self.running_var.dtype), alpha=f)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm using global-batch statistics (CUDA: SyncBatchNorm; else
    CrossRankBatchNorm2d), converted in place; returns it (the same object unless it is itself a BatchNorm)."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if type(model) is nn.BatchNorm2d:
        return CrossRankBatchNorm2d.from_batchnorm(model)
    for name, child in model.named_children():
        setattr(model, name, sync_batchnorm(child, device))
    return model
