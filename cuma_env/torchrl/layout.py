"""Where a single-turn LLM batch keeps what the vote reads: response texts, token statistics, string entries.

Shared by the env (`cuma_env.torchrl.env`, scoring in `step`) and `cuma_env.torchrl.group_vote.GroupVote`
(scoring on the replay-buffer write path), so both read a batch the same way. Imports no other module of the
subpackage.
"""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase

TOKEN_STATS_KEY = "token_stats"


def as_str_list(value: Any, n: int) -> list:
    """Strings (or None) of a NonTensorData/NonTensorStack/str/list entry, as a list of length `n`."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) or value is None:
        value = [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"expected {n} entries, got {len(value)}")
    return value


def read_responses(td: TensorDictBase) -> list[str]:
    """The response text of each member of a flat batch, from the `text` or the `history` keys.

    `("text", "response")` when present; else `("text", "full")` minus `("text", "prompt")`; else the content
    of the last message of `("history", "full")` (history mode).
    """
    n = td.batch_size[0]
    response = td.get(("text", "response"), None)
    if response is not None:
        return [r or "" for r in as_str_list(response, n)]
    full = td.get(("text", "full"), None)
    if full is not None:
        prompt = td.get(("text", "prompt"), None)
        prompt = as_str_list(prompt, n) if prompt is not None else [""] * n
        return [f.removeprefix(p or "") for f, p in zip(as_str_list(full, n), prompt)]
    full = td.get(("history", "full"), None)
    if full is not None:
        return [_last_content(full[i]) for i in range(n)]
    raise KeyError("no response found: expected ('text', 'response'), ('text', 'full') or ('history', 'full') "
                   f"in the tensordict; it has {sorted(map(str, td.keys(True)))}")


def _last_content(history: Any) -> str:
    content = history.content
    content = content.tolist() if hasattr(content, "tolist") else content
    while isinstance(content, list):
        content = content[-1] if content else ""
    return content or ""


def read_token_stats(td: TensorDictBase, key: Any) -> list[float] | None:
    """Per-member token statistics (e.g. self-certainty) from `key`, if present: shape (n,) or (n, 1, ...)."""
    value = td.get(key, None)
    if value is None:
        return None
    return [float(v) for v in value.reshape(td.batch_size[0], -1)[:, 0].tolist()]
