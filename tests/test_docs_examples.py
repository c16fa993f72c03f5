"""What the docs quote must run as written.

- Every `cuma train ...` command quoted in README.md, docs/**/*.md and examples/**/*.md (in a fenced block or
  an inline code span) parses with the real `cuma` parser and its preset, config file and overrides load
  with `agents.config.load_config`; a `PYTHONPATH=DIR` just before it (a folder of the repository, e.g. the
  schedule of examples/my_curriculum) is on sys.path while it loads. Nothing trains.
- A docs table with a *change* column (docs/label-free-tiny-world.md) quotes override sets for a template
  command `cuma train ... KEY=VALUE ...` in the same file; each set loads on top of that template.
- README's Python blocks that need no model run on the CPU, and every `expression  # literal` line in them
  evaluates to the literal shown.
- `CuMaEnv`'s docstring (the Gymnasium env's spec, in Gymnasium's sections) runs as doctests.
"""

from __future__ import annotations

import ast
import doctest
import io
import os
import re
import shlex
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.cli import build_parser
from agents.config import ConfigError, load_config, preset_names

REPO = Path(__file__).resolve().parents[1]
PLACEHOLDERS = {"KEY=VALUE", "..."}  # a template's "fill in overrides here"
OPERATORS = set("();<>|&")
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def doc_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "examples").rglob("*.md"))]
    return [f for f in files if f.is_file()]


# --- extracting `cuma train` commands -------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    where: str          # file:line
    tokens: tuple[str, ...]  # everything after `cuma train`, placeholders removed
    template: bool      # it had KEY=VALUE placeholders (a docs table fills them)
    pythonpath: str = ""  # `PYTHONPATH=DIR cuma train ...`: DIR (relative to the repository root)


def split_words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def train_commands(text: str, where: str) -> list[Command]:
    """Each `cuma train ...` in one line of shell text (comments and later commands after `&&`, `;` cut off)."""
    words = split_words(text)
    found = []
    for i in range(len(words) - 1):
        if words[i] == "cuma" and words[i + 1] == "train":
            rest = []
            for word in words[i + 2:]:
                if set(word) <= OPERATORS:
                    break
                rest.append(word)
            env = words[i - 1] if i and words[i - 1].startswith("PYTHONPATH=") else ""
            found.append(Command(where, tuple(w for w in rest if w not in PLACEHOLDERS),
                                 any(w in PLACEHOLDERS for w in rest), env.partition("=")[2]))
    return found


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def extract(path: Path, text: str | None = None) -> list[Command]:
    """Every `cuma train` command quoted in a markdown file, in order."""
    text = path.read_text() if text is None else text
    name = path.relative_to(REPO) if path.is_absolute() and REPO in path.parents else path
    commands: list[Command] = []
    for fence in FENCE.finditer(text):
        if fence.group(1) in ("python", "py", "yaml", "json"):
            continue
        body = fence.group(2).replace("\\\n", " ")  # shell line continuations
        first = line_of(text, fence.start(2))
        for number, line in enumerate(body.splitlines()):
            commands += train_commands(line, f"{name}:{first + number}")
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    for span in INLINE.finditer(prose):
        commands += train_commands(span.group(1).replace("\n", " "), f"{name}:{line_of(prose, span.start())}")
    return commands


def table_cells(line: str) -> list[str]:
    """The cells of a markdown table row (a `|` inside a code span does not split)."""
    cells, cell, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
    return [*cells, cell.strip()]


def change_column_sets(path: Path, text: str | None = None) -> list[tuple[str, list[str]]]:
    """(file:line, words) for each code span in the *change* column of the file's tables."""
    text = path.read_text() if text is None else text
    name = path.relative_to(REPO) if path.is_absolute() and REPO in path.parents else path
    found, column = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("|"):
            column = None
            continue
        cells = table_cells(line)
        if column is None:
            lowered = [c.lower() for c in cells]
            column = lowered.index("change") if "change" in lowered else -1
            continue
        if column < 0 or column >= len(cells) or set(cells[0]) <= set("-: "):
            continue
        for span in INLINE.finditer(cells[column]):
            found.append((f"{name}:{number}", split_words(span.group(1))))
    return found


def load_command(tokens: list[str] | tuple[str, ...], workdir: Path) -> None:
    """Parse `cuma train TOKENS` like the CLI and load its config (relative `env.pool.path` files are
    created empty under `workdir`, the current directory: a config only checks that the file exists; a
    relative `--config` is a file of the repository, as in a clone)."""
    try:
        args = build_parser().parse_args(["train", *tokens])
    except SystemExit as exc:
        if len(tokens) == 1 and tokens[0].startswith("--"):  # prose naming an option: `cuma train --resume`
            build_parser().parse_args(["train", tokens[0], "VALUE"])  # (exits if there is no such option)
            return
        raise AssertionError(f"`cuma train {' '.join(tokens)}` does not parse (exit {exc.code})") from None
    if args.resume is not None or args.list_presets:
        return  # nothing to load: --resume reads a run directory
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key.strip() == "env.pool.path" and value and not Path(value).is_absolute():
            (workdir / value).parent.mkdir(parents=True, exist_ok=True)
            (workdir / value).touch()
    config = args.config if args.config is None or args.config.is_absolute() else REPO / args.config  # a clone's file
    load_config(preset=args.preset, path=config, overrides=args.overrides)


COMMANDS = [c for f in doc_files() for c in extract(f)]


def table_cases() -> list[tuple[str, list[str]]]:
    """Each change-column override set on top of the file's template command."""
    cases = []
    for path in doc_files():
        sets = change_column_sets(path)
        if not sets:
            continue
        templates = [c for c in extract(path) if c.template]
        assert len(templates) == 1, f"{path.name}: a change table needs one `cuma train ... KEY=VALUE` template"
        base = list(templates[0].tokens)
        for where, words in sets:
            if len(words) == 1 and "=" not in words[0]:  # a preset name replaces the template's
                assert "--preset" in base, f"{where}: the template names no --preset to replace"
                at = base.index("--preset")
                cases.append((where, [*base[:at + 1], words[0], *base[at + 2:]]))
            else:
                assert all("=" in w for w in words), f"{where}: `{' '.join(words)}` is neither a preset nor overrides"
                cases.append((where, [*base, *words]))
    return cases


TABLE_CASES = table_cases()


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_train_command_loads(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folders = [REPO / d for d in command.pythonpath.split(os.pathsep) if d]
    for folder in folders:
        monkeypatch.syspath_prepend(str(folder))
    try:
        load_command(command.tokens, tmp_path)
    finally:  # forget the modules imported from there (tests/test_plugins.py writes a `my_sched` of its own)
        for name, module in list(sys.modules.items()):
            if any(folder in Path(getattr(module, "__file__", None) or "/").parents for folder in folders):
                del sys.modules[name]


@pytest.mark.parametrize("where,tokens", TABLE_CASES, ids=[w for w, _ in TABLE_CASES])
def test_documented_change_row_loads(where, tokens, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    load_command(tokens, tmp_path)


def test_extraction_finds_the_documented_commands():
    by_file: dict[str, int] = {}
    for command in COMMANDS:
        file = command.where.rsplit(":", 1)[0]
        by_file[file] = by_file.get(file, 0) + 1
    assert by_file.get("README.md", 0) >= 4
    assert by_file.get("examples/qwen_vllm.md", 0) >= 7
    assert by_file.get("docs/label-free-tiny-world.md", 0) >= 1
    assert len(TABLE_CASES) >= 15
    assert any("curriculum.options={}" in c.tokens for c in COMMANDS)  # quoted words arrive unquoted
    assert sum(c.pythonpath == "examples/my_curriculum" for c in COMMANDS) >= 2  # docs/extending.md's walk-through


def test_a_bad_documented_key_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = tmp_path / "bad.md"
    text = ("Run `cuma train --preset tiny-cuma-gated train.steps=1 KEY=VALUE ...`.\n\n"
            "| run | change |\n|---|---|\n| replay | `lr=3e-5 replay=0.5` |\n| ttrl | `tiny-ttrl` |\n\n"
            "```bash\npip install -e . && cuma train --preset tiny-ttrl schedule=uniform --out x  # comment\n```\n")
    commands = extract(doc, text)
    assert [c.tokens for c in commands] == [("--preset", "tiny-ttrl", "schedule=uniform", "--out", "x"),
                                            ("--preset", "tiny-cuma-gated", "train.steps=1")]
    with pytest.raises(ConfigError, match="ambiguous"):
        load_command(commands[0].tokens, tmp_path)
    assert [w for _, w in change_column_sets(doc, text)] == [["lr=3e-5", "replay=0.5"], ["tiny-ttrl"]]
    with pytest.raises(ConfigError, match="unknown key 'replay'"):
        load_command([*commands[1].tokens, "lr=3e-5", "replay=0.5"], tmp_path)
    assert "tiny-ttrl" in preset_names()


# --- README Python blocks -------------------------------------------------------------------------------
def readme_python_blocks() -> list[tuple[int, str]]:
    text = (REPO / "README.md").read_text()
    return [(line_of(text, m.start(2)), m.group(2)) for m in FENCE.finditer(text) if m.group(1) == "python"]


def needs_a_model(source: str) -> bool:
    return "tokenizer" in source or "model" in re.sub(r"#.*", "", source).replace("my_policy", "")


def literal_comments(source: str) -> dict[int, object]:
    """line -> the Python literal written in that line's trailing comment (lines whose comment is one)."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            try:
                found[tok.start[0]] = ast.literal_eval(tok.string[1:].strip())
            except (ValueError, SyntaxError):
                pass
    return found


def stand_in_policy(prompt: str, n: int = 8) -> list[str]:
    """Stands in for the user's policy (`my_policy` in the README): any n strings; here 6 agree on one
    boxed answer, one gives another answer and one gives none."""
    assert isinstance(prompt, str) and "\\boxed{}" in prompt
    return [r"so \boxed{89}"] * (n - 2) + [r"\boxed{7}", "no idea"]


def test_readme_python_blocks_run_and_show_true_values():
    """The blocks run in order in one namespace (later blocks may use earlier imports, as a reader would)."""
    blocks = [(line, src) for line, src in readme_python_blocks() if not needs_a_model(src)]
    assert len(blocks) >= 3, "the Quick start, Answers and Curricula blocks run without a model"
    namespace: dict[str, object] = {"my_policy": stand_in_policy}
    checked = 0
    for first, source in blocks:
        shown = literal_comments(source)
        for statement in ast.parse(source).body:
            code = compile(ast.Module(body=[statement], type_ignores=[]), f"README.md:{first}", "exec")
            if isinstance(statement, ast.Expr) and statement.end_lineno in shown:
                value = eval(compile(ast.Expression(statement.value), f"README.md:{first}", "eval"), namespace)
                expected = shown[statement.end_lineno]
                assert value == expected, (f"README.md:{first + statement.end_lineno - 1}: "
                                           f"shows {expected!r}, gives {value!r}")
                checked += 1
            else:
                exec(code, namespace)
    assert checked >= 4
    info = namespace["info"]  # the Quick start's step ran with the stand-in policy
    assert len(info["rewards"]) == 8 and info["masked"] is False and info["majority"] == "89"


# --- the Gymnasium env's docstring ----------------------------------------------------------------------
ENV_SECTIONS = ("Description", "Action Space", "Observation Space", "Rewards", "Starting State", "Episode End",
                "Arguments", "Version History")


def test_gym_env_docstring_has_gymnasiums_sections():
    from cuma_env.gym_env import CuMaEnv

    headings = re.findall(r"^\s*## (.+)$", CuMaEnv.__doc__, re.M)
    assert [h for h in headings if h in ENV_SECTIONS] == list(ENV_SECTIONS), headings


def test_gym_env_docstring_examples_run():
    """The `>>>` examples of `CuMaEnv` run with real `gym.make` and show what they print."""
    from cuma_env import gym_env

    tests = [t for t in doctest.DocTestFinder().find(gym_env.CuMaEnv, "CuMaEnv", module=gym_env, globs={})
             if t.examples]
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, out.getvalue()
    assert result.attempted >= 20
