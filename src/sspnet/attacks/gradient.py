"""Gradient attacks: FGSM, PGD (linf / l2, restarts, 8-bit quantisation) and FastFGSM (Wong et al. 2020).

All work on float images in [0, 1] of shape B x C x H x W and return x_adv of the same shape inside the
eps-ball intersected with [0, 1]. eps and alpha are in pixel units.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sspnet.attacks.base import Attack, Ball, WorstCase, _bcast, check_count, check_positive, per_sample_norm


class PGD(Attack):
    """Projected gradient ascent on the cross-entropy.

    x_{t+1} = Proj(x_t + alpha * sign(g)) (linf) or Proj(x_t + alpha * g / ||g||_2) (l2), `steps` times.
    random_start: start from a uniform point of the ball (else from x, as the original evaluation).
    restarts: runs kept per sample as the worst case (misclassified first, then highest loss); without
    random_start the first run starts from x and the others from random points.
    quantize: round to 8-bit levels after every step, staying inside the ball (see `Ball`).
    """

    name = "pgd"

    def __init__(self, model: nn.Module, eps: float, alpha: float, steps: int, norm: str = "linf",
                 random_start: bool = False, restarts: int = 1, quantize: bool = False,
                 generator: torch.Generator | None = None, *, mode: str = "eval"):
        super().__init__(model, eps, norm=norm, quantize=quantize, mode=mode, generator=generator)
        self.alpha = check_positive(alpha, "alpha")
        self.steps = check_count(steps, "steps (iterations)", 0)
        self.restarts = check_count(restarts, "restarts", 1)
        self.random_start = bool(random_start)

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        ball = Ball(x, self.eps, self.norm, self.quantize)
        worst = WorstCase()
        for r in range(self.restarts):
            start_random = self.random_start or r > 0
            cand = self._run(x, y, ball, start_random)
            if self.restarts == 1:
                return cand
            worst.update(cand, *self._loss_and_wrong(cand, y))
        return worst.x

    def _run(self, x: Tensor, y: Tensor, ball: Ball, start_random: bool) -> Tensor:
        if start_random and self.eps > 0:
            x_adv = ball.random_point(self.generator)
        else:
            x_adv = ball.project_(x.clone())
        x_adv.requires_grad_(True)
        for step in range(self.steps):
            g, _ = self.input_grad(x_adv, y)
            if step == 0:
                self._record(g)
            with torch.no_grad():
                self._ascend_(x_adv, g, self.alpha)
                ball.project_(x_adv)
        return x_adv.requires_grad_(False)

    def _ascend_(self, x_adv: Tensor, g: Tensor, alpha: float) -> None:
        if self.norm == "linf":
            x_adv.add_(g.sign_(), alpha=alpha)
        else:
            g = torch.nan_to_num_(g, nan=0.0)
            g.div_(_bcast(per_sample_norm(g, 2).clamp_min(1e-12), g))
            x_adv.add_(g, alpha=alpha)


class FGSM(PGD):
    """Fast gradient sign method: x + eps * sign(grad), clipped to [0, 1] (l2: one normalised step of eps).

    Exactly PGD with one step, alpha = eps, no random start.
    """

    name = "fgsm"

    def __init__(self, model: nn.Module, eps: float, norm: str = "linf", quantize: bool = False, *,
                 mode: str = "eval"):
        Attack.__init__(self, model, eps, norm=norm, quantize=quantize, mode=mode)
        self.alpha, self.steps, self.restarts, self.random_start = self.eps, 1, 1, False


class FastFGSM(PGD):
    """FGSM from a random start (Wong et al. 2020, "fast is better than free"), for adversarial training.

    x0 uniform in the eps-ball n [0, 1], then one step of alpha (default 1.25 eps), projected back.
    Pass mode="keep" to craft in the model's training mode.
    """

    name = "fastfgsm"

    def __init__(self, model: nn.Module, eps: float, alpha: float | None = None, norm: str = "linf",
                 quantize: bool = False, generator: torch.Generator | None = None, *, mode: str = "eval"):
        Attack.__init__(self, model, eps, norm=norm, quantize=quantize, mode=mode, generator=generator)
        self.alpha = 1.25 * self.eps if alpha is None else check_positive(alpha, "alpha")
        self.steps, self.restarts, self.random_start = 1, 1, True
