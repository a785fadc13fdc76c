"""Training: the config, optimizers and schedules, the run folder, the loop (standard or adversarial), exact
resume and DDP under torchrun.

    from sspnet.train import TrainConfig, train
    result = train(TrainConfig(dataset="mnist5k", model="ssp2", epochs=2, save="runs/demo"))

Modules: config (TrainConfig; eps / alpha in pixel units), optim (optimizers, lr schedules), meter (named metric
sums), state (TrainState, last.pt), folder (RunFolder: every file of a run; `load_state` and `recorded_data_root`
read them), step (train_step, Adversary, evaluate_clean), setup (building a run: validation split, model, DDP),
syncbn (global-batch BatchNorm under DDP), loop (train), sources (config.json's record of where each option
came from: `option_sources`).
Imports nn, data, attacks, io and `sspnet.distributed`; never eval, experiments or cli.
"""

from sspnet.train.config import ADVERSARIES, IDENTITY_FIELDS, SELECT_ON, TrainConfig
from sspnet.train.folder import load_state, recorded_data_root
from sspnet.train.loop import NonFiniteLossError, TrainResult, step_generator, train
from sspnet.train.options import ALIASES
from sspnet.train.run_config import read_run_config, read_run_meta, resume_options
from sspnet.train.sources import option_sources

__all__ = [
    "ADVERSARIES",
    "ALIASES",
    "IDENTITY_FIELDS",
    "NonFiniteLossError",
    "SELECT_ON",
    "TrainConfig",
    "TrainResult",
    "load_state",
    "option_sources",
    "read_run_config",
    "read_run_meta",
    "recorded_data_root",
    "resume_options",
    "step_generator",
    "train",
]
