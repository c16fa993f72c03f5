"""Label-free difficulty calibration: bands, group assessment, summaries, and `cuma calibrate` with the tiny base."""

from __future__ import annotations

import argparse
import json

import pytest

from curricula.calibration import (
    ADDED_FIELDS,
    DEFAULT_BANDS,
    Bands,
    arith_records,
    assess_group,
    auc,
    calibrate,
    format_report,
    plot_report,
    record_level,
    select_per_level,
    summarize,
)


def boxed(*answers: str) -> list[str]:
    return [f"\\boxed{{{a}}}" for a in answers]


# --- bands and one group -------------------------------------------------------------------------------
def test_default_bands_map_agreement_of_eight_samples():
    bands = Bands()
    assert bands.thresholds == DEFAULT_BANDS
    assert [bands.level(k / 8) for k in range(9)] == [5, 5, 5, 4, 3, 2, 2, 1, 1]
    assert bands.level(1.0, masked=True) == 5
    assert Bands.parse("0.9, 0.7,0.5,0.2").thresholds == (0.9, 0.7, 0.5, 0.2)


@pytest.mark.parametrize("bad", [(0.9, 0.7, 0.5), (0.5, 0.7, 0.3, 0.2), (1.2, 0.7, 0.5, 0.2), (0.9, 0.7, 0.5, 0.0)])
def test_bad_bands_are_errors(bad):
    with pytest.raises(ValueError, match="strictly decreasing"):
        Bands(bad)
    with pytest.raises(ValueError, match="--bands"):
        Bands.parse("0.9,x")


def test_assess_group_uses_the_vote_and_reads_the_answer_only_for_diagnostics():
    group = boxed("7", "7", "7", "7", "7", "7", "8", "9")
    out = assess_group(group, "7")
    assert out == {"measured_level": 2, "agreement": 0.75, "masked": False, "majority": "7", "n_samples": 8,
                   "majority_correct": True, "sample_accuracy": 0.75}
    no_answer = assess_group(group)
    assert "majority_correct" not in no_answer and no_answer["measured_level"] == 2
    masked = assess_group(boxed("1", "2", "3", "4") + ["no idea", "", "?", "5"], "1")
    assert masked["masked"] and masked["measured_level"] == 5 and masked["agreement"] == 0.125
    wrong = assess_group(boxed("3", "3", "3", "3", "3", "3", "3", "3"), "4")
    assert wrong["measured_level"] == 1 and not wrong["majority_correct"]  # agreement is not correctness
    assert assess_group(boxed("1/2", "0.5", "2", "1/2"), "\\frac{1}{2}")["agreement"] == 0.75  # equivalent cluster


def test_auc():
    assert auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auc([0.1, 0.2], [True, True]) is None


def test_records_selection_and_levels():
    assert record_level({"level": 3}) == 3 and record_level({"level": "Level 4"}) == 4
    assert record_level({"level": None}) is None and record_level({}) is None and record_level({"level": "?"}) is None
    records = [{"problem": f"p{i}", "level": 1 + i % 2} for i in range(10)]
    assert [r["problem"] for r in select_per_level(records, 2)] == ["p0", "p1", "p2", "p3"]
    arith = arith_records(3, levels=(1, 5))
    assert [r["level"] for r in arith] == [1, 1, 1, 5, 5, 5] and all(r["answer"] for r in arith)


def fake_generate(script: dict[str, list[str]]):
    def generate(prompts, n):
        return [script[p.split("?")[0].removeprefix("What is ")][:n] for p in prompts]
    return generate


def test_calibrate_keeps_records_and_summarizes(tmp_path):
    records = [{"id": "a", "problem": "What is 1 + 1?", "level": 1, "answer": "2", "extra": "kept"},
               {"id": "b", "problem": "What is 5 + 5?", "level": 2, "answer": "10"},
               {"id": "c", "problem": "What is 9 - 1?", "level": 2}]
    script = {"1 + 1": boxed(*"22222222"), "5 + 5": boxed("10", "10", "10", "10", "11", "12", "13", "14"),
              "9 - 1": boxed(*"12345678")}
    out = calibrate(records, fake_generate(script), template="compact", n_samples=8, chunk=2)
    assert [r["id"] for r in out] == ["a", "b", "c"] and out[0]["extra"] == "kept"
    assert [r["measured_level"] for r in out] == [1, 3, 5]
    assert set(ADDED_FIELDS) <= set(out[0]) and "majority_correct" not in out[2]
    summary = summarize(out)
    assert summary["confusion"]["1"]["1"] == 1 and summary["confusion"]["2"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}
    assert summary["requested"]["2"]["agreement"] == pytest.approx((0.5 + 0.125) / 2)
    assert summary["order"]["agreement_strictly_decreasing"]
    assert summary["correctness"]["n"] == 2 and summary["correctness"]["auc"] is None  # both majorities right
    table = format_report(summary)
    assert "| 1 | 1 | 1.000" in table and "majority acc" in table
    png = plot_report(summary, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="n_samples"):
        calibrate(records, fake_generate(script), n_samples=1)


# --- the command, for real, with the tiny base -----------------------------------------------------------
def run_command(argv: list[str]) -> int:
    from agents.commands import calibrate as command

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    command.add_parser(sub)
    return command.run(parser.parse_args(["calibrate", *argv]))


@pytest.fixture(scope="module")
def arith_run(tiny_base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrate-arith")
    rc = run_command(["--model", str(tiny_base_dir), "--data", "arith", "--per-level", "150", "--out", str(out),
                      "--no-progress"])
    assert rc == 0
    return out


def test_tiny_base_orders_the_procedural_levels(arith_run):
    """The calibration check: measured difficulty orders levels 1-5 (measured on the weak base: mean
    agreement 0.89 / 0.56 / 0.41 / 0.31 / 0.27, measured level 1.2 / 2.8 / 3.7 / 4.4 / 4.7)."""
    summary = json.loads((arith_run / "calibration.json").read_text())
    rows = [summary["requested"][str(lv)] for lv in range(1, 6)]
    agreement = [r["agreement"] for r in rows]
    measured = [r["measured_mean"] for r in rows]
    assert all(a > b for a, b in zip(agreement, agreement[1:])), agreement
    assert all(a <= b for a, b in zip(measured, measured[1:])), measured
    assert agreement[0] - agreement[-1] > 0.3 and measured[-1] - measured[0] > 2
    assert summary["order"]["agreement_strictly_decreasing"] and summary["order"]["spearman_requested_measured"] > 0.5
    correctness = summary["correctness"]
    assert correctness["auc"] > 0.75  # agreement predicts a correct majority
    by_size = correctness["by_cluster_size"]
    assert by_size["8"]["majority_acc"] > by_size["2"]["majority_acc"]
    assert summary["meta"]["template"] == "compact" and summary["meta"]["arith_split"] == "train"


def test_command_writes_jsonl_png_and_table(arith_run):
    lines = (arith_run / "calibrated.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 63 + 4 * 150  # level 1 has 63 train problems
    assert all(set(ADDED_FIELDS) <= set(r) for r in records)
    assert {r["measured_level"] for r in records} <= {1, 2, 3, 4, 5} and all(r["n_samples"] == 8 for r in records)
    assert records[0]["level"] == 1 and records[0]["source"] == "arith"
    assert (arith_run / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    table = (arith_run / "calibration.md").read_text()
    assert "| requested level |" in table and "ROC AUC" in table

    from curricula.mixing import measured_source  # the output feeds the curriculum by measured level

    source = measured_source(arith_run / "calibrated.jsonl")
    assert sum(source.size(lv) for lv in source.levels) == len(records)


def test_command_on_a_jsonl_file(tiny_base_dir, tmp_path):
    records = arith_records(4, levels=(1, 4), seed=1)
    for r in records[::2]:
        r.pop("answer")  # answers are optional
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    rc = run_command(["--model", str(tiny_base_dir), "--data", str(data), "--per-level", "3", "--out", str(out),
                      "--prompt-template", "compact", "--n-samples", "4", "--no-progress"])
    assert rc == 0
    got = [json.loads(line) for line in (out / "calibrated.jsonl").read_text().splitlines()]
    assert [r["id"] for r in got] == [r["id"] for r in records[:3] + records[4:7]]
    assert ["majority_correct" in r for r in got] == [False, True, False, False, True, False]
    assert json.loads((out / "calibration.json").read_text())["correctness"]["n"] == 2


def test_command_errors(tmp_path, capsys):
    assert run_command(["--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert run_command(["--data", "arith", "--n-samples", "1", "--out", str(tmp_path)]) == 2
    assert run_command(["--data", "arith", "--bands", "0.1,0.2,0.3,0.4", "--out", str(tmp_path)]) == 2
