"""Gradient attacks: FGSM, PGD (linf / l2, restarts, 8-bit quantisation) and FastFGSM (Wong et al. 2020).

All work on float images in [0, 1] of shape B x C x H x W and return x_adv of the same shape inside the
eps-ball intersected with [0, 1]. eps and alpha are in pixel units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sspnet.attacks.base import Attack, Ball, WorstCase, _bcast, check_count, check_positive, per_sample_norm


class PGD(Attack):
    """Projected gradient ascent on the cross-entropy.

    x_{t+1} = Proj(x_t + alpha * sign(g)) (linf) or Proj(x_t + alpha * g / ||g||_2) (l2), `steps` times.
    random_start: start from a uniform point of the ball (else from x, as the original evaluation).
    restarts: runs kept per sample as the worst case (misclassified first, then highest loss); without
    random_start the first run starts from x and the others from random points.
    quantize: round to 8-bit levels after every step, staying inside the ball (see `Ball`).
    early_stop: per-sample early stop, for accuracy evaluation. A sample leaves the batch at the first iterate
    x_0..x_steps that the model misclassifies, and that iterate is returned for it (worst case over iterates, as
    AutoAttack counts); only the samples still classified correctly are forwarded, and a restart runs only on
    the samples no earlier run fooled. Samples never fooled get the last iterate, exactly as without early stop.
    """

    name = "pgd"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        alpha: float,
        steps: int,
        norm: str = "linf",
        random_start: bool = False,
        restarts: int = 1,
        quantize: bool = False,
        generator: torch.Generator | None = None,
        *,
        mode: str = "eval",
        early_stop: bool = False,
    ):
        super().__init__(model, eps, norm=norm, quantize=quantize, mode=mode, generator=generator)
        self.alpha = check_positive(alpha, "alpha")
        self.steps = check_count(steps, "steps (iterations)", 0)
        self.restarts = check_count(restarts, "restarts", 1)
        self.random_start = bool(random_start)
        self.early_stop = bool(early_stop)

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        if self.early_stop:
            return self._craft_early_stop(x, y)[0]
        ball = Ball(x, self.eps, self.norm, self.quantize)
        worst = WorstCase()
        for r in range(self.restarts):
            start_random = self.random_start or r > 0
            cand = self._run(x, y, ball, start_random)
            if self.restarts == 1:
                return cand
            worst.update(cand, *self._loss_and_wrong(cand, y))
        return worst.best

    def craft(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
        return self._craft_early_stop(x, y) if self.early_stop else (self.perturb(x, y), None)

    def _craft_early_stop(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Restarts on the samples not fooled yet; (x_adv, logits) per sample: a fooling iterate where one was
        found, else the worst (highest-loss) last iterate over the restarts."""
        x_adv, logits = self._run_early_stop(x, y, self.random_start)
        for _ in range(1, self.restarts):
            todo = (logits.argmax(1) == y).nonzero().view(-1)
            if todo.numel() == 0:
                break
            cand, cand_logits = self._run_early_stop(x[todo], y[todo], True)
            loss = F.cross_entropy(logits[todo], y[todo], reduction="none")
            cand_loss = F.cross_entropy(cand_logits, y[todo], reduction="none")
            pick = (cand_logits.argmax(1) != y[todo]) | (cand_loss > loss)
            x_adv[todo[pick]], logits[todo[pick]] = cand[pick], cand_logits[pick]
        return x_adv, logits

    def _run_early_stop(self, x: Tensor, y: Tensor, start_random: bool) -> tuple[Tensor, Tensor]:
        """One run in which every sample stops at its first misclassified iterate; (x_adv, logits of x_adv)."""
        ball = Ball(x, self.eps, self.norm, self.quantize)
        cur = self._start(x, ball, start_random)
        out, out_logits = cur.clone(), None
        active = torch.arange(x.shape[0], device=x.device)
        for step in range(self.steps + 1):
            last = step == self.steps
            if last:
                with torch.no_grad():
                    logits = self.model(cur)
            else:
                g, logits = self.input_grad(cur.requires_grad_(True), y[active])
                if step == 0:
                    self._record(g)
            if out_logits is None:
                out_logits = logits.new_empty(x.shape[0], logits.shape[1])
            done = torch.ones_like(y[active], dtype=torch.bool) if last else logits.argmax(1) != y[active]
            cur = cur.detach()
            if bool(done.any()):
                out[active[done]], out_logits[active[done]] = cur[done], logits[done]
                keep = ~done
                if last or not bool(keep.any()):
                    break
                active, cur, g = active[keep], cur[keep], g[keep]
                ball = Ball(x[active], self.eps, self.norm, self.quantize)
            with torch.no_grad():
                self._ascend_(cur, g, self.alpha)
                ball.project_(cur)
        assert out_logits is not None  # set in the first iteration (the loop runs steps + 1 >= 1 times)
        return out, out_logits

    def _start(self, x: Tensor, ball: Ball, start_random: bool) -> Tensor:
        if start_random and self.eps > 0:
            return ball.random_point(self.generator)
        return ball.project_(x.clone())

    def _run(self, x: Tensor, y: Tensor, ball: Ball, start_random: bool) -> Tensor:
        x_adv = self._start(x, ball, start_random)
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

    Exactly PGD with one step, alpha = eps, no random start (early_stop: as PGD's).
    """

    name = "fgsm"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        norm: str = "linf",
        quantize: bool = False,
        *,
        mode: str = "eval",
        early_stop: bool = False,
    ):
        Attack.__init__(self, model, eps, norm=norm, quantize=quantize, mode=mode)
        self.alpha, self.steps, self.restarts, self.random_start = self.eps, 1, 1, False
        self.early_stop = bool(early_stop)


class FastFGSM(PGD):
    """FGSM from a random start (Wong et al. 2020, "fast is better than free"), for adversarial training.

    x0 uniform in the eps-ball n [0, 1], then one step of alpha (default 1.25 eps), projected back.
    Pass mode="keep" to craft in the model's training mode.
    """

    name = "fastfgsm"
    ALPHA_REL = 1.25  # its own step rule: alpha = 1.25 eps

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        alpha: float | None = None,
        norm: str = "linf",
        quantize: bool = False,
        generator: torch.Generator | None = None,
        *,
        mode: str = "eval",
    ):
        Attack.__init__(self, model, eps, norm=norm, quantize=quantize, mode=mode, generator=generator)
        self.alpha = self.ALPHA_REL * self.eps if alpha is None else check_positive(alpha, "alpha")
        self.steps, self.restarts, self.random_start, self.early_stop = 1, 1, True, False
