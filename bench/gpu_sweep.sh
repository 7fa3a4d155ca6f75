#!/usr/bin/env bash
# Time the full `paper` grid (6 architectures x 3 regimes x 5 seeds = 90 trials, 30 epochs,
# batch 6, 224/299 px) on one GPU, unattended, with no network. RANDOM WEIGHTS: the machine
# cannot download ImageNet weights, so the transfer regimes start from random weights; the
# timing is the study's, the accuracies are not (every result line says so).
#
#   bash bench/gpu_sweep.sh             # the grid (stops handing out trials at 7.5 min)
#   bash bench/gpu_sweep.sh --bf16      # the same in bf16 autocast
#   bash bench/gpu_sweep.sh --bf16-check # trials from random init, fp32 vs bf16 accuracy, 5 seeds
#   bash bench/gpu_sweep.sh --tiny      # a CPU check of this script (seconds per trial)
#   bash bench/gpu_sweep.sh --dry-run   # the plan only
#
# Prints: wall time, trials per minute, per-architecture trial seconds and peak GPU memory,
# and GPU utilisation sampled by nvidia-smi every 0.5 s (mean over the run, and the share of
# samples at >= 90 %). Exit status: 0 all trials ok, 1 some failed, 2 setup error (including
# no usable CUDA: the grid and --bf16-check modes refuse to time a CPU, naming the cause).
# Environment: PYTHON (default .venv/bin/python, else python3), DEADLINE_S (default 450),
# EXTRA_ARGS (passed to bench/grid_timing.py, e.g. "--workers 6").
set -u -o pipefail

cd "$(dirname "$0")/.."
MODE="grid"
ARGS=(--preset paper --random-weights)
case "${1:-}" in
  "") ;;
  --bf16) ARGS+=(--bf16) ;;
  --bf16-check) MODE="bf16-check"; ARGS=(--preset paper --bf16-check --archs resnet18 squeezenet1_0) ;;
  --tiny) MODE="tiny"; ARGS=(--tiny) ;;
  --dry-run) MODE="dry-run"; ARGS+=(--dry-run) ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "error: unknown option $1 (use --bf16, --bf16-check, --tiny, --dry-run)" >&2; exit 2 ;;
esac

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import torch, torchvision, pyarrow, scipy, PIL" 2>/dev/null; then
  echo "error: $PYTHON lacks torch/torchvision/pyarrow/scipy/pillow; install the project's " \
       "dependencies (pip install -e .) or set PYTHON" >&2
  exit 2
fi

# Time a GPU or nothing: without usable CUDA the trials would run (slowly) on the CPU.
if [[ "$MODE" == "grid" || "$MODE" == "bf16-check" ]]; then
  ARGS+=(--require-cuda)
  "$PYTHON" bench/grid_timing.py "${ARGS[@]}" --dry-run > /dev/null || exit 2
fi

export PYTHONUNBUFFERED=1
export TORCH_HOME="${TORCH_HOME:-$(mktemp -d)}"  # nothing is downloaded: random weights
DEADLINE_S="${DEADLINE_S:-450}"
LOG_DIR="$(mktemp -d)"
SMI_LOG="$LOG_DIR/nvidia-smi.csv"

echo "== gpu_sweep ($MODE) $(date -u +%FT%TZ) on $(hostname); python $("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
SMI_PID=""
if command -v nvidia-smi >/dev/null 2>&1 && [[ "$MODE" != "dry-run" ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$SMI_LOG" 2>/dev/null &
  SMI_PID=$!
else
  echo "nvidia-smi: not available (no GPU utilisation sampling)"
fi

# One short trial on the device first, so that a broken setup fails in seconds, not after the grid.
if [[ "$MODE" != "dry-run" ]]; then
  if ! "$PYTHON" bench/grid_timing.py --tiny --archs resnet18 --workers 1 --limit 1 \
      > "$LOG_DIR/preflight.log" 2>&1; then
    echo "error: a one-epoch trial fails on this machine; see $LOG_DIR/preflight.log" >&2
    tail -20 "$LOG_DIR/preflight.log" >&2
    exit 2
  fi
  echo "preflight trial ok"
fi

START=$(date +%s.%N)
# shellcheck disable=SC2086
"$PYTHON" bench/grid_timing.py "${ARGS[@]}" --deadline-s "$DEADLINE_S" \
  --json "$LOG_DIR/grid.json" ${EXTRA_ARGS:-}
STATUS=$?
END=$(date +%s.%N)
[[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null && wait "$SMI_PID" 2>/dev/null

echo "== script wall time (Python start, data, all trials): $(awk -v a="$START" -v b="$END" 'BEGIN{printf "%.1f s", b-a}')"
if [[ -s "$SMI_LOG" ]]; then
  awk -F', *' '{n++; s+=$1; if ($1>=90) hi++; if ($2>m) m=$2}
    END {if (n) printf "== GPU utilisation: mean %.0f %% over %d samples (0.5 s), >= 90 %% in %.0f %% of samples; peak memory used %.0f MiB\n", s/n, n, 100*hi/n, m}' "$SMI_LOG"
fi
if [[ "$MODE" == "grid" ]]; then
  echo "== RANDOM WEIGHTS: timing only. The accuracies of the transfer regimes' trials are meaningless."
fi
echo "== logs: $LOG_DIR"
exit $STATUS
