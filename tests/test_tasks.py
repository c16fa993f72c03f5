"""A task is one module: the built-ins are registered from `cuma_env.tasks`, and a task of your own (one file
with its own JSONL, named by a `module:Attr` path or installed with a `cuma.tasks` entry point) is a
`gym.make`-able env, a `cuma eval --bench`, and one of curation's never-copy sets, with no other file touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest

from cuma_env.plugins import PluginError
from cuma_env.tasks import registry

WORDS = [{"question": f"Ann has {i} apples and buys {i + 1} more. How many now?",
          "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1:,}"} for i in (3, 7, 500, 1200)]


def task_file(folder: Path, module: str, env_id: str, bench: str) -> Path:
    """GSM8K-like data of one's own: a JSONL per split, and the one file that makes it a task."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", WORDS[:2]), ("test", WORDS[2:])):
        (folder / f"{bench}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / f"{module}.py"
    path.write_text(textwrap.dedent(f'''\
        """Word problems of my own in GSM8K's layout: this file is the whole task."""
        from pathlib import Path

        from cuma_env.tasks import Task
        from cuma_env.tasks.gsm8k import gsm8k_dataset

        HERE = Path(__file__).parent
        TASK = Task("{env_id}", "my word problems",
                    {{"train": gsm8k_dataset("{bench}_train", str(HERE / "{bench}_train.jsonl"), "{bench}", "train"),
                     "test": gsm8k_dataset("{bench}_test", str(HERE / "{bench}_test.jsonl"), "{bench}", "test")}},
                    levelled=False, bench="{bench}")
        '''))
    return path


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry, Gymnasium's and sys.modules as they were before the test (its tasks gone)."""
    tasks, datasets = dict(registry.TASKS), dict(registry.DATASETS)
    gym_ids, modules = set(gym.registry), set(sys.modules)
    yield registry
    for table, before in ((registry.TASKS, tasks), (registry.DATASETS, datasets)):
        table.clear()
        table.update(before)
    for env_id in set(gym.registry) - gym_ids:
        gym.registry.pop(env_id)
    for name in {"my_words", "plugin_words"} & (set(sys.modules) - modules):
        sys.modules.pop(name)


def test_the_builtin_tasks_are_one_module_each_in_catalog_order():
    from cuma_env import DATASETS, TASKS
    from cuma_env.tasks import BUILTIN, data_folders, eval_datasets

    assert list(TASKS)[:5] == ["CuMa-Math-v0", "CuMa-GSM8K-v0", "CuMa-Arith-v0", "CuMa-AIME24-v0", "CuMa-AMC23-v0"]
    assert [t.env_id for t in BUILTIN] == list(TASKS)[:5] and all(t.env_id in gym.registry for t in BUILTIN)
    assert set(DATASETS) >= {"math", "math500", "gsm8k_train", "gsm8k_test", "aime24", "amc23"}
    assert data_folders()[:4] == ["math/", "gsm8k/", "aime24/", "amc23/"]
    assert eval_datasets()[:4] == ["math500", "gsm8k_test", "aime24", "amc23"]


def test_the_data_errors_list_the_folders_the_tasks_read(clean_registry, tmp_path, monkeypatch):
    from cuma_env import DataFileNotFoundError, load_problems
    from cuma_env.tasks import Dataset, Task, register
    from cuma_env.tasks.gsm8k import gsm8k_dataset
    from curricula.curation.data import DataFileMissing, resolve_data_dir

    monkeypatch.delenv("CUMA_DATA_DIR", raising=False)
    register(Task("CuMa-Rel-v0", "a relative path", {"test": gsm8k_dataset("rel", "words/test.jsonl", "w", "test")},
                  levelled=False))
    with pytest.raises(DataFileNotFoundError, match=r"math/, gsm8k/, aime24/, amc23/, words/ \(the procedural"):
        load_problems("rel")
    with pytest.raises(DataFileMissing, match="holds math/, gsm8k/, aime24/, amc23/, words/$"):
        resolve_data_dir()
    with pytest.raises(DataFileMissing, match="holds math/, gsm8k/, aime24/, amc23/, words/$"):
        resolve_data_dir(tmp_path / "nowhere")
    missing = Dataset("abs", str(tmp_path / "none.jsonl"), lambda r, i: None)
    with pytest.raises(DataFileNotFoundError, match="none.jsonl .the absolute path of dataset 'abs'"):
        load_problems(missing)


def test_a_task_of_your_own_is_one_file_named_by_its_path(clean_registry, tmp_path, monkeypatch):
    from agents.config import load_config
    from agents.evaluation import bench_names, bench_problems
    from cuma_env import get_task, make_source
    from curricula.curation.data import eval_sets, load_eval_texts

    task_file(tmp_path, "my_words", "CuMa-Words-v0", "words")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "CuMa-Words-v0" not in gym.registry
    task = get_task("my_words:TASK")                                 # registers it, with Gymnasium too
    assert task.env_id == "CuMa-Words-v0" and get_task("my_words:TASK") is task
    env = gym.make("CuMa-Words-v0", split="test", group_size=2)
    prompt, info = env.reset(seed=0)
    assert "apples" in prompt and prompt.endswith("\\boxed{}.") and info["source"] == "words"
    info = env.step([r"\boxed{1001}", r"\boxed{1001}"])[4] if "500" in prompt else \
        env.step([r"\boxed{2401}", r"\boxed{2401}"])[4]
    assert info["majority_correct"] is True and info["rewards"] == [1.0, 1.0]
    assert [p.answer for p in make_source("my_words:TASK", "train").problems()] == ["7", "15"]
    assert "words" in bench_names()
    problems, template = bench_problems("words")
    assert template == "default" and [p.answer for p in problems["all"]] == ["1001", "2401"]
    assert "words_test" in eval_sets()
    assert load_eval_texts(names=["words_test"])["words_test"][0][0] == "words_test:0"
    assert load_config(overrides=["env.id=my_words:TASK"]).env.id == "my_words:TASK"


def test_an_installed_plugin_adds_its_task_through_an_entry_point(clean_registry, tmp_path, monkeypatch,
                                                                   tiny_base_dir):
    """A distribution on sys.path (a real `*.dist-info` with `entry_points.txt`, as pip writes it)."""
    from agents.commands import eval as eval_command
    from cuma_env.tasks import get_task

    site = tmp_path / "site"
    task_file(site, "plugin_words", "CuMa-PluginWords-v0", "pwords")
    info = site / "plugin_words-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-words\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cuma.tasks]\nwords = plugin_words:TASK\n")
    # a fresh process: `import cuma_env` registers the installed task, so gym.make knows its id at once
    code = ("import gymnasium as gym, cuma_env\nenv = gym.make('CuMa-PluginWords-v0', split='test', group_size=2)\n"
            "print(env.reset(seed=0)[1]['source'])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "pwords", run.stderr[-2000:]
    # this process: a name it does not know makes it look at the entry points again
    monkeypatch.syspath_prepend(str(site))
    assert get_task("CuMa-PluginWords-v0").bench == "pwords" and "CuMa-PluginWords-v0" in gym.registry
    out = tmp_path / "eval"
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "pwords", "--samples", "1",
                              "--max-new-tokens", "4", "--out", str(out)]) == 0
    assert json.loads((out / "eval-pwords.json").read_text())["levels"]["all"]["n"] == 2


def test_a_bench_may_be_named_by_a_path_and_eval_files_use_its_name(clean_registry, tmp_path, monkeypatch,
                                                                     tiny_base_dir):
    from agents.commands import eval as eval_command

    task_file(tmp_path, "my_words", "CuMa-Words-v0", "words")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "my_words:TASK", "--n", "1", "--samples",
                              "1", "--max-new-tokens", "4", "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "eval-words.json").is_file()


def test_a_bad_task_is_one_line_naming_the_fix(clean_registry, tmp_path, monkeypatch, capsys):
    from agents.commands import eval as eval_command
    from cuma_env import get_task
    from cuma_env.tasks import Task, register
    from cuma_env.tasks.gsm8k import gsm8k_dataset

    data = gsm8k_dataset("mine", str(tmp_path / "m.jsonl"), "mine", "test")
    cases = [
        (Task("CuMa-Math-v0", "mine", {"test": data}), "env id CuMa-Math-v0 is already registered"),
        (Task("CuMa-Mine-v0", "mine", {"test": data}, bench="gsm8k"), "bench 'gsm8k' is already CuMa-GSM8K-v0's"),
        (Task("CuMa-Mine-v0", "mine", {"dev": data}), "unknown split 'dev'; splits are train, validation, test"),
        (Task("CuMa-Mine-v0", "mine", {"test": "nope"}), "split 'test' names no registered dataset 'nope'"),
        (Task("CuMa:Mine", "mine", {"test": data}), "env_id must be a non-empty name without ':'"),
        (Task("CuMa-Mine-v0", "mine", {"test": gsm8k_dataset("gsm8k_test", "x.jsonl", "m", "test")}),
         "dataset name 'gsm8k_test' is taken"),
        (Task("CuMa-Mine-v0", "mine", {"test": data}, template="no field"), "prompt template must be one of"),
        ("CuMa-Mine-v0", "unknown CuMa environment 'CuMa-Mine-v0'"),
    ]
    for task, message in cases:
        with pytest.raises(ValueError) as info:
            register(task)
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert "CuMa-Mine-v0" not in registry.TASKS and "mine" not in registry.DATASETS
    (tmp_path / "not_a_task.py").write_text("TASK = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="expected a cuma_env.tasks.Task, got int"):
        get_task("not_a_task:TASK")
    with pytest.raises(PluginError, match="cannot import module 'no_such_module'"):
        get_task("no_such_module:TASK")
    assert eval_command.main(["--model", "tiny", "--bench", "nope", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cuma eval: error: unknown bench 'nope'; choose one of math500, gsm8k, arith")
    assert len(err.strip().splitlines()) == 1
