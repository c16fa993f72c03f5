"""The tiny base's character-level tokenizer: coverage of every prompt the env emits, round trips."""

from __future__ import annotations

import pytest

from agents.tiny.tokenizer import (
    BOXED_TOKEN,
    CHARSET,
    COMPACT_PHRASES,
    DEFAULT_MERGES,
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    build_char_tokenizer,
    vocabulary,
)
from cuma_env.arithmetic import SPLITS, ArithmeticSource
from cuma_env.problems import LEVELS
from cuma_env.prompting import format_prompt


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


def _prompts(template: str, per_level: int = 300) -> list[str]:
    out = []
    for split in SPLITS:
        source = ArithmeticSource(split=split, seed=0)
        for level in LEVELS:
            for i in range(min(per_level, source.size(level))):
                out.append(format_prompt(source.get(level, i), template))
    return out


@pytest.mark.parametrize("template", ["compact", "default"])
def test_every_prompt_character_is_in_the_vocabulary_and_round_trips(tokenizer, template):
    prompts = _prompts(template)
    assert {ch for p in prompts for ch in p} <= set(CHARSET)
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    for prompt, ids in zip(prompts, encoded):
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == prompt


def test_answers_of_every_level_round_trip_and_boxed_is_one_token(tokenizer):
    source = ArithmeticSource(split="train", seed=0)
    for level in LEVELS:
        for i in range(50):
            text = f"\\boxed{{{source.get(level, i).answer}}}"
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(ids) == text
            assert ids[0] == tokenizer.convert_tokens_to_ids(BOXED_TOKEN)
            assert len(ids) <= 6  # \boxed{ + sign + up to 3 digits + }


def test_specials_and_unknown_characters(tokenizer):
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.bos_token is None
    assert len(tokenizer) == len(vocabulary())
    ids = tokenizer("1é2", add_special_tokens=False)["input_ids"]
    assert ids[1] == tokenizer.unk_token_id and len(ids) == 3
    # nothing is added around a prompt: its ids are exactly its characters
    prompt = "What is 1 + 2?"
    assert tokenizer(prompt)["input_ids"] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(tokenizer("12")["input_ids"] + [tokenizer.eos_token_id], skip_special_tokens=True) == "12"


@pytest.mark.parametrize("trust_remote_code", [None, True])
def test_save_and_load_round_trip_next_to_a_qwen2_config(tokenizer, tmp_path, trust_remote_code):
    """AutoTokenizer must not swap in Qwen2Tokenizer (transformers 5 does for model_type qwen2)."""
    from transformers import AutoTokenizer, Qwen2Config

    from agents.tiny.tokenizer import check_char_tokenizer, save_char_tokenizer

    Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2).save_pretrained(tmp_path)
    save_char_tokenizer(tokenizer, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=trust_remote_code)
    check_char_tokenizer(loaded)
    texts = _prompts("compact", per_level=20) + ["\\boxed{-42}", "a\nb  {x}~"]
    assert loaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    assert [loaded.decode(ids) for ids in loaded(texts)["input_ids"]] == texts
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    assert loaded.padding_side == "left"
    assert loaded.chat_template == tokenizer.chat_template
    batch = loaded(["12", "1234"], padding=True)
    assert batch["input_ids"][0][:2] == [loaded.pad_token_id] * 2 and batch["attention_mask"][0] == [0, 0, 1, 1]
    # a loaded tokenizer saved again with plain save_pretrained still loads correctly (auto_map is kept)
    again = tmp_path / "again"
    loaded.save_pretrained(again)
    Qwen2Config(vocab_size=len(tokenizer)).save_pretrained(again)
    check_char_tokenizer(AutoTokenizer.from_pretrained(again))


def test_check_rejects_a_swapped_tokenizer(tokenizer):
    from agents.tiny.tokenizer import check_char_tokenizer

    with pytest.raises(RuntimeError, match="does not match"):
        check_char_tokenizer(build_char_tokenizer(merges=()))


def test_prompt_and_completion_tokenize_compositionally(tokenizer):
    """Ids of prompt + completion text == ids of the prompt then ids of the completion (re-tokenizing a
    finished rollout gives the generated ids back)."""
    source = ArithmeticSource(split="train", seed=0)
    for level in LEVELS:
        for i in range(30):
            problem = source.get(level, i)
            prompt, completion = format_prompt(problem, "compact"), f"\\boxed{{{problem.answer}}}"
            joint = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
            parts = tokenizer([prompt, completion], add_special_tokens=False)["input_ids"]
            assert joint == parts[0] + parts[1]


def test_chat_template_renders_the_raw_prompt_and_masks_the_assistant(tokenizer):
    prompt = "What is 3 + 4? Answer in \\boxed{}."
    chat = [{"role": "user", "content": prompt}]
    assert tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == prompt
    full = chat + [{"role": "assistant", "content": "\\boxed{7}"}]
    out = tokenizer.apply_chat_template(full, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    n_prompt = len(tokenizer(prompt)["input_ids"])
    assert out["assistant_masks"] == [0] * n_prompt + [1] * (len(out["input_ids"]) - n_prompt)
    assert out["input_ids"][-1] == tokenizer.eos_token_id


def test_merges_shorten_and_invalid_merges_are_rejected():
    chars = build_char_tokenizer(merges=())
    phrases = build_char_tokenizer(merges=(BOXED_TOKEN, *COMPACT_PHRASES))
    assert set(COMPACT_PHRASES) <= set(DEFAULT_MERGES)
    prompt = "What is 74 + 37 - 12? Answer in \\boxed{}."
    assert len(chars(prompt)["input_ids"]) == len(prompt)
    assert phrases.convert_ids_to_tokens(phrases(prompt)["input_ids"]) == [
        "What is ", "7", "4", " + ", "3", "7", " - ", "1", "2", "? Answer in \\boxed{}."]
    assert phrases.decode(phrases(prompt)["input_ids"]) == prompt
    for bad in [("x",), ("ab", "ab"), ("é!",)]:
        with pytest.raises(ValueError):
            build_char_tokenizer(merges=bad)
