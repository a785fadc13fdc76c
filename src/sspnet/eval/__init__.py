"""Measuring trained models: robustness evaluation (the one engine behind `sspnet attack` and compare),
sanity flags, the gradient-masking audit, perturbation growth through the depth with the L2 Lipschitz bounds beside
it, and their plots.

Imports nn, data, attacks, io and `sspnet.distributed`; never train, experiments or cli.
"""

from sspnet.eval.config import EvalConfig
from sspnet.eval.flags import sanity_flags
from sspnet.eval.growth import GrowthConfig, GrowthResult, growth_of_run, measure_growth
from sspnet.eval.lipschitz import LipschitzProfile, certified_accuracy, lipschitz_profile
from sspnet.eval.masking import AuditConfig, AuditResult, audit
from sspnet.eval.results import EvalResult
from sspnet.eval.robustness import evaluate
from sspnet.eval.selection import select_images

__all__ = [
    "AuditConfig",
    "AuditResult",
    "EvalConfig",
    "EvalResult",
    "GrowthConfig",
    "GrowthResult",
    "LipschitzProfile",
    "audit",
    "certified_accuracy",
    "evaluate",
    "growth_of_run",
    "lipschitz_profile",
    "measure_growth",
    "sanity_flags",
    "select_images",
]
