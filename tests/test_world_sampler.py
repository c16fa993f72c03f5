"""Worlds drawn from a declared distribution (`cuma study --worlds sampled:N`): the draws, the `sampled:N` spec,
the replacement rule, the written world file, and the rule's measurement on the published base (no new base is
built: every draw of the end-to-end distribution is the default config, installed from its weights)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from agents.experiments.world_rule import ReplacementRule, check_file
from agents.experiments.world_sampler import (
    SHIPPED_DISTRIBUTION,
    Sampled,
    describe_record,
    draw_world,
    load_distribution,
    parse_worlds_arg,
    select_worlds,
    write_world_file,
)
from agents.experiments.worlds import WorldError, load_world_file
from agents.tiny.config import TinyBaseConfig


def _write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _shipped_data():
    return yaml.safe_load(SHIPPED_DISTRIBUTION.read_text())


def test_draws_are_a_pure_function_of_the_file_and_the_index_and_stay_in_the_declared_ranges(tmp_path):
    dist = load_distribution()
    assert dist.source == "agents/experiments/study_worlds/distribution.yaml" and dist.rule.split == "validation"
    worlds = [draw_world(dist, i) for i in range(1, 201)]
    again = load_distribution(SHIPPED_DISTRIBUTION)
    assert [w.base for w in worlds] == [draw_world(again, i).base for i in range(1, 201)]
    assert [w.name for w in worlds[:3]] == ["draw01", "draw02", "draw03"] and worlds[-1].name == "draw200"
    assert all(w.role == "held_out" and w.seeds == dist.seeds and w.drawn["index"] == i
               and w.drawn["sha256"] == dist.sha256 and f"draw {i} of" in w.description
               for i, w in enumerate(worlds, 1))
    assert len({w.base_config().key() for w in worlds}) == len(worlds)      # every draw is another base
    fields = dist.fields
    for name in ("seed", "steps"):
        lo, hi = fields[name]["integer"]
        values = [w.base[name] for w in worlds]
        assert lo <= min(values) and max(values) <= hi and all((v - lo) % fields[name].get("step", 1) == 0
                                                                for v in values)
    lo, hi = fields["reasoning_share"]["uniform"]
    shares = [w.base["reasoning_share"] for w in worlds]
    assert lo <= min(shares) and max(shares) <= hi and max(shares) - min(shares) > 0.8 * (hi - lo)  # spread out
    for level, spec in enumerate(fields["unanswered_share"]["per_level"]):
        lo, hi = spec["uniform"]
        assert all(lo <= w.base["unanswered_share"][level] <= hi for w in worlds)
    options = fields["architecture"]["choice"]
    picked = [{k: w.base[k] for k in options[0]} for w in worlds]
    assert all(p in options for p in picked) and all(o in picked for o in options)
    # the default architecture is weighted 2 of 5: drawn clearly more often than each of the others
    assert picked.count(options[0]) > max(picked.count(o) for o in options[1:])

    # the same file elsewhere draws the same worlds; fields in another order, or one dropped, leave the others'
    # values alone (each field reads its own number); another draw seed draws other worlds
    data = _shipped_data()
    moved = _write(tmp_path / "same.yaml", data)
    assert [draw_world(load_distribution(moved), i).base for i in (1, 2)] == [w.base for w in worlds[:2]]
    reordered = dict(data, fields={k: data["fields"][k] for k in reversed(list(data["fields"])) if k != "steps"})
    other = load_distribution(_write(tmp_path / "reordered.yaml", reordered))
    assert other.sha256 != dist.sha256
    assert all({k: v for k, v in w.base.items() if k != "steps"} == draw_world(other, i).base
               for i, w in enumerate(worlds[:20], 1))
    reseeded = load_distribution(_write(tmp_path / "reseeded.yaml", dict(data, draw_seed=data["draw_seed"] + 1)))
    assert draw_world(reseeded, 1).base["seed"] != worlds[0].base["seed"]


def test_the_worlds_spec_is_a_file_or_sampled_n_and_a_bad_one_is_one_line(tmp_path, capsys):
    from agents.commands.study import main

    assert parse_worlds_arg(None) is None and parse_worlds_arg("w.yaml").name == "w.yaml"
    sampled = parse_worlds_arg("sampled:3")
    assert isinstance(sampled, Sampled) and sampled.n == 3 and sampled.distribution.source.endswith("distribution.yaml")
    mine = _write(tmp_path / "mine.yaml", dict(_shipped_data(), draw_seed=5))
    assert parse_worlds_arg(f"sampled:2:{mine}").distribution.draw_seed == 5
    for spec, message in [("sampled:0", "needs N >= 1 worlds to draw, got 0"),
                          ("sampled:x", "needs a whole number N of worlds to draw, got 'x'"),
                          (f"sampled:2:{tmp_path / 'missing.yaml'}", "cannot read the distribution file")]:
        assert main(["--worlds", spec, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("cuma study: error:")
    assert main(["--write-worlds", str(tmp_path / "w.yaml"), "--dry-run"]) == 2       # a world file is no draw
    assert "writes the worlds drawn by --worlds sampled:N" in capsys.readouterr().err
    assert not (tmp_path / "w.yaml").exists()


@pytest.mark.parametrize("change,message", [
    (lambda d: d["fields"].update(reasoning_shares={"uniform": [0.3, 0.6]}), "did you mean 'reasoning_share'"),
    (lambda d: d["fields"].update(reasoning_share={"uniform": [0.6, 0.3]}), "uniform needs [lo, hi] with lo <= hi"),
    (lambda d: d["fields"].update(reasoning_share={"uniform": [0.5, 1.5]}), "reasoning_share must be in [0, 1]"),
    (lambda d: d["fields"].update(steps={"integer": [500, 700], "stepp": 10}), "did you mean 'step'"),
    (lambda d: d["fields"].update(hidden_size={"choice": [64]}), "drawn by both"),
    (lambda d: d["fields"].update(seed={"choice": [1, 2], "weights": [1]}), "weights (if given) one >= 0 per"),
    (lambda d: d["replace"].update(split="test"), "replace.split must be validation"),
    (lambda d: d["replace"].update(too_weak_below=0.95), "too_weak_below < too_strong_above"),
    (lambda d: d.update(draw_seed=None), "draw_seed must be a fixed"),
    (lambda d: d.pop("replace"), "declare the replacement rule"),
])
def test_a_bad_distribution_file_is_one_line_naming_the_fix(tmp_path, change, message):
    data = _shipped_data()
    change(data)
    with pytest.raises(WorldError) as info:
        load_distribution(_write(tmp_path / "d.yaml", data))
    assert message in str(info.value) and "\n" not in str(info.value)


def _measured(l1, l2, l3):
    return {"split": "validation", "n": {"1": 11, "2": 80, "3": 400, "4": 400, "5": 400},
            "greedy": {"1": l1, "2": l2, "3": l3, "4": 0.01, "5": 0.0}, "weights_sha256": "ab" * 32}


def test_the_rule_replaces_weak_and_strong_bases_by_the_next_draws_and_lists_them():
    rule = load_distribution().rule
    assert rule.verdict(_measured(0.45, 0.83, 0.46)) is None           # the published default's numbers are kept
    weak, strong = rule.verdict(_measured(0.2, 0.3, 0.1)), rule.verdict(_measured(1.0, 0.95, 0.9))
    assert weak.startswith("too weak") and "0.200 < 0.25" in weak
    assert strong.startswith("too strong") and "0.950 > 0.9" in strong
    numbers = {1: _measured(0.1, 0.2, 0.0), 2: _measured(0.5, 0.8, 0.4), 3: _measured(1.0, 1.0, 0.9),
               4: _measured(0.6, 0.7, 0.5), 5: _measured(0.5, 0.6, 0.3), 6: _measured(0.5, 0.6, 0.3)}
    dist = load_distribution()
    measure = lambda world: numbers[world.drawn["index"]]  # noqa: E731
    worlds, record = select_worlds(dist, 3, measure)
    assert [w.name for w in worlds] == ["draw02", "draw04", "draw05"]
    assert [w.base for w in worlds] == [draw_world(dist, i).base for i in (2, 4, 5)]
    assert [w.drawn["check"]["verdict"] for w in worlds] == ["kept"] * 3
    assert worlds[0].drawn["check"]["score"] == pytest.approx((0.5 + 0.8 + 0.4) / 3, abs=1e-4)
    assert record["draws"] == 5 and record["checked"] and not record["unchecked"]
    assert [(r["draw"], r["reason"].split(":")[0]) for r in record["replaced"]] == [(1, "too weak"), (3, "too strong")]
    assert record["replaced"][0]["measured"]["greedy"]["2"] == 0.2
    assert record["replaced"][1]["measured"]["score"] == 0.9667
    assert select_worlds(dist, 3, measure) == (worlds, record)          # deterministic
    # numbers not known yet (a dry run): kept for now, listed unchecked
    worlds, record = select_worlds(dist, 2, lambda w: None if w.drawn["index"] == 2 else numbers[w.drawn["index"]])
    assert [w.name for w in worlds] == ["draw02", "draw04"] and record["unchecked"] == ["draw02"]
    assert not record["checked"] and "check" not in worlds[0].drawn
    assert "NOT CHECKED by the rule" in describe_record(record, pending=False).splitlines()[-1]
    assert "replaced draw01: too weak" in describe_record(record)
    tight = ReplacementRule(max_replaced=1)
    with pytest.raises(WorldError, match="2 of 3 draws replaced .max_replaced 1.: the distribution mostly misses"):
        select_worlds(replace(dist, rule=tight), 2, measure)


def test_a_written_world_file_reads_back_with_its_draws_and_replacements(tmp_path):
    dist = load_distribution()
    numbers = {1: _measured(0.1, 0.1, 0.1), 2: _measured(0.5, 0.8, 0.4), 3: _measured(0.5, 0.7, 0.3)}
    worlds, record = select_worlds(dist, 2, lambda w: numbers[w.drawn["index"]])
    path = write_world_file(tmp_path / "drawn.yaml", worlds, record)
    text = path.read_text()
    assert text.startswith("# 2 held-out worlds drawn from agents/experiments/study_worlds/distribution.yaml")
    read, drawn = load_world_file(path)
    assert [(w.name, w.base, w.drawn, w.seeds) for w in read] == [(w.name, w.base, w.drawn, w.seeds) for w in worlds]
    assert drawn == json.loads(json.dumps(record)) and drawn["replaced"][0]["name"] == "draw01"
    assert [w.base_config() for w in read] == [TinyBaseConfig.from_dict(
        {**TinyBaseConfig().to_dict(), **draw_world(dist, i).base}) for i in (2, 3)]


@pytest.mark.slow
def test_the_rule_measures_the_published_base_as_the_study_base_arm_does_once(tmp_path, monkeypatch, capsys):
    """Every draw of this distribution is the default config (installed from the published weights into a fresh
    cache): the rule's numbers are the base arm's greedy pass@1 on validation, measured once and cached."""
    from agents.commands.study import main
    from agents.experiments.reproduce import Budget
    from agents.experiments.study_cells import Cell, run_cell
    from agents.tiny.cache import base_path

    monkeypatch.setenv("CUMA_CACHE_DIR", str(tmp_path / "cache"))
    data = {"name": "defaults", "draw_seed": 1, "fields": {"seed": {"choice": [0]}},
            "replace": {"n_per_level": 8, "too_weak_below": 0.05, "too_strong_above": 0.95}}
    keep = _write(tmp_path / "keep.yaml", data)
    out = tmp_path / "drawn.yaml"
    assert main(["--worlds", f"sampled:2:{keep}", "--write-worlds", str(out), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    worlds, drawn = load_world_file(out)
    assert [w.name for w in worlds] == ["draw01", "draw02"] and drawn["checked"] and not drawn["replaced"]
    check = worlds[0].drawn["check"]
    assert check["verdict"] == "kept" and check["n"] == {str(lv): 8 for lv in range(1, 6)}
    base_arm = run_cell(Cell(worlds[0], "base", 0), tmp_path / "cells", Budget(eval_every=0, eval_n_per_level=8),
                        "tiny", "validation")
    assert [check["greedy"][str(lv)] for lv in range(1, 6)] == [round(v, 4) for v in base_arm["per_level"]]
    cached = check_file(base_path(TinyBaseConfig()), load_distribution(keep).rule)
    stamp = cached.stat().st_mtime_ns
    # a rule that rejects this base: read from the cache (nothing measured again, nothing built in a dry run),
    # each draw replaced by the next until max_replaced, then one line
    data["replace"].update(too_strong_above=check["score"] - 0.01, max_replaced=1)
    reject = _write(tmp_path / "reject.yaml", data)
    capsys.readouterr()
    assert main(["--worlds", f"sampled:1:{reject}", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "2 of 2 draws replaced (max_replaced 1)" in err and err.count("\n") == 1
    assert cached.stat().st_mtime_ns == stamp
    # a study over drawn worlds records the draw in study.json
    study = tmp_path / "study"
    assert main(["--worlds", f"sampled:1:{keep}", "--arms", "base", "--n-per-level", "3", "--bootstrap", "200",
                 "--out", str(study), "--no-progress"]) == 0
    plan = json.loads((study / "study.json").read_text())["plan"]
    assert plan["drawn"]["distribution"] == str(keep) and plan["drawn"]["checked"] and plan["drawn"]["replaced"] == []
    assert plan["worlds"][0]["drawn"]["check"] == check and cached.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_drawn_bases_built_two_at_a_time_give_the_serial_draws_verdicts(tmp_path, monkeypatch, capsys):
    """`--jobs 2` with `--write-worlds`: the uncached bases are built and measured in two processes first, then
    the rule reads them in draw order: the written worlds, their checks and weights are the serial run's (each
    run in a fresh cache). Bases of a few optimizer steps, so that the test takes seconds per base."""
    from agents.commands.study import main

    small = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1}
    data = {"name": "small", "draw_seed": 5, "fields": {"seed": {"integer": [1, 999]}, "steps": {"choice": [3]},
                                                        "warmup_steps": {"choice": [1]},
                                                        "architecture": {"choice": [small]}},
            "replace": {"n_per_level": 4, "levels": [1], "too_weak_below": 0.0, "too_strong_above": 1.0}}
    dist = _write(tmp_path / "small.yaml", data)
    written = {}
    for jobs in (2, 1):
        monkeypatch.setenv("CUMA_CACHE_DIR", str(tmp_path / f"cache{jobs}"))
        out = tmp_path / f"drawn{jobs}.yaml"
        assert main(["--worlds", f"sampled:2:{dist}", "--write-worlds", str(out), "--jobs", str(jobs),
                     "--no-progress"]) == 0
        log = capsys.readouterr().out
        assert ("built and measured the base of draw02 (" in log) == (jobs == 2)
        worlds, record = load_world_file(out)
        written[jobs] = ([(w.name, w.base, w.drawn) for w in worlds], record)
    assert written[2] == written[1] and len(written[1][0]) == 2 and written[1][1]["checked"]
