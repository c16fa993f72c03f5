"""`openai-agents` installs a top-level `agents` too: with both installed, `cuma` says so in one line.

A real (if tiny) installed distribution: an `openai_agents-0.1.dist-info` folder (METADATA, top_level.txt,
RECORD) and its `agents/__init__.py` in a folder on the subprocess's path, as pip would leave them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def other_site(tmp_path):
    """A site folder holding the other distribution, installed: its package and its dist-info."""
    site = tmp_path / "site"
    (site / "agents").mkdir(parents=True)
    (site / "agents" / "__init__.py").write_text('WHOSE = "openai-agents"\n')
    info = site / "openai_agents-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: openai-agents\nVersion: 0.1\n")
    (info / "top_level.txt").write_text("agents\n")
    (info / "RECORD").write_text("agents/__init__.py,,\nopenai_agents-0.1.dist-info/METADATA,,\n"
                                 "openai_agents-0.1.dist-info/top_level.txt,,\nopenai_agents-0.1.dist-info/RECORD,,\n")
    return site


def _python(args: list[str], *path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def _is_the_line(text: str, imported: str) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    line = lines[0]
    assert line.startswith("cuma: two installed packages are named `agents`"), line
    assert "cuma-gym" in line and "openai-agents" in line and f"Python imports {imported}" in line, line
    assert "pip uninstall openai-agents" in line and "virtual environment" in line, line


def test_cuma_starts_with_one_line_when_ours_shadows_theirs(other_site, tmp_path):
    done = _python(["-m", "agents.cli", "--help"], REPO, other_site, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    _is_the_line(done.stderr, "cuma-gym's")
    # the other package's users, importing its API from ours, get the same line (not "cannot import name")
    done = _python(["-c", "from agents import Agent"], REPO, other_site, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("ImportError: cuma: two")
    _is_the_line(done.stderr.strip().splitlines()[-1].removeprefix("ImportError: "), "cuma-gym's")


def test_the_check_names_theirs_when_theirs_shadows_ours(other_site, tmp_path):
    check = REPO / "agents" / "name_clash.py"  # runs by file: `import agents` would give theirs
    code = f"import runpy, agents; assert agents.WHOSE == 'openai-agents'; print(runpy.run_path({str(check)!r})" \
           "['clash_message']())"
    done = _python(["-c", code], other_site, REPO, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _is_the_line(done.stdout, "openai-agents'")


def test_cuma_starts_with_one_line_when_theirs_shadows_ours(other_site, tmp_path):
    """Theirs first on the path: an editable (or merged) install still finds our `agents.cli` beside their
    package, so `cuma` itself names the clash. A bare checkout on the path cannot: Python looks for `agents.cli`
    in their folder only."""
    done = _python(["-m", "agents.cli", "--help"], other_site, cwd=tmp_path)
    if "No module named agents.cli" in done.stderr:
        pytest.skip("this install does not map agents.* into the project (not an editable install)")
    assert done.returncode == 1 and done.stdout == ""
    _is_the_line(done.stderr, "openai-agents'")


def test_no_clash_no_line(tmp_path):
    from agents.name_clash import clash_message

    assert clash_message() is None  # this environment has no openai-agents
    done = _python(["-m", "agents.cli", "--help"], REPO, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "" and "usage: cuma" in done.stdout
    import agents

    with pytest.raises(AttributeError):
        agents.Agent  # noqa: B018 - a plain missing attribute without the other package
