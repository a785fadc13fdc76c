"""Random noise: noisy copies of images (`random_point`), the noise-ball attack (worst of several noisy copies)
and the original's "ball" training data (`ball_copies`). All draw through `base.random_perturbation`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sspnet.attacks.base import Attack, Ball, WorstCase, check_count, check_eps, check_norm


class NoiseBall(Attack):
    """Worst of `copies` noisy copies x + U(-eps, eps) clipped to [0, 1] (l2: uniform in the l2 ball).

    Per sample, a misclassified copy wins, else the copy with the highest loss. No gradients are used, so it is
    the baseline a gradient attack must beat (if it does not, suspect gradient masking).
    """

    name = "ball"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        copies: int = 10,
        norm: str = "linf",
        quantize: bool = False,
        generator: torch.Generator | None = None,
        *,
        mode: str = "eval",
    ):
        super().__init__(model, eps, norm=norm, quantize=quantize, mode=mode, generator=generator)
        self.copies = check_count(copies, "copies", 1)

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        ball = Ball(x, self.eps, self.norm, self.quantize)
        worst = WorstCase()
        for _ in range(self.copies):
            cand = ball.random_point(self.generator)
            worst.update(cand, *self._loss_and_wrong(cand, y))
        return worst.best


def random_point(
    x: Tensor,
    eps: float,
    kind: str = "uniform",
    norm: str = "linf",
    generator: torch.Generator | None = None,
    quantize: bool = False,
) -> Tensor:
    """A noisy copy of x (B x C x H x W in [0, 1]): x + `random_perturbation(x, eps, kind, norm)`, projected into
    the eps-ball n [0, 1] (on the 8-bit grid when `quantize`). kind "sign" with linf: every pixel moved by +-eps,
    then clipped to [0, 1]; "uniform": U(-eps, eps) per pixel (l2: uniform in the ball). eps in pixel units."""
    norm = check_norm(norm)
    return Ball(x.detach(), check_eps(eps, norm), norm, quantize).random_point(generator, kind)


def ball_copies(
    x: Tensor,
    y: Tensor,
    eps: float,
    copies: int,
    generator: torch.Generator | None = None,
    norm: str = "linf",
    quantize: bool = False,
) -> tuple[Tensor, Tensor]:
    """The original's "ball" training data: `copies` noisy copies of each image, labels repeated.

    x: B x C x H x W in [0, 1]; returns (copies*B x C x H x W, copies*B), copy-major (copy c of sample i at
    c*B + i). Noise U(-eps, eps) per pixel (l2: uniform in the l2 ball), clipped to [0, 1].
    """
    norm = check_norm(norm)
    eps = check_eps(eps, norm)
    check_count(copies, "copies", 1)
    ball = Ball(x.detach(), eps, norm, quantize)
    xs = torch.cat([ball.random_point(generator, "uniform") for _ in range(copies)])
    return xs, y.repeat(copies)


__all__ = ["NoiseBall", "ball_copies", "random_point"]
