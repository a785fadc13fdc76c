"""sspnet: strong-stability-preserving Runge-Kutta networks for adversarial-robustness research.

    import sspnet
    model = sspnet.create_model("ssp2", dataset="cifar10")      # takes [0, 1] pixels
    model = sspnet.load_model("runs/ssp2")                      # run folder or checkpoint, eval mode
"""
__version__ = "0.1.0"

from .checkpoints import load_model, save_checkpoint
from .models import create_model, list_models, model_cost
from .schemes import Scheme, get_scheme, list_schemes, register_scheme
from .specs import dataset_names, get_dataset_spec

__all__ = ["Scheme", "create_model", "dataset_names", "get_dataset_spec", "get_scheme", "list_models",
           "list_schemes", "load_model", "model_cost", "register_scheme", "save_checkpoint", "__version__"]
