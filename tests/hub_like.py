"""A hub-shaped model built here (no download): what `Qwen/Qwen2.5-0.5B` is, at toy size and random weights.

Unlike the tiny base (character tokenizer, one KV head per query head), it has what real hub models have:
a byte-level BPE tokenizer that `AutoTokenizer` loads as `Qwen2Tokenizer`, a ChatML chat template,
grouped-query attention (4 query heads share 2 KV heads), tied embeddings and an eos token that pads.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}")


def build_hub_like_model(path: Path, seed: int = 0) -> Path:
    """Train a 400-token BPE on arithmetic prompts and answers, save it with a random Qwen2 (GQA) model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from cuma_env.arithmetic import ArithmeticSource
    from cuma_env.prompting import format_prompt

    source = ArithmeticSource(split="train", seed=seed)
    texts = [f"{format_prompt(p, 'compact')} \\boxed{{{p.answer}}}"
             for level in source.levels for p in (source.get(level, i) for i in range(min(200, source.size(level))))]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
