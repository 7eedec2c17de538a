"""Section 3: precision. fp32 against bf16 autocast (``trainer.precision=bf16``) for the models
conf/benchmarks.yaml lists: the training speed ratio and how far the trained models' metrics move.

Two copies of each model start from the same weights and train epoch by epoch in alternation
(fp32 then bf16, then bf16 then fp32, ...) on the same batches, so the speed ratio is paired
and both see the same data order; after the last epoch both are evaluated in fp32 (as the
engine always evaluates).
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import PLAN, Section, Settings, Table, build, fmt, median, news_overrides, subset
from benchmarks.loops import engine, twin

DESCRIPTION = (
    "Training speed and result of `trainer.precision=bf16` (one autocast context around forward and "
    "loss, losses on fp32 logits, evaluation in fp32) against fp32, through the engine. Two copies of "
    "each model start from the same weights and train on the same batches in the same order, epochs "
    "alternating between the precisions (order swapped every epoch); speed-up = median over epochs of "
    "fp32 epoch time / bf16 epoch time (> 1: bf16 is faster). Metrics are the test split's after the "
    "last epoch (no early stopping), on a synthetic market with planted signals; Δ = bf16 − fp32. "
    "A GPU run adds CUDA rows when one is present."
)


def _trainers(model, batch: int, device: torch.device, data):
    """fp32 and bf16 training closures on twin models, and an evaluator for each."""
    t32, t16 = engine(twin(model), batch, "32", device=device), engine(twin(model), batch, "bf16", device=device)
    return (lambda: t32.train_epoch(data), lambda: t16.train_epoch(data)), (t32, t16), "engine"


def measure(model_name: str, epochs: int, device: torch.device, data_overrides: list[str], s: Settings) -> dict:
    _, data, model = build([f"model={model_name}", *news_overrides(model_name), *data_overrides], s.out_dir / "cache")
    if s.mode == "smoke":
        data = subset(data, "train", 256)
    data = data.to(device)
    (run32, run16), (ev32, ev16), how = _trainers(model, 64, device, data)
    times = {"32": [], "bf16": []}
    for e in range(epochs):
        for name, fn in ([("32", run32), ("bf16", run16)] if e % 2 == 0 else [("bf16", run16), ("32", run32)]):
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
        for ev in (ev32, ev16):
            ev.epoch += 1  # a new shuffle next epoch, the same for both
    speedup = median([a / b for a, b in zip(times["32"], times["bf16"])])
    test32, test16 = ev32.evaluate(data, "test"), ev16.evaluate(data, "test")
    return {"model": model_name, "device": str(device), "how": how, "epochs": epochs,
            "samples": len(data.splits["train"]), "speedup": speedup, "times": times, "fp32": test32, "bf16": test16}


def section(s: Settings) -> Section:
    from benchmarks.quality import SMOKE_DATA

    t0 = time.perf_counter()
    epochs = s.pick(1, 3, 8)
    data_overrides = SMOKE_DATA if s.mode == "smoke" else [f"dataset.source.n_stocks={s.pick(8, 20, 50)}"]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = [measure(m, epochs, d, data_overrides, s) for d in devices for m in PLAN["precision"]]
    rows = []
    for r in results:
        a, b = r["fp32"], r["bf16"]
        rows.append([r["model"], r["device"], r["samples"], fmt(r["samples"] / median(r["times"]["32"]), 0),
                     fmt(r["samples"] / median(r["times"]["bf16"]), 0), f"{r['speedup']:.2f}",
                     f"{a['accuracy']:.4f} / {b['accuracy']:.4f}", f"{b['accuracy'] - a['accuracy']:+.4f}",
                     f"{a['mcc']:.4f} / {b['mcc']:.4f}", f"{b['mcc'] - a['mcc']:+.4f}", f"{b['loss'] - a['loss']:+.4f}"])
    sec = Section(3, "Precision: fp32 vs bf16 autocast", DESCRIPTION)
    sec.tables.append(Table(
        f"{epochs} epoch(s) each, batch 64, synthetic market ({data_overrides[0] if data_overrides else 'default'}); "
        "samples/s are medians on this machine",
        ["model", "device", "train samples", "fp32 samples/s", "bf16 samples/s", "bf16 speed-up",
         "test acc fp32 / bf16", "Δ acc", "test MCC fp32 / bf16", "Δ MCC", "Δ test loss"], rows))
    sec.notes.append(f"Measured through: {results[0]['how']}.")
    if not torch.cuda.is_available():
        sec.notes.append("No GPU in this run: CPU rows only (bf16 on CPU uses AVX-512 BF16 / AMX where the CPU has them).")
    sec.data = {"results": results}
    sec.seconds = time.perf_counter() - t0
    return sec
