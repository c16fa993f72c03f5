"""Fast paths: small subclasses of TorchRL 0.14 internals that skip work a single-turn, group-batched step never
needs. Each one cites its row of docs/torchrl-gotchas.md, and each has an equivalence test against TorchRL's
own path (tests/test_step_speed_equivalence.py: same batches, same env outputs, same generator outputs):

- `InPlaceCompose` (gotcha 15): `Compose.inv` without `Transform.inv`'s defensive copy of its input; the env's
  transforms (`cuma_env.torchrl.env`) and the agent's replay-buffer write path (`agents.rollout`).
- `DenseResetChatEnv` (gotcha 16): `ChatEnv`'s text-mode reset with each distinct prompt rendered once, built
  dense; the base of the CuMa env.
- `OneStepCollector` (gotcha 17): `LLMCollector` without the clone and the member-by-member carry-over of a
  step that ends every dialog; the agent's collector (`agents.rollout`).
- `PaddedTransformersWrapper` (gotcha 18): `TransformersWrapper` whose padded outputs are built dense; the
  agent's generator (`agents.policy`).

Anything outside the case each one is written for takes TorchRL's code unchanged. Measured savings:
docs/performance.md.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import LazyStackedTensorDict, TensorDict, TensorDictBase, lazy_stack
from torchrl.collectors.llm import LLMCollector
from torchrl.data.llm import History
from torchrl.envs import Compose, Transform
from torchrl.envs.llm import ChatEnv
from torchrl.modules.llm import TransformersWrapper
from torchrl.modules.llm.policies.common import Text


class InPlaceCompose(Compose):
    """`Compose` whose `inv` hands its input to the transforms without `Transform.inv`'s copy (gotcha 15).

    `Transform.inv` shallow-copies its input before the inverse transforms so that they cannot change the
    caller's data. The copy protects nothing when no transform has an inverse (the env's `DataLoadingPrimer`
    and `GroupScorer` act on reset/step outputs only), or when the caller hands its input over
    (`handover=True`: the replay-buffer write path of a collector whose batch is fresh and never read again).
    A `"_step"` mask is the one entry `TransformedEnv._step` pops from what `inv` returns, so with it present,
    or without `handover` once a transform with an inverse is appended, TorchRL's copying path is taken.
    """

    def __init__(self, *transforms: Transform, handover: bool = False):
        super().__init__(*transforms)
        self.handover = bool(handover)

    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.copy_protects_nothing(tensordict):
            return self._inv_call(tensordict)
        return super().inv(tensordict)

    def copy_protects_nothing(self, tensordict: TensorDictBase) -> bool:
        if "_step" in tensordict.keys():
            return False
        return self.handover or all(type(t)._inv_call is Transform._inv_call and not t.in_keys_inv
                                    for t in self.transforms)


class DenseResetChatEnv(ChatEnv):
    """`ChatEnv` whose text-mode reset renders each distinct query once into a dense batch (gotcha 16).

    With `render_once` set, a text-mode reset of a batch of string queries renders each distinct query as the
    same one- or two-message chat `ChatEnv._reset` builds (the system prompt, then the query as the user
    message) and returns one dense TensorDict, where `ChatEnv._reset` renders the template for every member
    (a group repeats its prompt G times) and returns a per-member lazy stack that every later stage (the
    generator, the step, the scorer) then walks member by member. Anything else (chats, History payloads,
    `render_once` unset) takes `ChatEnv._reset`.
    """

    render_once = False

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        distinct = None
        if self.render_once and self.input_mode == "text" and tensordict is not None:
            distinct = _distinct_queries(tensordict.get(self.data_key, None), self.batch_size)
        if distinct is None:
            return super()._reset(tensordict, **kwargs)
        queries, index = distinct
        system = [{"role": self.system_role, "content": self.system_prompt}] if self.system_prompt is not None else []
        chats = [system + [{"role": self.user_role, "content": query}] for query in queries]
        rendered = History.from_chats(chats).apply_chat_template(tokenizer=self.tokenizer, add_generation_prompt=True,
                                                                  **self.template_kwargs)
        rendered = [rendered] if isinstance(rendered, str) else rendered
        out = TensorDict(batch_size=self.batch_size, device=self.device)
        text = Text._from_tensordict(out.empty())  # as ChatEnv._reset_text builds it
        text.prompt = [rendered[i] for i in index]
        return out.set("text", text).update(tensordict)


def _distinct_queries(queries: Any, batch_size: torch.Size) -> tuple[list[str], list[int]] | None:
    """For a 1-D batch of string queries: the distinct queries in order of first appearance, and each
    member's position in that list. None when the queries are anything else (chats, History payloads)."""
    if queries is None or len(batch_size) != 1 or not hasattr(queries, "tolist"):
        return None
    values = queries.tolist()
    if not isinstance(values, list) or len(values) != batch_size[0] or not all(isinstance(v, str) for v in values):
        return None
    position: dict[str, int] = {}
    for v in values:
        position.setdefault(v, len(position))
    return list(position), [position[v] for v in values]


class OneStepCollector(LLMCollector):
    """`LLMCollector` for batches that one env step fills: no clone, a plain reset when all dialogs ended
    (gotcha 17).

    TorchRL's loop clones each step's output because the next step reuses its shuttle, and
    `step_and_maybe_reset` carries the finished step over member by member before resetting it. Single turn,
    every member is done after the step: the next shuttle is a fresh `reset()` (the same draws; the generator
    replaces every key it writes), so the step's output shares nothing with it and goes to the buffer as is
    (`GroupVote(copy=False)` writes into its rows). Anything else takes TorchRL's own path.
    """

    def _rollout_all(self):
        if self.reset_at_each_iter or self.env.batch_size.numel() < self.dialog_turns_per_batch:
            return super()._rollout_all()  # several steps per batch
        if self._shuttle is None:
            self._shuttle = self.env.reset()
        env_input = self.policy(self._shuttle)
        if env_input.device != self.env.device:
            env_input = env_input.to(self.env.device)
        env_output = self.env.step(env_input)
        if bool(env_output.get(("next", "done")).all()):
            self._shuttle = self.env.reset()
        else:  # multi-turn: the rest of TorchRL's step_and_maybe_reset, and its clone
            shuttle = self.env._step_mdp(env_output)
            if getattr(self.env, "_post_step_mdp_hooks", None) is not None:
                env_output, shuttle = self.env._post_step_mdp_hooks(env_output, shuttle)
            self._shuttle = self.env.maybe_reset(shuttle)
            env_output = env_output.clone()
        collector_data = env_output.get("collector", default=None)
        if collector_data is not None:
            self._shuttle.set("collector", collector_data.copy())
            self._update_traj_ids(env_output)
        trajectory = lazy_stack([env_output], -1)  # what TorchRL's loop builds
        return trajectory.view(-1) if self.flatten_data else trajectory

    def _postproc(self, tensordict_out):
        """TorchRL's `_postproc`, minus its walk over every key of every member when no key is private.

        TorchRL lists `keys(True)` of the whole (lazily stacked) batch to drop the private ones. A lazy stack's
        keys are those all its members share, so when the first member has no private key the batch has none
        to drop and the batch is returned as is; anything else (a postproc, split trajectories, a private key)
        takes TorchRL's own code.
        """
        if (self.split_trajs or self.postproc is not None or not self._exclude_private_keys
                or tensordict_out.batch_dims != 1 or not tensordict_out.shape[0]
                or any(map(_is_private, tensordict_out[0].keys(True)))):
            return super()._postproc(tensordict_out)
        return tensordict_out


def _is_private(key) -> bool:
    """TorchRL's test in `_postproc`: a key (or any part of a nested key) starting with an underscore."""
    return key.startswith("_") if isinstance(key, str) else any(k.startswith("_") for k in key)


class PaddedTransformersWrapper(TransformersWrapper):
    """`TransformersWrapper` whose text-mode generation writes padded outputs into a dense TensorDict
    (gotcha 18).

    TorchRL builds a generation's outputs (`text`, `tokens`, `masks`, `log_probs`) in a per-member lazy stack
    so that ragged outputs fit. With `pad_output=True` every output is a padded tensor or a list of strings,
    so the lazy stack only adds work: each output field is split and set member by member. Written into a
    dense TensorDict, the fields hold the same values, and the wrapper updates the env's batch from it exactly
    as from the lazy one. Ragged outputs (`pad_output=False`), several samples per prompt and every other
    input mode take TorchRL's code unchanged.
    """

    def _from_transformers_generate_text(self, td, cfg, out):
        if self.pad_output and not self.num_samples and isinstance(out, LazyStackedTensorDict) and out.ndim == 1:
            out = TensorDict(batch_size=out.batch_size, device=out.device)
        return super()._from_transformers_generate_text(td, cfg, out)
