"""torch.hub entry points: torch.hub.load(repo_dir, "ssp2", source="local", dataset="cifar10", blocks=6)."""
import os
import sys

dependencies = ["torch"]

try:
    import sspnet
except ImportError:  # a plain checkout that is not pip-installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    import sspnet


def _entry(scheme):
    def build(dataset="cifar10", **kwargs):
        return sspnet.create_model(scheme, dataset=dataset, **kwargs)

    build.__doc__ = f"SSP network with '{scheme}' blocks; kwargs as sspnet.create_model (takes [0,1] pixels)."
    return build


res = _entry("res")
ssp2 = _entry("ssp2")
ssp3 = _entry("ssp3")
ssp43 = _entry("ssp43")
midrk2 = _entry("midrk2")
midrk2_orig = _entry("midrk2-orig")
rk4 = _entry("rk4")
ark = _entry("ark")
