"""Interrupted training: one Ctrl-C that reaches a process twice is a graceful stop, a later second one aborts,
and the advice printed after an interrupt works."""

from __future__ import annotations

import signal

import pytest

from sspnet.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_ctrl_c_that_arrives_twice_stops_gracefully_and_a_later_second_one_aborts(monkeypatch):
    """A terminal's Ctrl-C reaches a compare worker directly and again through the driver: the same press."""
    from sspnet.train import loop

    now = {"t": 100.0}
    monkeypatch.setattr(loop.time, "monotonic", lambda: now["t"])
    stop = loop._Stop()
    stop._handle(signal.SIGINT, None)
    now["t"] += 0.5
    stop._handle(signal.SIGINT, None)  # the forwarded copy: still a graceful stop
    assert stop.requested
    now["t"] += 5
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_interrupt_advice_works(tmp_path, capsys, monkeypatch):
    import sspnet.train

    def interrupted(cfg, given=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(sspnet.train, "train", interrupted)
    run = tmp_path / "run"
    assert main(["train", "--save", str(run), "--epochs", "1", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "--resume" not in err and "--force" in err  # no last.pt: nothing to resume
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    assert main(["train", "--save", str(run), "--epochs", "1", "--quiet", "--force"]) == 130
    assert f"sspnet train --resume {run}" in capsys.readouterr().err
