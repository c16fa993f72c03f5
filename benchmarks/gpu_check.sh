#!/usr/bin/env bash
# The CUDA checks, prepared to run in one call on a GPU machine whose Python has torch and transformers but
# not this package's other dependencies (the H200 image of the developers' device tool: Python 3.12,
# torch 2.11, transformers 5.17). Everything lands in $OUT: versions, the CUDA tests, a timed default run
# on cuda (bf16), benchmarks/bench_learner_memory.py at the qwen2.5-0.5b-cuma preset's sizes, and a Ray
# run with 2 workers on the GPU where ray imports. Last run: docs/performance.md ("On a GPU").
#
# 1. On a machine with pip access, fetch the missing wheels into .whl/ (ignored by git; ~5 MB):
#      for p in torchrl==0.14.1 tensordict==0.14.3 pyvers==0.2.3 hoptorch==0.1.4 orjson importlib_metadata \
#               lazy-importer gymnasium farama-notifications math-verify==0.9.0 latex2sympy2_extended==1.11.0 \
#               antlr4-python3-runtime==4.13.2; do
#        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"; done
# 2. Run this script there with .whl carried (about 5 minutes), e.g. `bash benchmarks/gpu_check.sh`.
#
# Real vLLM is checked only where it is already installed (its wheel is hundreds of MB and pins its own
# torch): the last section says when it was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 CUMA_CACHE_DIR=/tmp/cuma-cache
if [ -d .whl ] && ! PYTHONPATH=/tmp/site python3 -c "import torchrl" 2>/dev/null; then  # once per machine
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
fi
if [ -d /tmp/site ]; then export PYTHONPATH="/tmp/site:$PWD"; else export PYTHONPATH="$PWD"; fi

python3 - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import torch, torchrl, tensordict, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("torchrl", torchrl.__version__, "tensordict", tensordict.__version__, "transformers", transformers.__version__)
EOF

echo "== CUDA tests (the tiny preset on cuda; the bf16 autocast path)" | tee "$OUT/pytest-cuda.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_trainer.py -k "cuda or bf16" -rs 2>&1 \
  | tee -a "$OUT/pytest-cuda.txt" | tail -4

echo "== cuma train model.device=cuda (the default preset, bf16), timed" | tee "$OUT/train-cuda.txt"
start=$(date +%s)
timeout 240 python3 -m agents.commands.train model.device=cuda output.progress=false output.tensorboard=false \
  --out /tmp/run-cuda >>"$OUT/train-cuda.txt" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/train-cuda.txt"
tail -4 "$OUT/train-cuda.txt"
cp /tmp/run-cuda/summary.json "$OUT/train-cuda-summary.json" 2>/dev/null
cp /tmp/run-cuda/metrics.csv "$OUT/train-cuda-metrics.csv" 2>/dev/null

echo "== learner memory at the qwen preset's sizes (random Qwen2.5-0.5B-shaped weights)" | tee "$OUT/memory.txt"
timeout 300 python3 benchmarks/bench_learner_memory.py --rows 32 --width 3400 --micro-batch 0 16 8 4 2 \
  --json "$OUT/memory.json" 2>&1 | grep -v "Loading weights\|Writing model" | tee -a "$OUT/memory.txt" | tail -9

# Ray scale-out on CUDA (docs/distributed.md): 2 transformers workers sharing the GPU with the learner. Needs ray
# importable there; its wheel (~70 MB) does not fit the developers' device tool's 64 MiB carry, so there it is
# skipped and says so.
echo "== cuma train rollout.workers=2 on cuda (Ray, transformers workers)" | tee "$OUT/ray-cuda.txt"
if python3 -c "import ray" 2>/dev/null; then
  timeout 300 python3 -m agents.commands.train model.device=cuda rollout.workers=2 ray.num_gpus_per_worker=0.25 \
    train.steps=5 eval.every=0 output.progress=false output.tensorboard=false --out /tmp/run-ray-cuda \
    >>"$OUT/ray-cuda.txt" 2>&1
  echo "exit $?" | tee -a "$OUT/ray-cuda.txt"
  tail -3 "$OUT/ray-cuda.txt"
else
  echo "skipped: ray is not importable on this machine" | tee -a "$OUT/ray-cuda.txt"
fi

# vLLM rollout workers on Ray (docs/distributed.md, "GPU layouts"): AsyncVLLM replicas on GPUs 0..n-2, the learner
# on the last GPU, weights broadcast over NCCL. Needs vllm and ray importable and at least 2 GPUs; the 4-GPU
# Qwen2.5-0.5B layout runs where 4 GPUs and the model's weights (the Hugging Face cache) are there.
echo "== vLLM workers on Ray (tests/test_distributed_vllm.py; the 4-GPU qwen layout)" | tee "$OUT/ray-vllm.txt"
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if python3 -c "import vllm, ray" 2>/dev/null && [ "$gpus" -ge 2 ]; then
  timeout 600 python3 -m pytest -q -p no:cacheprovider tests/test_distributed_vllm.py -rs 2>&1 \
    | tee -a "$OUT/ray-vllm.txt" | tail -4
  if [ "$gpus" -ge 4 ] && python3 -c "from huggingface_hub import snapshot_download as s; s('Qwen/Qwen2.5-0.5B', local_files_only=True)" 2>/dev/null; then
    timeout 900 python3 -m agents.commands.train --preset qwen2.5-0.5b-cuma model.backend=vllm model.device=cuda:3 \
      rollout.workers=4 ray.vllm_replicas=3 ray.num_gpus_per_worker=1 train.steps=5 eval.every=0 \
      output.progress=false output.tensorboard=false --out /tmp/run-ray-vllm-qwen >>"$OUT/ray-vllm.txt" 2>&1
    echo "exit $? (qwen, 3 vLLM replicas + learner on GPU 3)" | tee -a "$OUT/ray-vllm.txt"
  else
    echo "qwen layout skipped: needs 4 GPUs and Qwen/Qwen2.5-0.5B in the Hugging Face cache" | tee -a "$OUT/ray-vllm.txt"
  fi
else
  echo "skipped: needs vllm and ray importable and >= 2 GPUs (found $gpus)" | tee -a "$OUT/ray-vllm.txt"
fi
