import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP barrier stalls on a busy machine (restored after).
    Modules use it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def restore_threads():
    """torch's thread count before the test (yielded), set again after it."""
    n = torch.get_num_threads()
    yield n
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished epoch of a tiny run (2 steps); tests copy it (tiny_runs.copy_run)."""
    from tiny_runs import TINY

    from sspnet.train import TrainConfig, train

    run = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=2, save=str(run)))
    return run
