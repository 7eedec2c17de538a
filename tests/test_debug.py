"""The debug configs and the engine options behind them: limit_train_batches, overfit_batches,
profile_steps; debug=fast end to end through train.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lightquant.settings import EarlyStoppingSettings
from lightquant.training import build_data, train

from .conftest import ROOT, cpu_trainer


class Rows(torch.nn.Module):
    """A linear model on the last day that records which samples each training step saw."""

    def __init__(self, f: int):
        super().__init__()
        self.fc = torch.nn.Linear(f, 1)
        self.seen: list[list[int]] = []

    def forward(self, batch):
        if self.training:
            self.seen.append(batch.row.flatten().tolist())
        return self.fc(batch.x[:, -1]).squeeze(-1)


def fit(data, epochs: int, **kw) -> tuple[Rows, list[dict]]:
    model = Rows(data.features.shape[-1])
    trainer = cpu_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), None, epochs=epochs, batch_size=16,
                          seed=0, early_stopping=EarlyStoppingSettings(patience=None), progress=False, **kw)
    return model, trainer.fit(data)


def test_limit_and_overfit_batches(cfg_factory):
    data = build_data(cfg_factory())
    limited, _ = fit(data, 2, limit_train_batches=3)
    assert len(limited.seen) == 6 and limited.seen[0] != limited.seen[3]  # 3 steps an epoch, reshuffled
    over, history = fit(data, 30, overfit_batches=2)
    assert len(over.seen) == 60 and all(over.seen[i] == over.seen[i % 2] for i in range(60))  # the same 2 batches
    assert history[-1]["train/loss"] < history[0]["train/loss"]  # fitted on them
    with pytest.raises(ValueError, match="trainer.limit_train_batches=0"):
        fit(data, 1, limit_train_batches=0)


def test_shuffle_orders(cfg_factory):
    data = build_data(cfg_factory())
    n = len(data.splits["train"])

    def epochs(shuffle: str) -> list[list[int]]:  # the rows each epoch saw, in order
        seen = fit(data, 3, shuffle=shuffle)[0].seen
        steps = (n + 15) // 16
        return [sum(seen[e * steps : (e + 1) * steps], []) for e in range(3)]

    none = epochs("none")
    assert none[0] == none[1] == none[2] and none[0] == sorted(none[0])  # data order: rows by (stock, day)
    data_order = none[0]
    fresh = epochs("epoch")
    assert fresh[0] != data_order and fresh[1] != fresh[0] and sorted(fresh[1]) == data_order
    first, second, third = epochs("repeat")
    assert first == data_order and second != first
    perm = [data_order.index(r) for r in second]  # epoch 2 = data order permuted once ...
    assert third == [second[p] for p in perm]  # ... and epoch 3 by the same permutation again
    assert epochs("repeat")[1] == second  # the permutation comes from the seed


def test_debug_fast_runs_short_and_writes_no_export(cfg_factory, tmp_path):
    cfg = cfg_factory(["debug=fast", "trainer.epochs=2"])
    assert cfg.trainer.limit_train_batches == 10 and cfg.tracker.mode == "disabled" and cfg.leaderboard is None
    metrics = train(cfg)
    assert metrics["epochs_trained"] == 2 and "accuracy" in metrics["test"]
    assert not (tmp_path / "run" / "model.pth").exists() and not (tmp_path / "result").exists()


def test_debug_overfit_runs_the_same_batches_without_regularisation(cfg_factory):
    cfg = cfg_factory(["debug=overfit", "trainer.epochs=40"])
    assert cfg.trainer.overfit_batches == 3 and cfg.model.dropout == 0.0 and cfg.trainer.weight_decay == 0.0
    assert train(cfg)["epochs_trained"] == 40  # no early stopping: every epoch on the same batches


def test_debug_profile_writes_a_trace_and_the_ops_table(cfg_factory, tmp_path):
    train(cfg_factory(["debug=profile", "trainer.limit_train_batches=6", "trainer.profile_steps=3"]))
    prof = tmp_path / "run" / "profile"
    assert (prof / "trace.json").stat().st_size > 0 and "Self CPU" in (prof / "ops.txt").read_text()


@pytest.mark.slow
def test_train_py_debug_fast(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "debug=fast", f"hydra.run.dir={tmp_path / 'run'}",
                           f"paths.result_dir={tmp_path / 'result'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Test: accuracy" in (tmp_path / "run" / "train.log").read_text()
