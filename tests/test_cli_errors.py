"""Every bad input to a `cuma` command: one line `cuma <cmd>: error: ...` on stderr, exit status 2, no traceback,
and nothing left behind. Nothing here trains; only the calibrate default-folder case samples from the tiny base."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import assert_error, cuma

NO_CUDA = "this machine has CUDA"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --- cuma (no command, unknown command) ----------------------------------------------------------

def test_a_missing_or_unknown_command_is_one_line(capsys):
    rc, err = cuma(capsys, "nope")
    assert rc == 2 and err.strip().splitlines() == [err.strip()] and "invalid choice: 'nope'" in err
    assert_error(cuma(capsys, "eval", "--model", "tiny", "--bench", "arith", "--bogus"), "eval",
                 "unrecognized arguments: --bogus")


# --- cuma train ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, parts", [
    (["model.path=/nonexistent/model"], ["model.path: /nonexistent/model does not exist"]),
    (["model.path=runs/typo/model"], ["model.path: runs/typo/model does not exist"]),
    (["model.dtype=fp16"], ["model.dtype: must be one of auto, float32, bfloat16, float16"]),
    (["env.id=CuMa-AIME24-v0"], ["CuMa-AIME24-v0 is evaluation only", "CuMa-Arith-v0"]),
    (["env.id=CuMa-GSM8K-v0", "env.levels=[1]"], ["env.levels: CuMa-GSM8K-v0 has no difficulty levels"]),
    (["env.id=CuMa-Math-v0", "env.data_dir=/nonexistent/data"], ["data file not found: /nonexistent/data/math/"]),
    (["model.device=gpu"], ["model.device: must be auto, cpu, cuda or cuda:N"]),
])
def test_train_bad_settings_leave_no_run_directory(capsys, tmp_path, overrides, parts):
    out = tmp_path / "runs" / "x"
    assert_error(cuma(capsys, "train", "--out", out, "train.steps=1", *overrides), "train", *parts)
    assert not (tmp_path / "runs").exists()  # the parent this invocation created is gone too


@pytest.mark.skipif(cuda_available(), reason=NO_CUDA)
@pytest.mark.parametrize("overrides, parts", [(["model.device=cuda"], ["CUDA is not available"]),
                                              (["model.backend=vllm"], ["backend vllm needs a CUDA GPU"])])
def test_train_device_and_backend_this_machine_lacks(capsys, tmp_path, overrides, parts):
    out = tmp_path / "run"
    assert_error(cuma(capsys, "train", "--out", out, *overrides), "train", *parts)
    assert not out.exists()


@pytest.mark.skipif(cuda_available(), reason=NO_CUDA)
def test_a_failed_start_in_an_existing_folder_removes_only_what_it_wrote(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert_error(cuma(capsys, "train", "--out", out, "model.device=cuda"), "train", "CUDA")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "config.yaml").write_text("name: mine\n")  # a config.yaml that was there before is restored
    assert_error(cuma(capsys, "train", "--out", out, "model.device=cuda"), "train", "CUDA")
    assert (out / "config.yaml").read_text() == "name: mine\n"


def test_train_out_that_is_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert_error(cuma(capsys, "train", "--out", tmp_path / "file"), "train", "cannot write the run directory")
    assert (tmp_path / "file").read_text() == ""


def test_train_overrides_may_follow_options(capsys, tmp_path):
    assert_error(cuma(capsys, "train", "train.steps=1", "--out", tmp_path / "r", "train.nope=1"), "train",
                 "unknown key 'train.nope'")
    assert not (tmp_path / "r").exists()


def test_resume_without_a_checkpoint_leaves_config_yaml_alone(capsys, tmp_path):
    from agents.config import load_config, save_config

    save_config(load_config(), tmp_path / "config.yaml")
    before = (tmp_path / "config.yaml").read_bytes()
    assert_error(cuma(capsys, "train", "--resume", tmp_path, "train.steps=7"), "train", "has no checkpoint")
    assert (tmp_path / "config.yaml").read_bytes() == before


# --- model sources (M8) ----------------------------------------------------------------------------

def test_only_owner_name_is_a_hub_id_and_a_missing_path_never_reaches_the_hub(tmp_path, monkeypatch):
    from agents.config import is_hub_id
    from agents.policy import load_model

    assert is_hub_id("Qwen/Qwen2.5-0.5B") and is_hub_id("org-x/model.v1_2")
    for path in ("/abs/missing", "runs/typo/model", "./a/b", "~/model", ".hidden/x", "nosuch", "a/b/"):
        assert not is_hub_id(path), path
    (tmp_path / "owner").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("owner")
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("a missing local path was handed to from_pretrained")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_hub)
    for path in ("/abs/missing", "runs/typo/model", "nosuch"):
        with pytest.raises(FileNotFoundError, match=f"model path {path} does not exist"):
            load_model(path, device=None)
    with pytest.raises(FileNotFoundError, match="is not a model directory"):
        load_model(str(tmp_path), device=None)


# --- cuma eval -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, parts", [
    (["--model", "nosuch"], ["model path nosuch does not exist"]),
    (["--model", "/abs/missing/model"], ["model path /abs/missing/model does not exist"]),
    (["--dtype", "fp16"], ["argument --dtype: invalid choice: 'fp16'"]),
    (["--samples", "-1"], ["--samples must be >= 0 (0: greedy only)"]),
    (["--n", "0"], ["--n must be >= 1"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens must be >= 1"]),
    (["--temperature", "0"], ["--temperature must be > 0"]),
    (["--top-p", "1.5"], ["--top-p must be in (0, 1]"]),
    (["--levels", "9"], ["levels must be integers 1-5"]),
    (["--levels", "x"], ["levels must be integers 1-5"]),
    (["--bench", "gsm8k", "--levels", "1"], ["bench gsm8k has no difficulty levels"]),
    (["--device", "gpu"], ["device must be auto, cpu, cuda or cuda:N"]),
    (["--model", "{tmp}"], ["is not a model directory"]),
])
def test_eval_bad_inputs(capsys, tmp_path, args, parts):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    model = [] if "--model" in args else ["--model", "nosuch"]  # the model loads last: every other check fails first
    bench = [] if "--bench" in args else ["--bench", "arith"]
    assert_error(cuma(capsys, "eval", *model, *bench, *args, "--out", tmp_path / "e"), "eval", *parts)
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(cuda_available(), reason=NO_CUDA)
def test_eval_device_and_backend_this_machine_lacks(capsys, tmp_path):
    for flags, part in ((["--device", "cuda"], "CUDA is not available"),
                        (["--backend", "vllm"], "backend vllm needs a CUDA GPU")):
        assert_error(cuma(capsys, "eval", "--model", "nosuch", "--bench", "arith", *flags), "eval", part)


# --- cuma calibrate --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, parts", [
    (["--dtype", "fp16"], ["argument --dtype: invalid choice: 'fp16'"]),
    (["--min-votes", "9"], ["--min-votes 9 is more than --n-samples 8"]),
    (["--min-votes", "1.5"], ["--min-votes must be a count"]),
    (["--min-votes", "0"], ["--min-votes must be a count"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens must be >= 1"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["--n-samples", "1"], ["--n-samples must be >= 2"]),
    (["--model", "/abs/missing/model"], ["model path /abs/missing/model does not exist"]),
    (["--device", "gpu"], ["device must be auto, cpu, cuda or cuda:N"]),
])
def test_calibrate_bad_inputs(capsys, tmp_path, monkeypatch, args, parts):
    monkeypatch.chdir(tmp_path)
    assert_error(cuma(capsys, "calibrate", "--data", "arith", *args), "calibrate", *parts)
    assert list(tmp_path.iterdir()) == []  # not even the default output folder


def test_calibrate_writes_to_a_default_folder_under_runs(capsys, tmp_path, monkeypatch, tiny_base_dir):
    monkeypatch.chdir(tmp_path)
    rc, _ = cuma(capsys, "calibrate", "--data", "arith", "--model", tiny_base_dir, "--per-level", "1",
                 "--n-samples", "2", "--no-progress")
    assert rc == 0
    [folder] = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("calibrate-") and (folder / "calibration.json").is_file()


# --- cuma demo, cuma base --------------------------------------------------------------------------

@pytest.mark.parametrize("args, parts", [
    (["--group-size", "0"], ["--group-size >= 2"]),
    (["--episodes", "0"], ["--episodes must be >= 1"]),
    (["--temperature", "0"], ["--temperature must be > 0"]),
    (["--min-votes", "0"], ["--min-votes must be a count"]),
    (["--min-votes", "1.5"], ["--min-votes must be a count"]),
    (["--min-votes", "9"], ["--min-votes 9 is more than --group-size 8"]),
])
def test_demo_bad_inputs(capsys, args, parts):
    assert_error(cuma(capsys, "demo", *args), "demo", *parts)


def test_demo_unwritable_out(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert_error(cuma(capsys, "demo", "--out", tmp_path / "file" / "sub" / "x.jsonl"), "demo", "--out")


@pytest.mark.parametrize("args, parts", [
    (["--samples", "0"], ["--samples must be >= 1"]),
    (["--steps", "0"], ["steps must be a positive int"]),
    (["--reasoning-share", "1.5"], ["reasoning_share must be in [0, 1]"]),
    (["--unanswered-share", "0,0"], ["unanswered_share must be 5 shares in [0, 1]"]),
    (["--unanswered-share", "0,x"], ["--unanswered-share", "comma-separated numbers"]),
])
def test_base_errors_go_to_stderr_with_the_prefix(capsys, args, parts):
    assert_error(cuma(capsys, "base", *args), "base", *parts)


# --- cuma curate -----------------------------------------------------------------------------------

def test_curate_unwritable_folders(capsys, tmp_path, data_dir):
    fixtures = Path(__file__).parent / "fixtures" / "curation"
    (tmp_path / "file").write_text("")
    common = ["--generator", f"replay:{fixtures}", "--calls", "1", "--no-progress", "--data-dir", data_dir]
    assert_error(cuma(capsys, "curate", *common, "--out", tmp_path / "c.jsonl", "--save-raw", tmp_path / "file" / "x"),
                 "curate", "--save-raw", "cannot create")
    assert_error(cuma(capsys, "curate", *common, "--out", tmp_path / "file" / "c.jsonl"), "curate", "--out")
    assert_error(cuma(capsys, "curate", *common, "--out", tmp_path), "curate", "is a directory")
    assert_error(cuma(capsys, "curate", "--generator", "ftp:nowhere", "--out", tmp_path / "c.jsonl"), "curate",
                 "openai:URL")
    assert not (tmp_path / "c.jsonl").exists()


# --- cuma reproduce --------------------------------------------------------------------------------

def test_reproduce_overrides_after_methods_are_overrides(capsys, tmp_path):
    assert_error(cuma(capsys, "reproduce", "--methods", "ttrl", "eval.n_per_levl=50", "--out", tmp_path / "r"),
                 "reproduce", "unknown key 'eval.n_per_levl'")
    assert_error(cuma(capsys, "reproduce", "--methods", "ttrl,nope", "--out", tmp_path / "r"), "reproduce",
                 "unknown method(s) nope")
    (tmp_path / "file").write_text("")
    assert_error(cuma(capsys, "reproduce", "--out", tmp_path / "file"), "reproduce", "is a file")
    assert not (tmp_path / "r").exists()


def test_reproduce_refuses_to_replace_an_arm_run_with_another_config(capsys, tmp_path):
    from agents.config import save_config
    from agents.experiments.reproduce import different_runs, method_config, quick_budget

    arm = tmp_path / "out" / "runs" / "ttrl-s0"
    arm.mkdir(parents=True)
    save_config(method_config("ttrl", 0, quick_budget(5)), arm / "config.yaml")  # an earlier --steps 5 run
    (arm / "metrics.csv").write_text("step\n1\n")
    line = assert_error(cuma(capsys, "reproduce", "--quick", "--steps", "3", "--methods", "ttrl", "--out",
                             tmp_path / "out"), "reproduce", str(arm), "different configuration", "--force")
    assert "another --out" in line
    assert sorted(p.name for p in arm.iterdir()) == ["config.yaml", "metrics.csv"]  # untouched
    assert different_runs(tmp_path / "out" / "runs", ["ttrl"], [0], quick_budget(5)) == []  # same budget: reused


@pytest.mark.skipif(cuda_available(), reason=NO_CUDA)
def test_reproduce_checks_the_device_before_any_arm(capsys, tmp_path):
    assert_error(cuma(capsys, "reproduce", "--quick", "--out", tmp_path / "r", "model.device=cuda"), "reproduce",
                 "CUDA is not available")
    assert not (tmp_path / "r").exists()

