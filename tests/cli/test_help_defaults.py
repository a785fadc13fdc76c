"""Defaults in every --help: each entry of an option with a default shows it."""

from __future__ import annotations

import argparse
import re

import pytest

from sspnet.cli import build_parser, main

NO_DEFAULT = {("attack", "--load")}  # the positional path under the original's flag name


def _help_entries(text: str) -> dict[str, str]:
    """option string -> its help text, from an argparse --help page."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^  (-[-\w]+)(?:[ ,=].*?)?(?:  +(.*))?$", line)
        if m and line.startswith("  -"):
            current = m.group(1)
            entries[current] = m.group(2) or ""
        elif current and line.startswith("      "):
            entries[current] += " " + line.strip()
        else:
            current = None if not line.strip() or not line.startswith(" ") else current
    return entries


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_help_entry_with_a_default_shows_it(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    entries = _help_entries(capsys.readouterr().out)
    flags = [
        a
        for a in _subparsers()[command]._actions
        if a.option_strings
        and a.help != argparse.SUPPRESS
        and not isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction))
    ]
    assert flags
    for action in flags:
        flag = action.option_strings[-1] if action.option_strings[-1] in entries else action.option_strings[0]
        if (command, flag) in NO_DEFAULT:
            continue
        assert flag in entries, (command, flag)
        assert "default" in entries[flag], f"sspnet {command} {flag}: {entries[flag]!r}"


def test_named_help_entries_show_their_defaults(capsys):
    pages = {}
    for command in ("train", "growth", "models"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        pages[command] = _help_entries(capsys.readouterr().out)
    assert "(default res)" in pages["train"]["--model"]
    assert "g on mnist5k/mnist/fmnist, b on cifar10/tiny" in pages["train"]["--norm-layer"]  # alias --norm
    assert "torch on mnist5k/mnist/fmnist, original on cifar10/tiny" in pages["train"]["--init"]
    assert "(default 100)" in pages["growth"]["--eval-batch-size"]  # alias --batch-size
    assert "--threads" in pages["train"] and "--threads" in pages["models"]
    assert _subparsers()["models"].description
