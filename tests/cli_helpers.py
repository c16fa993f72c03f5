"""Helpers for tests of the `cuma` CLI's error contract: one line `cuma <cmd>: error: ...`, exit 2, no traceback."""

from __future__ import annotations

from agents.cli import main


def cuma(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of `cuma ARGV` run in this process."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's errors
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_error(result: tuple[int, str], command: str, *parts: str) -> str:
    """The one error line of `result`, after checking the contract and that it names every one of `parts`."""
    rc, err = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"cuma {command}: error: "), lines[0]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]
