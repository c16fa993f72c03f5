"""Malformed benchmark files: one `ValueError` line naming the file, the line and the field (or JSON error),
and a file that yields no problems is refused by name. `cuma eval` shows it as one error line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuma_env import load_problems, load_source

GOOD = {
    "gsm8k_test": ("gsm8k/test.jsonl", {"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}),
    "aime24": ("aime24/test.jsonl", {"id": 60, "problem": "Find x.", "answer": "025"}),
    "math500": ("math/math500_test.jsonl",
                {"problem": "Find y.", "answer": "3", "subject": "Algebra", "level": 2, "unique_id": "test/a/1.json"}),
    "math": ("math/prm800k_train_12k.jsonl",
             {"problem": "Find z.", "answer": "4", "subject": "Algebra", "level": 1, "unique_id": "train/a/1.json"}),
}


def write(root: Path, name: str, lines: list[str]) -> Path:
    path = root / GOOD[name][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def good(name: str) -> str:
    return json.dumps(GOOD[name][1])


def without(name: str, field: str) -> str:
    return json.dumps({k: v for k, v in GOOD[name][1].items() if k != field})


def error(name: str, root: Path) -> str:
    with pytest.raises(ValueError) as info:
        load_problems(name, root)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name, field", [("gsm8k_test", "answer"), ("gsm8k_test", "question"),
                                         ("aime24", "answer"), ("aime24", "problem"),
                                         ("math500", "unique_id"), ("math", "problem")])
def test_a_missing_field_names_path_line_and_field(tmp_path, name, field):
    # line 1 good, line 2 blank (skipped, still counted), line 3 lacks the field
    path = write(tmp_path, name, [good(name), "", without(name, field)])
    assert error(name, tmp_path) == f"{path.resolve()}:3: missing field {field!r}"


@pytest.mark.parametrize("name", ["gsm8k_test", "aime24", "math500"])
def test_a_line_that_is_not_json_names_path_line_and_the_json_error(tmp_path, name):
    path = write(tmp_path, name, [good(name), good(name)[:-5]])
    message = error(name, tmp_path)
    assert message.startswith(f"{path.resolve()}:2: not valid JSON (") and "column" in message, message


@pytest.mark.parametrize("name", ["gsm8k_test", "aime24", "math500", "math"])
@pytest.mark.parametrize("lines", [[], ["", "   "]], ids=["empty", "blank-lines"])
def test_a_file_without_problems_is_refused_by_name(tmp_path, name, lines):
    path = write(tmp_path, name, lines)
    message = error(name, tmp_path)
    assert message == f"{path.resolve()}: no problems in this file: it is empty or holds only blank lines"
    with pytest.raises(ValueError, match="no problems in this file"):
        load_source(name, tmp_path)


def test_a_math_pool_whose_records_all_lack_a_level_is_refused(tmp_path):
    record = dict(GOOD["math"][1], level=None)
    path = write(tmp_path, "math", [json.dumps(record)] * 2)
    assert error("math", tmp_path) == (f"{path.resolve()}: no problems in this file: none of its 2 records "
                                       "has a difficulty level (level null)")


@pytest.mark.parametrize("name, line, why", [
    ("gsm8k_test", '["a", "b"]', "expected a JSON object, got array"),
    ("aime24", '"just text"', "expected a JSON object, got string"),
    ("math", "null", "expected a JSON object, got null"),
    ("gsm8k_test", '{"question": "q", "answer": 7}', "field 'answer' must be a string ending in '#### <answer>'"),
    ("gsm8k_test", '{"question": "q", "answer": "no marker"}', "GSM8K solution without a '#### <answer>' line"),
    ("aime24", '{"problem": "p", "answer": null}', "field 'answer' must be a string or a number, got null"),
    ("math500", json.dumps(dict(GOOD["math500"][1], problem="")), "prompt must be a non-empty string"),
])
def test_a_record_of_the_wrong_shape_names_path_and_line(tmp_path, name, line, why):
    path = write(tmp_path, name, [good(name), line])
    message = error(name, tmp_path)
    assert message.startswith(f"{path.resolve()}:2: ") and why in message, message


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = write(tmp_path, "gsm8k_test", [good("gsm8k_test")])
    path.write_bytes(path.read_bytes() + b'{"question": "\xff", "answer": "#### 1"}\n')
    assert error("gsm8k_test", tmp_path).startswith(f"{path.resolve()}:2: not UTF-8 text")


def test_valid_files_still_load_as_before(tmp_path):
    for name in GOOD:
        write(tmp_path, name, [good(name), "", good(name)])
    gsm = load_problems("gsm8k_test", tmp_path)
    assert [p.id for p in gsm] == ["gsm8k/test/0", "gsm8k/test/1"] and gsm[0].answer == "2"
    assert [p.answer for p in load_problems("aime24", tmp_path)] == ["25", "25"]
    assert load_problems("math", tmp_path)[0].level == 1


def test_cuma_eval_prints_one_error_line_for_a_bad_file(tmp_path, tiny_base_dir):
    data = tmp_path / "data"
    path = write(data, "gsm8k_test", [json.dumps({"question": "q"})])
    env = {**os.environ, "CUMA_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "agents.cli", "eval", "--model", "tiny", "--bench", "gsm8k", "--n", "1",
           "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0] == f"cuma eval: error: {path.resolve()}:1: missing field 'answer'"
    assert not (tmp_path / "out").exists()

    path.write_text("")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == f"cuma eval: error: {path.resolve()}: no problems in this file: it is empty " \
                                  "or holds only blank lines"
