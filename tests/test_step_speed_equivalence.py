"""The step's speed-ups change nothing: TorchRL's collector path gives the same batches, TorchRL's plain env
chain the same reset/step outputs as the fast env, the dense loss batch the same loss and gradient, and a
collected batch is never changed by later collects. The fast paths are `cuma_env.torchrl.fast_paths`
(docs/torchrl-gotchas.md, rows 15-18)."""

from __future__ import annotations

import pytest
import torch
from tensordict import LazyStackedTensorDict, TensorDict, is_non_tensor, is_tensor_collection, lazy_stack
from torchrl.envs import Compose

import cuma_env
from agents import rollout as rollout_module
from agents.checkpoint import seed_everything
from agents.config import load_config
from agents.learner import Learner, OnPolicyGRPOLoss, loss_batch
from agents.policy import build_policy
from agents.rollout import Rollout
from cuma_env.torchrl import fast_paths
from cuma_env.torchrl.fast_paths import InPlaceCompose, OneStepCollector, PaddedTransformersWrapper

PADDED_KEYS = [("tokens", "full"), ("tokens", "prompt"), ("tokens", "response"), ("masks", "all_attention_mask")]
KEYS = ["advantage", ("next", "reward"), ("next", "masked"), "level", "done", ("next", "done")]
TEXT_KEYS = [("text", "prompt"), ("text", "response"), ("text", "full"), ("next", "answer"), "problem_id", "query",
             ("next", "text", "prompt")]


def config_for(base_dir, *overrides, preset="tiny-ttrl"):
    return load_config(preset=preset, overrides=[f"model.path={base_dir}", "rollout.prompts_per_step=4",
                                                 "output.progress=false", *overrides])


def collect(config, steps, *, torchrl_path=False, monkeypatch=None):
    """`steps` batches of a fresh Rollout; `torchrl_path`: the plain TorchRL path (its own LLMCollector, a
    generator that returns log-probs into a lazy stack, a plain Compose and a copying GroupVote on the buffer's
    write path, the env built with `fast=False`)."""
    if torchrl_path:
        import torchrl.modules.llm as llm
        from torchrl.collectors.llm import LLMCollector

        wrapper, make_env = llm.TransformersWrapper, cuma_env.make_torchrl_env

        def with_log_probs(*args, **kwargs):
            kwargs["return_log_probs"] = True
            return wrapper(*args, **kwargs)

        monkeypatch.setattr(llm, "TransformersWrapper", with_log_probs)
        monkeypatch.setattr(fast_paths, "PaddedTransformersWrapper", with_log_probs)
        monkeypatch.setattr(rollout_module, "OneStepCollector", LLMCollector)
        monkeypatch.setattr(rollout_module, "InPlaceCompose", lambda *transforms, handover=False: Compose(*transforms))
        monkeypatch.setattr(cuma_env, "make_torchrl_env", lambda *a, **kw: make_env(*a, fast=False, **kw))
    seed_everything(0)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    if torchrl_path:
        monkeypatch.undo()
        rollout.vote.copy = True
    assert isinstance(rollout.collector, OneStepCollector) != torchrl_path
    assert isinstance(rollout.env.transform, InPlaceCompose) != torchrl_path
    assert isinstance(rollout.buffer._transform, InPlaceCompose) != torchrl_path
    assert policy.generator.return_log_probs == torchrl_path
    assert isinstance(policy.generator, PaddedTransformersWrapper) != torchrl_path
    try:
        return [rollout.collect() for _ in range(steps)], policy
    finally:
        rollout.shutdown()


def snapshot(data):
    """Every compared entry of a batch, copied (group ids as first-appearance ranks: their uid is random)."""
    if data is None:
        return None
    out = {k: data.get(k, as_padded_tensor=True, padding_side="left", padding_value=0).clone() for k in PADDED_KEYS}
    out.update({k: data.get(k).clone() for k in KEYS})
    out.update({k: list(data.get(k).tolist()) for k in TEXT_KEYS})
    first: dict = {}
    out["group"] = [first.setdefault(g, len(first)) for g in data.get("group_id").tolist()]
    return out


def assert_same(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


@pytest.mark.parametrize("preset", ["tiny-ttrl", "tiny-cuma-gated"])
def test_the_fast_collector_gives_torchrl_collectors_batches(tiny_base_dir, monkeypatch, preset):
    config = config_for(tiny_base_dir, "curriculum.probe=false", preset=preset)
    ours, _ = collect(config, 3)
    theirs, _ = collect(config, 3, torchrl_path=True, monkeypatch=monkeypatch)
    for a, b in zip(ours, theirs):
        assert a.infos == b.infos and a.kept_groups == b.kept_groups
        assert_same(snapshot(a.data), snapshot(b.data))


def _is_leaf(cls):
    return not is_tensor_collection(cls) or getattr(cls, "_is_non_tensor", False)


def env_entries(td):
    """Every leaf of an env's reset/step output as plain values (group ids as first-appearance ranks)."""
    out = {}
    for key in td.keys(True, True, is_leaf=_is_leaf):
        try:
            value = td.get(key)
        except RuntimeError:  # ragged (tokens of a lazy stack): one tensor per member
            out[key] = [t.clone() for t in td.get(key, as_list=True)]
            continue
        if is_non_tensor(value):
            out[key] = value.tolist()
        elif key in ("group_id", ("next", "group_id")):
            first: dict = {}
            out[key] = [first.setdefault(g, len(first)) for g in value.tolist()]
        else:
            out[key] = value.clone()
    return out


@pytest.mark.parametrize("input_mode,batch_size,system_prompt", [
    ("text", 4, None), ("text", 8, None), ("text", 6, "Be brief."), ("history", 8, None)])
def test_the_fast_env_gives_torchrls_reset_and_step_outputs(tiny_random_model, input_mode, batch_size,
                                                            system_prompt):
    """`fast=True` (each distinct prompt rendered once, no copy of the step input) vs TorchRL's plain chain,
    same seed: the same reset and step outputs, leaf by leaf, over several resets (groups of 4: one whole
    group, two groups, groups spanning resets)."""
    from torchrl.modules.llm import TransformersWrapper

    model, tokenizer = tiny_random_model
    template = {"chat_template_name": "chatml_format"} if input_mode == "history" else {}
    policy = TransformersWrapper(model, tokenizer=tokenizer, input_mode=input_mode, generate=True,
                                 generate_kwargs={"max_new_tokens": 6, "do_sample": True}, **template)
    runs = []
    for fast in (True, False):
        env = cuma_env.make_torchrl_env("CuMa-Arith-v0", tokenizer=tokenizer, group_size=4, batch_size=batch_size,
                                        input_mode=input_mode, system_prompt=system_prompt, seed=3, fast=fast)
        assert isinstance(env.transform, InPlaceCompose) == fast and env.base_env.render_once == fast
        torch.manual_seed(0)
        outputs = []
        for _ in range(3):
            td = env.reset()
            # the fast text-mode reset is one dense batch; TorchRL's is a per-member lazy stack
            assert isinstance(td, LazyStackedTensorDict) != (fast and input_mode == "text")
            outputs.append(env_entries(td))
            action = policy(td)
            keys = set(action.keys(True, True, is_leaf=_is_leaf))
            stepped = env.step(action)  # the action is left as given, plus "next"
            added = set(stepped.keys(True, True, is_leaf=_is_leaf)) - keys
            assert stepped is action and added and all(isinstance(k, tuple) and k[0] == "next" for k in added)
            outputs.append(env_entries(stepped))
        runs.append(outputs)
    fast, plain = runs
    for a, b in zip(fast, plain, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            elif value and isinstance(value[0], torch.Tensor):
                assert len(value) == len(b[key]) and all(map(torch.equal, value, b[key])), key
            else:
                assert value == b[key], key
    if input_mode == "text" and batch_size > 4:  # several distinct prompts per reset, each rendered once
        prompts = fast[0][("text", "prompt")]
        assert len(set(prompts)) == 2 and all(system_prompt in p for p in prompts if system_prompt)


def test_the_in_place_compose_copies_only_for_a_step_mask_or_an_inverse_transform():
    from torchrl.envs import UnsqueezeTransform

    td = TensorDict({"a": torch.zeros(2)}, batch_size=[2])
    compose = InPlaceCompose()
    assert compose.inv(td) is td
    td.set("_step", torch.ones(2, dtype=torch.bool))
    out = compose.inv(td)
    assert out is not td and "_step" in out.keys() and "_step" in td.keys()
    td = TensorDict({"b": torch.zeros(2, 1)}, batch_size=[2])
    compose.append(UnsqueezeTransform(-1, in_keys_inv=["a"], out_keys_inv=["b"]))
    out = compose.inv(td)
    assert out is not td and out.get("a").shape == (2,) and "a" not in td.keys()


def test_the_in_place_compose_with_handover_writes_into_the_callers_batch():
    """`handover=True` (the agent's buffer write path): an inverse transform works on the caller's batch, as
    TorchRL's `Compose.inv` works on its copy; a `"_step"` mask still takes the copying path."""
    from torchrl.envs import UnsqueezeTransform

    def transform():
        return UnsqueezeTransform(-1, in_keys_inv=["a"], out_keys_inv=["b"])

    theirs = Compose(transform()).inv(TensorDict({"b": torch.arange(2.0).view(2, 1)}, batch_size=[2]))
    td = TensorDict({"b": torch.arange(2.0).view(2, 1)}, batch_size=[2])
    out = InPlaceCompose(transform(), handover=True).inv(td)
    assert out is td and torch.equal(td.get("a"), theirs.get("a")) and td.get("a").shape == (2,)
    td = TensorDict({"b": torch.zeros(2, 1), "_step": torch.ones(2, dtype=torch.bool)}, batch_size=[2])
    out = InPlaceCompose(transform(), handover=True).inv(td)
    assert out is not td and "a" in out.keys() and "a" not in td.keys()


def test_a_batch_is_not_changed_by_later_collects(tiny_base_dir):
    config = config_for(tiny_base_dir, "curriculum.probe=false")
    seed_everything(0)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    try:
        first = rollout.collect()
        before = snapshot(first.data)
        for _ in range(2):
            rollout.collect()
        assert_same(before, snapshot(first.data))
    finally:
        rollout.shutdown()


def ragged(data):
    """The batch with its first group's members left-padded by two more positions (a lazy, ragged stack)."""
    members = list(data.unbind(0))
    pad = 0
    for i in range(len(members) // 2):
        m = members[i].clone()
        for key, value in ((("tokens", "full"), pad), (("tokens", "prompt"), pad),
                           (("masks", "all_attention_mask"), False)):
            t = m.get(key)
            m.set(key, torch.cat([torch.full((2,), value, dtype=t.dtype), t]))
        members[i] = m
    return lazy_stack(members)


@pytest.mark.parametrize("options", [
    {},
    {"entropy_bonus": True, "entropy_coeff": 0.01, "aggregation": "prompt_mean"},
])
@pytest.mark.parametrize("shape", ["padded", "ragged"])
def test_the_dense_loss_batch_gives_the_same_loss_and_gradient(tiny_base_dir, options, shape):
    config = config_for(tiny_base_dir, "curriculum.probe=false", "rollout.prompts_per_step=6")
    batches, policy = collect(config, 4)
    learner = Learner(policy, config.train, config.rollout.group_size)
    data = next(d for d in (learner.select(b.data) for b in batches) if d is not None)
    if shape == "ragged":
        data = ragged(data)
    loss_module = OnPolicyGRPOLoss(policy.scorer, masking_strategy="sft", **options)
    results = []
    for batch in (data, loss_batch(data, policy.tokenizer.pad_token_id)):
        policy.model.zero_grad(set_to_none=True)
        out = loss_module(batch)
        loss = out.loss_objective + (out.loss_entropy if options else 0)
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.reshape(-1) for p in policy.model.parameters()])))
    policy.model.zero_grad(set_to_none=True)
    assert type(data).__name__ == "LazyStackedTensorDict"
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][0] != 0


def test_the_learner_step_is_unchanged_with_a_kl_reference(tiny_base_dir):
    """Learner.step on the dense batch equals a step with TorchRL's loss on the original (lazy) batch."""
    config = config_for(tiny_base_dir, "curriculum.probe=false", "train.kl_coef=0.05")
    batches, policy = collect(config, 3)
    data = next(b.data for b in batches if b.data is not None)
    learner = Learner(policy, config.train, config.rollout.group_size)
    selected = learner.select(data)
    with torch.no_grad():
        ref = learner.reference(selected.copy()).get(("log_probs", "full")).float()
    reference_batch = selected.copy()
    reference_batch.set(("next", "ref_log_probs", "full"), ref)
    out = learner.loss_module(reference_batch)
    expected = float((out.loss_objective + out.loss_kl_to_ref).detach())
    stats = learner.step(data)
    assert stats.loss == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert stats.kl_to_ref == pytest.approx(float(out.kl_to_ref), rel=1e-6, abs=1e-9)


def test_the_one_step_collector_postproc_skips_only_a_walk(tiny_base_dir):
    """`OneStepCollector._postproc` returns what TorchRL's returns: the batch itself when nothing is private,
    and TorchRL's result (the private keys dropped) when a key is."""
    from torchrl.collectors.llm import LLMCollector

    config = config_for(tiny_base_dir, "curriculum.probe=false")
    seed_everything(0)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    try:
        collector = rollout.collector
        batch = collector._rollout_all()
        keys = set(batch.keys(True))
        assert collector._postproc(batch) is batch and LLMCollector._postproc(collector, batch) is batch
        assert set(batch.keys(True)) == keys
        private = batch.copy()
        private.set("_hidden", torch.zeros(private.shape))
        out = collector._postproc(private)
        assert "_hidden" not in out.keys() and set(out.keys(True)) == keys
    finally:
        rollout.shutdown()


@pytest.mark.parametrize("return_log_probs", [False, True])
def test_the_padded_generator_gives_torchrls_outputs(tiny_random_model, return_log_probs):
    """`PaddedTransformersWrapper` (outputs built dense) vs TorchRL's `TransformersWrapper` (built in a lazy
    stack), same seed and env batch: the same entries, leaf by leaf, and the env steps them the same."""
    from torchrl.modules.llm import TransformersWrapper

    model, tokenizer = tiny_random_model
    kwargs = dict(tokenizer=tokenizer, input_mode="text", generate=True, pad_output=True,
                  return_log_probs=return_log_probs, generate_kwargs={"max_new_tokens": 6, "do_sample": True})
    runs = []
    for cls in (PaddedTransformersWrapper, TransformersWrapper):
        env = cuma_env.make_torchrl_env("CuMa-Arith-v0", tokenizer=tokenizer, group_size=4, batch_size=8, seed=3)
        policy = cls(model, **kwargs)
        torch.manual_seed(0)
        td = env.reset()
        action = policy(td)
        runs.append((env_entries(action), env_entries(env.step(action))))
    (ours_action, ours_step), (theirs_action, theirs_step) = runs
    assert ("text", "response") in ours_action and (("log_probs", "response") in ours_action) == return_log_probs
    for a, b in ((ours_action, theirs_action), (ours_step, theirs_step)):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            else:
                assert value == b[key], key
