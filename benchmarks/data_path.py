"""Section 2: the data path. The engine's batches (``MarketData.batch``: one gather from the
flat feature table per batch) against the per-sample pipeline typical research code uses:
a ``torch.utils.data.Dataset`` whose ``__getitem__`` slices a pandas DataFrame for one
sample's window, batched by a ``DataLoader``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import (
    PLAN,
    Section,
    Settings,
    Table,
    Target,
    build,
    fmt,
    interleaved,
    median,
    paired_ratio,
    subset,
)
from benchmarks.loops import BareLoop, engine, twin
from lightquant.batch import Batch

GOAL = 20.0
DESCRIPTION = (
    "Samples/s of delivering training batches. **Engine**: `MarketData.batch(split, idx)` for a shuffled "
    "epoch: per batch, one index computation and one gather from the flat (rows, features) table "
    "(it also returns the fields other models need: market context, movement history, stock and date "
    "ids). **Baseline** (written here, `benchmarks/data_path.py`, as typical research code does it): one "
    "DataFrame per stock holding the *same already-computed, normalised features* (so the baseline "
    "does no feature work at all), a `Dataset` whose `__getitem__` takes one sample's window with "
    "`frame.iloc[end-T+1:end+1][features].to_numpy()` and its label, and a shuffling `DataLoader` "
    "with the default collate and `num_workers=0` (the same single process and thread count as "
    "the engine; worker processes would divide its time by at most the number of free cores). Both "
    "sides are checked to deliver identical windows. The second table puts each path under a "
    "training step of a price-only model (conf/benchmarks.yaml's price_model at its defaults, AdamW, clipping), which bounds the end-to-end gain by the model's "
    "own compute."
)


class DataFrameWindows(Dataset):
    """Per-sample windows sliced out of per-stock DataFrames (the research-code baseline)."""

    def __init__(self, data, split: str = "train"):
        cols = list(data.feature_names)
        table = pd.DataFrame(data.features.cpu().numpy(), columns=cols)
        table["stock"] = data.row_stock.cpu().numpy()
        table["day"] = data.row_day.cpu().numpy()
        self.frames = {k: f.reset_index(drop=True) for k, f in table.groupby("stock")}  # sorted by day within stock
        row_stock = data.row_stock.cpu().numpy()  # rows are sorted by (stock, day)
        s = data.splits[split]
        end = s.end_row.cpu().numpy()
        stock = row_stock[end]
        pos = end - np.searchsorted(row_stock, stock)  # the sample's last day within its stock's frame
        self.samples = list(zip(stock.tolist(), pos.tolist(), s.y.cpu().tolist()))
        self.cols, self.T = cols, data.look_back_window

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        stock, pos, y = self.samples[i]
        window = self.frames[stock].iloc[pos - self.T + 1 : pos + 1][self.cols].to_numpy(dtype=np.float32)
        return torch.tensor(window), torch.tensor(y, dtype=torch.float32)


def engine_batches(data, batch: int, seed: int = 0):
    order = torch.randperm(len(data.splits["train"]), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(order), batch):
        yield data.batch("train", order[i : i + batch])


def check_same_windows(data, ds: DataFrameWindows, n: int = 32) -> None:
    idx = torch.linspace(0, len(ds) - 1, n).long()
    ref = data.batch("train", idx)
    got = torch.stack([ds[int(i)][0] for i in idx])
    if not torch.equal(got, ref.x) or not torch.equal(torch.stack([ds[int(i)][1] for i in idx]), ref.y):
        raise AssertionError("the DataFrame baseline and the engine deliver different windows")


def _drain(batches) -> int:
    n = 0
    for b in batches:
        n += len(b[1]) if isinstance(b, list) else len(b)
    return n


class LoaderLoop(BareLoop):
    """The bare loop fed by the DataFrame DataLoader (x and y only: what a price-only model reads)."""

    def __init__(self, model, loader):
        super().__init__(model, None, loader.batch_size)
        self.loader = loader

    def epoch(self) -> int:
        self.model.train()
        n = 0
        for x, y in self.loader:
            z = torch.zeros(len(y), dtype=torch.long)
            self.step(Batch(x=x, y=y, stock=z, date=z, row=z))
            n += len(y)
        return n


def section(s: Settings) -> Section:
    from benchmarks.quality import SMOKE_DATA

    t0 = time.perf_counter()
    _, data, model = build([f"model={PLAN['price_model']}", *(SMOKE_DATA if s.mode == "smoke" else [])], s.out_dir / "cache")
    n = min(s.pick(256, 4096, 16384), len(data.splits["train"]))
    data = subset(data, "train", n)
    ds = DataFrameWindows(data)
    check_same_windows(data, ds)
    sec = Section(2, "Data path", DESCRIPTION)
    rows, rows_train, results = [], [], []
    for batch in (64, 512):
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0)
        times = interleaved({"engine": lambda b=batch: _drain(engine_batches(data, b)), "dataframe": lambda ld=loader: _drain(ld)},
                            s.n_reps)
        ratio = paired_ratio(times["dataframe"], times["engine"])
        rows.append([batch, n, fmt(n / median(times["engine"]), 0), fmt(n / median(times["dataframe"]), 0),
                     f"{ratio:.1f}", "yes" if ratio >= GOAL else "**no**"])
        # Under a training step: the engine's loop vs the same bare loop fed by the DataLoader.
        n_train = min(n, s.pick(128, 1024, 4096))
        small = subset(data, "train", n_train)
        tr = engine(twin(model), batch)
        small_loader = DataLoader(torch.utils.data.Subset(ds, range(n_train)), batch_size=batch, shuffle=True)
        loop = LoaderLoop(twin(model), small_loader)
        tt = interleaved({"engine": lambda t=tr, d=small: t.train_epoch(d), "dataframe": loop.epoch}, max(2, s.n_reps // 2))
        r2 = paired_ratio(tt["dataframe"], tt["engine"])
        rows_train.append([batch, n_train, fmt(n_train / median(tt["engine"]), 0),
                           fmt(n_train / median(tt["dataframe"]), 0), f"{r2:.2f}"])
        results.append({"batch": batch, "samples": n, "ratio": ratio, "times": times, "train_ratio": r2, "train_times": tt})
    sec.tables.append(Table(f"Batches only, {s.n_reps} interleaved epochs (samples/s: medians on this machine)",
                            ["batch", "samples", "engine samples/s", "DataFrame+DataLoader samples/s",
                             "engine / baseline", f">= {GOAL:.0f}"], rows))
    sec.tables.append(Table(f"Under a {PLAN['price_model']} training step (context, no target)",
                            ["batch", "samples", "engine training samples/s", "baseline training samples/s",
                             "engine / baseline"], rows_train))
    worst = min(r["ratio"] for r in results)
    sec.targets.append(Target("engine / DataFrame pipeline, batches only (worst batch size)", worst, f">= {GOAL:.0f}",
                              worst >= GOAL))
    sec.data = {"results": results}
    sec.seconds = time.perf_counter() - t0
    return sec
