"""The check of a refused command: one stderr line, `sspnet CMD: error: ...`, no traceback."""

from __future__ import annotations


def one_error_line(capsys, *needles: str) -> str:
    """The single stderr line of a refused command, checked for its prefix and `needles`."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("sspnet ") and ": error: " in err, err
    for n in needles:
        assert n in err, (n, err)
    return err
