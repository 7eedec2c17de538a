"""The research code's side of section 10's comparison: training epochs of one of its models through
its own training loop, timed in this process, printed as one JSON line.

The research code is the script collection this project replaces (github.com/ECNU-CILAB/LightQuant:
``model/``, ``single_exp/train.py``); ``--root`` is a checkout of it, which this project neither ships
nor downloads. Its models are imported from there unchanged; the loop is the one its
``single_exp/train.py`` runs: a map-style dataset of precomputed windows read one sample at a time
by a ``DataLoader`` (default collation, shuffled, batch 64), sigmoid outputs with ``nn.BCELoss``,
Adam, gradient-norm clipping at 5 and ``loss.item()`` every step. The inputs are random windows of
the same shape as the project's side (the speed of these models does not depend on the values).

    python benchmarks/research_child.py --root ~/src/research-lightquant --model lstm --items 2048 --reps 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

#: the settings both sides run with: the research code's run.py defaults where they exist
#: (5 price features, LSTM 128 units x 2 layers, dropout 0.1, a 7-day window); SCINet with a window
#: its tree divides evenly (8 days, 2 levels), 3 horizons (its pred_len counts the current day, so 4),
#: kernel 5 and its fixed dropout 0.3, convolutions 60 wide (its hidden_dim multiplies the features: 12 x 5)
FEATURES = 5
SETTINGS = {
    "lstm": {"window": 7, "research": {"input_size": FEATURES, "hidden_size": 128, "num_layers": 2, "dropout": 0.1},
             "project": ["model.hidden_size=128", "model.layers=2", "model.dropout=0.1", "dataset.look_back_window=7"]},
    "scinet": {"window": 8, "research": {"input_len": 8, "pred_len": 4, "input_dim": FEATURES, "hidden_dim": 12,
                                         "SCINet_Layers": 2},
               "project": ["model.hidden_size=60", "model.SCINet_Layers=2", "model.pred_len=3", "model.kernel_size=5",
                           "model.dropout=0.3", "dataset.look_back_window=8"]},
}


def build(name: str, root: Path):
    sys.path.insert(0, str(root))
    if name == "lstm":
        from model.LSTM import LSTM

        return LSTM(**SETTINGS[name]["research"], output_size=1, batch_first=True), 1
    from model.SCINet import SCINet

    return SCINet(**SETTINGS[name]["research"]), SETTINGS[name]["research"]["pred_len"] - 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", type=Path, required=True, help="a checkout of the research code (holding model/)")
    p.add_argument("--model", required=True, choices=sorted(SETTINGS))
    p.add_argument("--items", type=int, default=2048, help="training samples per epoch")
    p.add_argument("--reps", type=int, default=3, help="timed epochs after one warm-up epoch")
    a = p.parse_args()
    if not (a.root / "model").is_dir():
        raise SystemExit(f"--root {a.root}: no model/ folder there; give a checkout of the research code")

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model, horizons = build(a.model, a.root)
    x = torch.randn(a.items, SETTINGS[a.model]["window"], FEATURES)
    y = torch.randint(0, 2, (a.items, horizons)).float().squeeze(-1)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, drop_last=False)
    criterion, opt = nn.BCELoss(), torch.optim.Adam(model.parameters(), lr=3e-4)

    def epoch() -> None:
        model.train()
        total = 0.0
        for inputs, label in loader:
            loss = criterion(model(inputs).squeeze(), label.squeeze())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5)
            opt.step()
            total += loss.item()

    epoch()  # warm-up: allocations, kernel choice
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"model": a.model, "samples": a.items, "epoch_s": times,
                      "samples_per_s": a.items / statistics.median(times)}))


if __name__ == "__main__":
    main()
