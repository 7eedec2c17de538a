#!/usr/bin/env bash
# GPU check for the scale-out features (BENCHMARKS.md "GPU"): on a CUDA machine, train a few
# models briefly on the synthetic market in fp32, bf16 and fp16, check that the precisions agree,
# train once more with the data kept in host memory (pinned, asynchronous batch copies), run DDP
# over 2 GPUs when there are 2, and print throughput. Exits 1 without CUDA or on a disagreement.
#
#   bash scripts/gpu_check.sh                       # or: make gpu-check
#   MODELS="lstm han" EPOCHS=5 bash scripts/gpu_check.sh
#
# PYTHON (default .venv/bin/python, else python3), MODELS, EPOCHS, OUT (the work folder) and
# TOL (largest allowed |val loss - fp32 val loss|) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MODELS=${MODELS:-"lstm alstm adv_lstm"}
EPOCHS=${EPOCHS:-3}
TOL=${TOL:-0.01}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/lightquant-gpu-check.XXXXXX")}
export SWANLAB_MODE=disabled   # no tracking runs from a check

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  torch_info=$("$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo "no torch")
  echo "gpu_check: CUDA is not available to $PYTHON ($torch_info): nothing checked." >&2
  echo "Run it on a GPU machine with a CUDA build of torch (README \"GPU\": make install TORCH_SPEC=...)." >&2
  exit 1
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0))"
echo "work folder: $OUT"

COMMON=(trainer.device=cuda "trainer.epochs=$EPOCHS" "trainer.early_stopping.patience=$EPOCHS"
        "paths.result_dir=$OUT/result" save_predictions=false export=false leaderboard=null backtest.enabled=false)
run() {  # run <name> <train.py overrides...>: one training run, its log in $OUT/<name>.out
  local name=$1; shift
  local t0=$SECONDS
  if ! "$PYTHON" train.py "${COMMON[@]}" "hydra.run.dir=$OUT/$name" "$@" >"$OUT/$name.out" 2>&1; then
    echo "FAILED: $name (log: $OUT/$name.out)" >&2; tail -20 "$OUT/$name.out" >&2; exit 1
  fi
  echo "  $name: $((SECONDS - t0)) s"
}

for model in $MODELS; do
  extra=()
  case $model in han|stocknet|pen) extra=(use_news=true) ;; esac
  for precision in 32 bf16 16; do
    run "$model-$precision" "model=$model" "trainer.precision=$precision" "${extra[@]}"
  done
done
if [[ $("$PYTHON" -c "import torch; print(torch.cuda.device_count())") -ge 2 ]]; then
  echo "DDP over 2 GPUs, batch 32 x 2 processes, against one GPU with batch 64 (no dropout: same updates):"
  run lstm-1gpu model=lstm model.dropout=0.0 dataset.batch_size=64
  t0=$SECONDS
  "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=2 train.py trainer=ddp "${COMMON[@]}" \
      model=lstm model.dropout=0.0 dataset.batch_size=32 "hydra.run.dir=$OUT/lstm-ddp2" >"$OUT/lstm-ddp2.out" 2>&1 \
    || { echo "FAILED: DDP (log: $OUT/lstm-ddp2.out)" >&2; tail -20 "$OUT/lstm-ddp2.out" >&2; exit 1; }
  echo "  lstm-ddp2: $((SECONDS - t0)) s"
fi

PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$OUT" "$TOL" $MODELS <<'PYEOF'
"""Summary: throughput and agreement of the runs above, and the host-resident data path."""
import sys
from pathlib import Path

import torch

out, tol, models = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
bad = []


def history(name):
    return torch.load(out / name / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")["history"]


def row(name, ref=None):
    h = history(name)
    speed = sorted(r["time/train_items_per_s"] for r in h[1:] or h)[len(h[1:] or h) // 2]  # median, after warm-up
    last = h[-1]
    diff = "" if ref is None else f"{last['val/loss'] - ref:+.4f}"
    print(f"{name:<18} {speed:>12,.0f} {last['val/loss']:>9.4f} {diff:>8} {last['val/accuracy']:>8.4f} "
          f"{last.get('gpu/mem_peak_mib', float('nan')):>9.0f} {last.get('gpu/util_pct', float('nan')):>5.0f} "
          f"{last.get('gpu/temp_c', float('nan')):>5.0f}")
    return last["val/loss"]


print(f"\n{'run':<18} {'items/s':>12} {'val loss':>9} {'vs fp32':>8} {'val acc':>8} {'peak MiB':>9} {'util':>5} {'temp':>5}")
for model in models:
    ref = row(f"{model}-32")
    for p in ("bf16", "16"):
        loss = row(f"{model}-{p}", ref)
        if abs(loss - ref) > tol:
            bad.append(f"{model} {p}: val loss {loss:.4f} vs fp32 {ref:.4f} (TOL={tol})")
if (out / "lstm-ddp2").is_dir():
    ref = row("lstm-1gpu")
    loss = row("lstm-ddp2", ref)
    if abs(loss - ref) > 1e-3:
        bad.append(f"DDP: val loss {loss:.4f} vs one process {ref:.4f}")

# Host-resident data (the path taken when the dataset does not fit on the GPU): the same epoch
# with batches gathered on the CPU and copied pinned + non_blocking must match GPU-resident data.
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402

import lightquant.training as run  # noqa: E402
from lightquant.engine import EarlyStopping, Trainer, seed_everything  # noqa: E402

with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base="1.3"):
    cfg = compose("train", overrides=["model.dropout=0.0"], return_hydra_config=True)
HydraConfig.instance().set_config(cfg)
data = run.build_data(cfg)
device = torch.device("cuda", 0)
losses = {}
for where, d in (("gpu", data.to(device)), ("host", data)):
    seed_everything(0)
    model = run.build_model(cfg, data)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tr = Trainer(model, opt, None, device=device, epochs=1, batch_size=64, seed=0, progress=False,
                 early_stopping=EarlyStopping(monitor="val/loss", mode="min"))
    h = tr.fit(d)[-1]
    losses[where] = h["val/loss"]
    print(f"data on {where:<4}: {h['time/train_items_per_s']:>10,.0f} items/s, val loss {h['val/loss']:.6f}")
if abs(losses["gpu"] - losses["host"]) > 1e-4:
    bad.append(f"host-resident data: val loss {losses['host']:.6f} vs GPU-resident {losses['gpu']:.6f}")

print()
if bad:
    print("GPU check FAILED:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("GPU check passed: precisions agree within TOL, host-resident data matches.")
PYEOF
