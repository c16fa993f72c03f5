"""The README opens with the two commands users and CI run; keep them, the CLI and the paths it names true."""

import glob
import re
from pathlib import Path

from agents.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]


def top_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index("```bash") < text.index("\n\n", text.index("# ")) + 5, "commands come first"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_install_and_test_commands():
    main, tests = top_commands()
    assert main.startswith('pip install -e ".[agent]" && cuma ')  # the core has no torch: cuma needs the agent extra
    assert tests.startswith('pip install -e ".[test]" && ') and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "grep -m1 '^pip install -e \"\\.\\[test\\]\"' README.md" in ci and 'eval "$test_command"' in ci


def test_main_command_is_a_cuma_subcommand():
    main = top_commands()[0]
    sub = main.split("cuma ", 1)[1].split()[0]
    parser = build_parser()
    assert sub in COMMANDS
    assert parser.parse_args(main.split("cuma ", 1)[1].split()).command == sub


PATH_SPAN = re.compile(r"`((?:docs|agents|cuma_env|curricula|examples|tests|benchmarks|\.ci)/[^`\s]*)`")


def named_paths(text: str) -> list[str]:
    """Repository paths quoted in code spans; `a-{x,y}.md` names both files, `*` is a glob."""
    found = []
    for span in PATH_SPAN.findall(text):
        brace = re.search(r"\{([^}]*)\}", span)
        alternatives = brace.group(1).split(",") if brace else [""]
        found += [span[:brace.start()] + alt + span[brace.end():] if brace else span for alt in alternatives]
    return found


def test_paths_named_in_readme_and_docs_exist():
    """A module that moves must take its mentions along (README, docs/ and docs/results/)."""
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    named = {(f.relative_to(REPO).as_posix(), p) for f in files for p in named_paths(f.read_text())}
    assert len(named) >= 20
    missing = sorted((where, p) for where, p in named if not glob.glob(str(REPO / p)))
    assert not missing, missing


CLAIM_ROW = re.compile(r"^\| (H\d+|S\d+) .*\| ([+-]\d\.\d{3}) \[([+-]\d\.\d{3}), ([+-]\d\.\d{3})\] \| (\w+) \|$", re.M)
STUDIES = {"H": "docs/results/study/study.json", "S": "docs/results/smollm2/study.json"}


def test_the_readme_claims_are_the_committed_studies_numbers():
    """Each row of the README's claims tables (H1-H6: the tiny study; S1-S3: SmolLM2) is its study.json's
    hypothesis: estimate, interval and verdict as committed, rounded to three decimals."""
    import json

    rows = CLAIM_ROW.findall((REPO / "README.md").read_text())
    assert len(rows) >= 6, "the claims tables were not found"
    for hypothesis, estimate, low, high, verdict in rows:
        study = json.loads((REPO / STUDIES[hypothesis[0]]).read_text())
        (h,) = [h for h in study["analysis"]["hypotheses"] if h["hypothesis"] == hypothesis]
        ci = h["interval"]
        assert [f"{ci[k]:+.3f}" for k in ("estimate", "low", "high")] == [estimate, low, high], hypothesis
        assert h["verdict"] == verdict, hypothesis
