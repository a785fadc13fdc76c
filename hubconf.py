"""torch.hub entry points: torch.hub.load(repo_dir, "ssp2", source="local", dataset="cifar10", blocks=6), or with
trained weights: torch.hub.load(repo_dir, "ssp2", source="local", weights="runs/ssp2" or "https://...pt#sha256=HEX")."""
import os
import sys

dependencies = ["torch"]

try:
    import sspnet
except ImportError:  # a plain checkout that is not pip-installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    import sspnet


def _entry(scheme):
    def build(dataset=None, weights=None, weights_sha256=None, pretrained=False, **kwargs):
        from sspnet.nn.hub import NO_PRETRAINED, load_weights

        if pretrained:
            raise ValueError(NO_PRETRAINED)
        if weights is not None:
            if dataset is not None:
                kwargs["dataset"] = dataset
            return load_weights(weights, scheme, sha256=weights_sha256, **kwargs)
        return sspnet.create_model(scheme, dataset=dataset or "cifar10", **kwargs)

    build.__doc__ = (f"SSP network with '{scheme}' blocks (takes [0,1] pixels). Without weights: a fresh network, "
                     f"kwargs as sspnet.create_model (dataset default cifar10). weights=: a run folder, a checkpoint "
                     f"file or an https URL with its sha256 ('...pt#sha256=HEX' or weights_sha256=HEX; cached under "
                     f"torch.hub.get_dir()/checkpoints), loaded by sspnet.load_model (kwargs as its overrides). "
                     f"sspnet publishes no pretrained weights: pretrained=True is refused.")
    return build


res = _entry("res")
ssp2 = _entry("ssp2")
ssp3 = _entry("ssp3")
ssp43 = _entry("ssp43")
midrk2 = _entry("midrk2")
midrk2_orig = _entry("midrk2-orig")
rk4 = _entry("rk4")
ark = _entry("ark")
