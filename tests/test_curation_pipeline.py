"""The curation run (curricula.curation.pipeline), its CLI, and the transformers backend's plumbing.

Generators here are TEST DOUBLES: `ReplayGenerator` returns the hand-written completions of
tests/fixtures/curation/ (no model is called); the transformers test uses a tiny random-weights Qwen2 with a
character tokenizer, so its output is garbage and only the plumbing is checked.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.commands.curate import main as curate_main
from curricula.curation.backends import Completion, GeneratorUnreachable, ReplayGenerator
from curricula.curation.data import DataFileMissing, load_eval_texts, load_seed_pool
from curricula.curation.dedup import build_eval_index
from curricula.curation.pipeline import CurationConfig, CurationStateError, Curator, _Lock, build_pool_index, curate

FIXTURES = Path(__file__).parent / "fixtures" / "curation"
FIXTURE_TEXTS = [p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.txt"))]
ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def world(data_dir):
    """Seed pool, its index and the contamination index, built once for the module (read-only)."""
    pool = load_seed_pool(data_dir=data_dir)
    return {"pool": pool, "pool_index": build_pool_index(pool), "eval_index": build_eval_index(data_dir),
            "eval_texts": load_eval_texts(data_dir), "by_id": {p.id: p for p in pool}}


def make_curator(world, out, generator=None, **overrides):
    cfg = CurationConfig(out=out, **{"levels": (1, 2), "topics": ("algebra", "geometry"), "calls": 8,
                                     "save_rejects": True, **overrides})
    generator = generator if generator is not None else ReplayGenerator(FIXTURE_TEXTS)
    return Curator(cfg, generator, world["pool"], world["eval_index"], pool_index=world["pool_index"],
                   progress=False)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class FailAt:
    """TEST DOUBLE: a replay generator whose endpoint 'goes down' at a given call."""

    def __init__(self, fail_at: int, start: int = 0):
        self.inner = ReplayGenerator(FIXTURE_TEXTS)
        self.inner.calls = start
        self.fail_at, self.name = fail_at, "replay"

    def describe(self):
        return self.inner.describe()

    def generate(self, messages, *, seed=None) -> Completion:
        if self.inner.calls == self.fail_at:
            raise GeneratorUnreachable("test double: endpoint down")
        return self.inner.generate(messages, seed=seed)


def _words5(text: str) -> set:
    words = text.lower().split()
    return {tuple(words[i:i + 5]) for i in range(max(1, len(words) - 4))}


# ------------------------------------------------------------------------------------------------- the run

def test_curated_file_layout_and_no_benchmark_near_copies(world, tmp_path):
    out = tmp_path / "curated.jsonl"
    report = make_curator(world, out).run()
    records = read_records(out)
    assert report.kept == len(records) > 40 and report.next_call == 8
    cfg = CurationConfig(out=out, levels=(1, 2), topics=("algebra", "geometry"), calls=8)
    for rec in records:
        assert set(rec) == {"id", "unique_id", "problem", "level", "source", "answer", "subject", "topic",
                            "generator", "seed", "call", "call_seed", "references", "finish_reason"}
        assert rec["unique_id"] == rec["id"]
        level, topic, _ = cfg.schedule(rec["call"])
        assert (rec["level"], rec["topic"], rec["source"], rec["seed"]) == (level, topic, "curated", 0)
        assert rec["subject"] in ("Algebra", "Geometry") and rec["generator"] == "replay"
        assert len(rec["references"]) == 4
    assert len({r["id"] for r in records}) == len(records)
    # Contamination: nothing within near-duplicate distance of a benchmark problem, by the index and by an
    # independent measure (word 5-gram Jaccard, as in the data README).
    eval_grams = [_words5(t) for items in world["eval_texts"].values() for _, t in items]
    for rec in records:
        assert world["eval_index"].query(rec["problem"]) is None
        g = _words5(rec["problem"])
        assert max(len(g & e) / len(g | e) for e in eval_grams) < 0.5, rec["problem"]
    rejects = [json.loads(line) for line in (tmp_path / "curated.jsonl.rejects.jsonl").read_text().splitlines()]
    reasons = [r["reason"][0] for r in rejects]
    assert reasons.count("eval_duplicate") == 5
    assert {"duplicate", "answer_leak", "truncated", "latex_braces", "diagram"} <= set(reasons)
    assert sum(report.rejected.values()) == len([x for r in rejects for x in r["reason"]])
    pool_copies = [r for r in rejects if r["reason"] == ["duplicate"] and "pool:" in r["match"]]
    assert any("vertical asymptotes" in r["problem"] for r in pool_copies)
    # Nothing kept twice: every kept problem is far from every other kept problem.
    seen = build_pool_index([])
    for rec in records:
        assert seen.query(rec["problem"]) is None, rec["problem"]
        seen.add(rec["id"], rec["problem"])


def test_references_are_of_the_level_and_refresh_every_call(world, tmp_path):
    gen = ReplayGenerator(FIXTURE_TEXTS)
    curator = make_curator(world, tmp_path / "c.jsonl", gen, topics=("geometry",), calls=6)
    curator.run()
    by_pair: dict = {}
    for call, messages in enumerate(gen.received):
        level, topic, _ = curator.config.schedule(call)
        prompt = messages[-1]["content"]
        assert f"level {level} on the 1-5 scale" in prompt and "Write 25 new" in prompt
        assert "Topic: Geometry" in prompt and "<problem>" in prompt
        by_pair.setdefault((level, topic), []).append(call)
    records = read_records(tmp_path / "c.jsonl")
    refs_of_call = {rec["call"]: rec["references"] for rec in records}
    for (level, _), calls in by_pair.items():
        shown = [refs_of_call[c] for c in calls if c in refs_of_call]
        flat = [r for refs in shown for r in refs]
        assert len(flat) == len(set(flat)), "a reference problem was shown twice for the same pair"
        for rid in flat:
            assert world["by_id"][rid].level == level
            assert world["eval_index"].query(world["by_id"][rid].text) is None  # never show a benchmark copy
    for call, messages in enumerate(gen.received):  # the prompt shows the recorded references
        if call in refs_of_call:
            for rid in refs_of_call[call]:
                assert world["by_id"][rid].text.strip() in messages[-1]["content"]


def test_same_seed_same_file(world, tmp_path):
    make_curator(world, tmp_path / "a.jsonl").run()
    make_curator(world, tmp_path / "b.jsonl").run()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


# ------------------------------------------------------------------------------------------------- resume

@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    make_curator(world, out).run()
    return out.read_bytes()


def test_crash_mid_run_then_rerun_continues_without_duplicates_or_loss(world, tmp_path, uninterrupted):
    out = tmp_path / "c.jsonl"
    with pytest.raises(GeneratorUnreachable):
        make_curator(world, out, FailAt(3)).run()
    written = out.read_bytes()
    assert json.loads((tmp_path / "c.jsonl.state.json").read_text())["next_call"] == 3
    report = make_curator(world, out, FailAt(-1, start=3)).run()  # the endpoint is back
    assert report.start_call == 3 and report.kept_before == len(written.splitlines())
    final = out.read_bytes()
    assert final.startswith(written)  # nothing written was lost or rewritten
    assert final == uninterrupted  # and the result is what an uninterrupted run writes
    ids = [r["id"] for r in read_records(out)]
    assert len(ids) == len(set(ids))


def test_crash_between_append_and_state_update_does_not_repeat_the_call(world, tmp_path, uninterrupted,
                                                                         monkeypatch):
    out = tmp_path / "c.jsonl"
    curator = make_curator(world, out)
    original = Curator._write_state

    def dying(self, next_call, kept, rejected):
        if next_call == 3:
            raise KeyboardInterrupt("killed after the append of call 2, before its state")
        original(self, next_call, kept, rejected)

    monkeypatch.setattr(Curator, "_write_state", dying)
    with pytest.raises(KeyboardInterrupt):
        curator.run()
    monkeypatch.setattr(Curator, "_write_state", original)
    assert json.loads((tmp_path / "c.jsonl.state.json").read_text())["next_call"] == 2
    gen = ReplayGenerator(FIXTURE_TEXTS)
    gen.calls = 3
    report = make_curator(world, out, gen).run()
    assert report.start_call == 3  # call 2 is in the file, so it is not asked again
    assert out.read_bytes() == uninterrupted


def test_torn_trailing_line_is_cut_and_complete_lines_kept(world, tmp_path, uninterrupted):
    out = tmp_path / "c.jsonl"
    make_curator(world, out, calls=3).run()
    complete = out.read_bytes()
    with out.open("ab") as fh:
        fh.write(b'{"id": "curated-s0-c000003-00", "problem": "A tri')  # a write cut by a kill
    gen = ReplayGenerator(FIXTURE_TEXTS)
    gen.calls = 3
    report = make_curator(world, out, gen).run()
    assert report.truncated_bytes == len(b'{"id": "curated-s0-c000003-00", "problem": "A tri')
    assert out.read_bytes().startswith(complete)
    assert out.read_bytes() == uninterrupted


def test_finished_run_adds_nothing_and_more_calls_extend_it(world, tmp_path):
    out = tmp_path / "c.jsonl"
    make_curator(world, out, calls=4).run()
    before = out.read_bytes()
    again = make_curator(world, out, calls=4).run()
    assert again.kept == 0 and out.read_bytes() == before
    gen = ReplayGenerator(FIXTURE_TEXTS)
    gen.calls = 4
    more = make_curator(world, out, gen, calls=6).run()
    assert more.start_call == 4 and more.next_call == 6 and out.read_bytes().startswith(before)


def test_other_settings_corrupt_lines_and_a_second_writer_are_refused(world, tmp_path):
    out = tmp_path / "c.jsonl"
    make_curator(world, out, calls=2).run()
    before = out.read_bytes()
    with pytest.raises(CurationStateError, match="other settings"):
        make_curator(world, out, seed=1).run()
    with pytest.raises(CurationStateError, match="other settings"):
        make_curator(world, out, levels=(1, 2, 3)).run()
    with _Lock(out.with_name(out.name + ".lock")):
        with pytest.raises(CurationStateError, match="another run"):
            make_curator(world, out, calls=3).run()
    lines = before.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]))  # a record removed by hand
    with pytest.raises(CurationStateError, match="truncated, replaced or deleted"):
        make_curator(world, out, calls=3).run()
    out.write_bytes(lines[0] + b"{not json}\n" + b"".join(lines[1:]))
    with pytest.raises(CurationStateError, match=r"c\.jsonl:2"):
        make_curator(world, out, calls=3).run()
    assert out.read_bytes() == lines[0] + b"{not json}\n" + b"".join(lines[1:])  # untouched


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CUMA_DATA_DIR", raising=False)
    cfg = CurationConfig(out=tmp_path / "c.jsonl", calls=1)
    with pytest.raises(DataFileMissing, match="CUMA_DATA_DIR"):
        curate(cfg, ReplayGenerator(FIXTURE_TEXTS), progress=False)
    with pytest.raises(DataFileMissing, match=f"{tmp_path}.*math500_test.jsonl.*CUMA_DATA_DIR"):
        curate(cfg, ReplayGenerator(FIXTURE_TEXTS), data_dir=tmp_path, progress=False)


def test_config_validation():
    with pytest.raises(ValueError):
        CurationConfig(out="x.jsonl", levels=(0,))
    with pytest.raises(ValueError, match="unknown topic"):
        CurationConfig(out="x.jsonl", topics=("astrology",))
    with pytest.raises(ValueError, match=r"per_call \(--per-call\) must be >= 1, got 0"):
        CurationConfig(out="x.jsonl", per_call=0)
    with pytest.raises(ValueError, match=r"k_examples \(--k-examples\) must be >= 0, got -1"):
        CurationConfig(out="x.jsonl", k_examples=-1)
    cfg = CurationConfig(out="x.jsonl", topics=("Counting & Probability", "nt"), levels=(3,))
    assert cfg.topics == ("counting_and_probability", "number_theory") and cfg.total_calls == 2


# ------------------------------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def small_pool(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    lines = (data_dir / "math" / "prm800k_train_12k.jsonl").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[::20]) + "\n", encoding="utf-8")
    return path


def test_cli_runs_resumes_and_reports_errors(data_dir, small_pool, tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    args = ["--generator", f"replay:{FIXTURES}", "--out", str(out), "--levels", "1,2", "--topics", "algebra",
            "--calls", "4", "--data-dir", str(data_dir), "--seed-pool", str(small_pool), "--no-progress"]
    assert curate_main(args) == 0
    first = out.read_bytes()
    assert "calls 4/4" in capsys.readouterr().out and first
    assert curate_main(args) == 0 and out.read_bytes() == first  # finished: nothing new
    assert curate_main([*args[:-1], "--calls", "6", "--no-progress"]) == 0
    assert out.read_bytes().startswith(first)
    assert curate_main(["--generator", "ftp:nowhere", "--out", str(out), "--data-dir", str(data_dir)]) == 2
    assert "openai:URL" in capsys.readouterr().err
    assert curate_main(["--generator", f"replay:{FIXTURES}", "--out", str(tmp_path / "x.jsonl"),
                        "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "CUMA_DATA_DIR" in capsys.readouterr().err
    assert curate_main([*args[:-1], "--seed", "5", "--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- transformers

@pytest.fixture
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a small shared CPU: more threads only add contention
    yield
    torch.set_num_threads(before)


def _tiny_model_dir(path: Path, chat_template: bool) -> Path:
    """A 1-layer random-weights Qwen2 with a character tokenizer, saved like a hub model (no download)."""
    torch = pytest.importorskip("torch")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<pad>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(32, 127)] + ["\n"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    if chat_template:
        tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_transformers_backend_plumbing_with_a_tiny_random_model(tmp_path, one_thread):
    """Garbage output by design: checks chat template use, sampling, seeding, truncation flag, decoding."""
    from curricula.curation.backends import GeneratorError, GeneratorSpecError, SamplingParams, make_generator

    messages = [{"role": "system", "content": "You write math problems."},
                {"role": "user", "content": "Write 2 new problems."}]
    templated = make_generator(f"hf:{_tiny_model_dir(tmp_path / 'chat', True)}#device=cpu,dtype=float32",
                               params=SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12))
    prompt, used = templated.prompt_text(messages)
    assert used and prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    first = templated.generate(messages, seed=7)
    assert isinstance(first.text, str) and first.finish_reason in ("length", "stop")
    # (AutoTokenizer loads this char vocabulary as a Qwen2Tokenizer, which drops whitespace: garbage in,
    # garbage out, and only the count's plumbing is checked)
    assert 0 < first.usage["completion_tokens"] <= 12 and 0 < first.usage["prompt_tokens"] <= len(prompt)
    assert templated.generate(messages, seed=7).text == first.text  # seeded sampling is reproducible
    plain = make_generator(f"hf:{_tiny_model_dir(tmp_path / 'plain', False)}",
                           params=SamplingParams(temperature=0.0, max_tokens=5))
    prompt, used = plain.prompt_text(messages)
    assert not used and prompt.startswith("System: ") and prompt.endswith("Assistant:")
    greedy = plain.generate(messages)
    assert greedy.text == plain.generate(messages).text and greedy.usage["completion_tokens"] <= 5
    assert templated.describe()["backend"] == "transformers" and templated.name.startswith("hf:")
    with pytest.raises(GeneratorSpecError, match="hf model folder .*missing does not exist"):
        make_generator(f"hf:{tmp_path / 'missing'}")  # at once, not at the first call: a path, not a hub id
    with pytest.raises(GeneratorError, match="could not load"):
        empty = tmp_path / "empty"
        empty.mkdir()
        make_generator(f"hf:{empty}").generate(messages)  # a folder without a model


def test_transformers_backend_through_the_pipeline(world, tmp_path, one_thread):
    from curricula.curation.backends import SamplingParams
    from curricula.curation.hf_backend import TransformersGenerator

    gen = TransformersGenerator(str(_tiny_model_dir(tmp_path / "m", True)), device="cpu",
                                params=SamplingParams(max_tokens=16))
    report = make_curator(world, tmp_path / "hf.jsonl", gen, calls=1, k_examples=1).run()
    assert report.next_call == 1 and report.kept == 0  # random weights write no problems; the run goes on


def test_importing_curation_does_not_import_torch():
    code = ("import sys; import curricula.curation as c; g = c.make_generator('hf:some/model'); "
            "import agents.commands.curate; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
