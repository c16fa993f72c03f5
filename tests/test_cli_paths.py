"""Unusable output and cache paths: `cuma base`, `cuma demo` (and, through the cache, eval / calibrate / train)
answer one line `cuma <cmd>: error: ...`, exit 2, no traceback, before any training, sampling or evaluation.
`python -m agents.commands.base|demo` run the command as the other command modules do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_error, cuma

import agents.tiny.cache
import agents.tiny.profile

ROOT = Path(__file__).resolve().parents[1]


def _no_work(*args, **kwargs):
    raise AssertionError("expensive work started before the path check")


@pytest.fixture
def no_work(monkeypatch):
    """Any training of a base, loading of a base or evaluation fails the test: the checks must come first."""
    monkeypatch.setattr(agents.tiny.cache, "_build_into", _no_work)
    monkeypatch.setattr(agents.tiny.cache, "ensure_tiny_base", _no_work)
    monkeypatch.setattr(agents.tiny.profile, "evaluate_base", _no_work)
    monkeypatch.setattr(agents.tiny.profile, "generate_completions", _no_work)


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "file"
    path.write_text("")
    return path


# --- cuma base ---------------------------------------------------------------------------------------

def test_base_out_under_a_file_fails_before_work(capsys, no_work, a_file):
    out = a_file / "nolevel.jsonl"
    assert_error(cuma(capsys, "base", "--n-per-level", "5", "--samples", "2", "--out", out), "base", f"--out {out}")


def test_base_out_whose_profile_is_a_directory(capsys, no_work, tmp_path):
    (tmp_path / "o" / "base_profile.json").mkdir(parents=True)
    assert_error(cuma(capsys, "base", "--out", tmp_path / "o"), "base", "is a directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_base_out_in_proc(capsys, no_work):
    assert_error(cuma(capsys, "base", "--out", "/proc/x"), "base", "--out /proc/x")


def test_base_cache_dir_that_cannot_be_created(capsys, monkeypatch, tmp_path, a_file):
    monkeypatch.setattr(agents.tiny.cache, "_build_into", _no_work)
    monkeypatch.setattr(agents.tiny.profile, "evaluate_base", _no_work)
    out = tmp_path / "o"
    line = assert_error(cuma(capsys, "base", "--cache-dir", a_file / "x", "--out", out), "base",
                        f"--cache-dir {a_file / 'x'}", "cannot create the model cache directory")
    assert "Errno" not in line
    assert not out.exists()  # the --out folder it made for the check is gone again


# --- cuma demo ---------------------------------------------------------------------------------------

def test_demo_out_that_is_a_directory_fails_before_work(capsys, no_work, tmp_path):
    assert_error(cuma(capsys, "demo", "--episodes", "1", "--out", tmp_path), "demo", "is a directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_demo_out_in_proc(capsys, no_work):
    assert_error(cuma(capsys, "demo", "--episodes", "1", "--out", "/proc/x"), "demo", "--out /proc/x")


# --- CUMA_CACHE_DIR that cannot be created: every command that loads the tiny base ------------------

@pytest.mark.parametrize("argv", [
    ["demo", "--episodes", "1"],
    ["eval", "--model", "tiny", "--bench", "arith", "--n", "1", "--samples", "2", "--out", "{tmp}/e"],
    ["calibrate", "--data", "arith", "--per-level", "1", "--n-samples", "2", "--out", "{tmp}/c", "--no-progress"],
    ["train", "--out", "{tmp}/t", "train.steps=1"],
])
def test_a_bad_cache_dir_is_named(capsys, monkeypatch, tmp_path, a_file, argv):
    monkeypatch.setattr(agents.tiny.cache, "_build_into", _no_work)
    monkeypatch.setenv("CUMA_CACHE_DIR", str(a_file / "x"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert_error(cuma(capsys, *argv), argv[0],
                 f"cannot create the model cache directory {a_file / 'x'} ($CUMA_CACHE_DIR)")
    assert not (tmp_path / "t").exists()


def test_ensure_tiny_base_raises_an_oserror_naming_the_cache(a_file):
    with pytest.raises(NotADirectoryError, match="cannot create the model cache directory"):
        agents.tiny.cache.ensure_tiny_base(cache_dir=a_file / "x", progress=False)


# --- python -m agents.commands.base|demo -------------------------------------------------------------

@pytest.mark.parametrize("module, args, part", [
    ("base", ["--samples", "0"], "--samples must be >= 1"),
    ("demo", ["--episodes", "0"], "--episodes must be >= 1"),
])
def test_python_m_runs_the_command(module, args, part):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", f"agents.commands.{module}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"cuma {module}: error: ") and part in proc.stderr, proc.stderr


# --- a usable --out still gets its file ----------------------------------------------------------------

def test_good_out_paths_still_get_written(capsys, tmp_path, tiny_base_dir):
    assert cuma(capsys, "demo", "--episodes", "1", "--group-size", "2", "--out", tmp_path / "d" / "demo.jsonl")[0] == 0
    assert len((tmp_path / "d" / "demo.jsonl").read_text().splitlines()) == 5
    rc, _ = cuma(capsys, "base", "--n-per-level", "1", "--samples", "1", "--no-progress", "--out", tmp_path / "b")
    assert rc == 0
    assert (tmp_path / "b" / "base_profile.json").is_file()
