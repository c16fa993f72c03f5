"""The embedded tiny base: a character-level Qwen2 warmed up on the arithmetic ladder into a weak reasoner.

Modules: `config` (what a base is), `tokenizer`, `corpus` (its warm-up text), `model` (build and load),
`training` (the warm-up), `cache` (build once per machine, or install the published weights), `published`
(the weights shipped in the package), `profile` (what the base can do, level by level). The agent core loads
the base like any other model, through `agents.tiny.cache.ensure_tiny_base`.
"""
