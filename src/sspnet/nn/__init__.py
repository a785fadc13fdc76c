"""The networks: RK schemes as data, the generic RK block, the block registry, the SSP architectures (one table:
`architectures`), checkpoints (own and original format) and the inference copy that attacks use.

Imports `sspnet.data.specs` (architectures follow the dataset) and `sspnet.io`; nothing from train, eval,
experiments or cli.
"""

from sspnet.nn import registry
from sspnet.nn.architectures import Architecture, get_architecture
from sspnet.nn.checkpoints import describe_checkpoint, load_model, save_checkpoint
from sspnet.nn.models import SSPNet, create_model, inference_copy, list_models, model_cost
from sspnet.nn.schemes import Scheme, get_scheme, list_schemes, register_scheme

__all__ = [
    "registry",
    "Architecture",
    "SSPNet",
    "Scheme",
    "create_model",
    "describe_checkpoint",
    "get_architecture",
    "get_scheme",
    "inference_copy",
    "list_models",
    "list_schemes",
    "load_model",
    "model_cost",
    "register_scheme",
    "save_checkpoint",
]
