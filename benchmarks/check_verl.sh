#!/usr/bin/env bash
# CuMa's verl reward managers inside real verl, on a CPU (docs/trainers.md, section verl).
#
# Builds a venv of its own (verl pins tensordict<=0.10 and transformers<5.11, which cannot share an
# environment with the agent stack's torchrl 0.14.1), installs the CPU torch wheel first, checks with a
# dry run that verl plus CuMa's light core pull no CUDA packages and keep that torch, installs them, and runs
# benchmarks/check_verl.py. Needs the package index once; rerun reuses the venv.
#   bash benchmarks/check_verl.sh            # VERL_VERSION=0.9.1, venv in /tmp/cuma-verl-venv
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CUMA_VERL_VENV:-/tmp/cuma-verl-venv}"
VERL_VERSION="${VERL_VERSION:-0.9.1}"
TORCH_VERSION="2.13.0"  # the CPU wheel this machine's index serves; a looser pin pulls GBs of CUDA packages
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)
quiet() { grep -v "^WARNING: Location" || true; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q "torch==$TORCH_VERSION" 2>&1 | quiet

# What verl and the core would pull, before pulling it: no CUDA stack, no inference engine, torch unchanged.
REPORT="$(mktemp)"
"$PY" -m pip install -q --dry-run --report "$REPORT" "verl==$VERL_VERSION" "$REPO" 2>&1 | quiet
"$PY" - "$REPORT" "$TORCH_VERSION" <<'PYEOF'
import json, re, sys
report, torch_version = json.load(open(sys.argv[1])), sys.argv[2]
names = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in report["install"]}
banned = sorted(n for n in names if re.match(r"(nvidia-|vllm|flash-attn|sglang|cupy|triton|torchrl|xformers)", n))
if banned or "torch" in names:
    sys.exit(f"refusing: the install would pull {banned or ''} {'torch ' + names['torch'] if 'torch' in names else ''}")
print(f"dry run: {len(names)} packages, no CUDA packages, torch {torch_version} kept "
      f"(verl {names.get('verl', 'present')}, tensordict {names.get('tensordict', 'present')})")
PYEOF
rm -f "$REPORT"

"$PY" -m pip install -q "verl==$VERL_VERSION" "$REPO" 2>&1 | quiet
"$PY" -m pip check
"$PY" -c "import torch, verl; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"
echo "venv ready in $(( $(date +%s) - start ))s: $VENV"

LOG="$(mktemp)"
cd "$(dirname "$LOG")"  # import cuma_env from the venv (the installed core), not from the checkout
set +e
"$PY" "$REPO/benchmarks/check_verl.py" >"$LOG" 2>&1
status=$?
set -e
grep -v -E "UserWarning|warnings.warn|accelerator|PlatformCUDA" "$LOG" || true
rm -f "$LOG"
echo "check_verl: exit $status, $(( $(date +%s) - start ))s in all"
exit "$status"
