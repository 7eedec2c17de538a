"""The training engine: early stopping, weight decay, clipping, checkpoints, failure modes."""

from __future__ import annotations

import math

import pytest
import torch

from lightquant.batch import Batch
from lightquant.data import load_market_data
from lightquant.data.synthetic import SyntheticSource
from lightquant.engine import EarlyStopping, seed_everything
from lightquant.models import LSTM, AdvLSTM
from lightquant.settings import EarlyStoppingSettings

from .conftest import cpu_trainer

SPLITS = {"train_end": "2021-09-30", "val_end": "2021-11-30"}


@pytest.fixture(scope="module")
def data():
    src = SyntheticSource(n_stocks=5, end="2021-12-31", price_signal=0.3, news_signal=0.0)
    return load_market_data(src, features=["open", "high", "low", "close", "volume"], look_back_window=5, splits=SPLITS)


def make_trainer(model, tmp_path=None, optimizer=None, **kw):
    opts = dict(epochs=2, batch_size=32, seed=1,
                early_stopping=EarlyStoppingSettings(monitor="val/mcc", mode="max", patience=5),
                checkpoint_dir=tmp_path, progress=False)
    opts.update(kw)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    return cpu_trainer(model, optimizer, None, **opts)


def lstm(**kw):
    seed_everything(0)
    return LSTM(input_size=5, hidden_size=8, layers=1, dropout=0.0, **kw)


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(
    "mode,values,best_epoch,stops_after",
    [("max", [0.1, 0.3, 0.2, 0.25, 0.29], 2, 5), ("min", [1.0, 0.9, 0.95, 0.8, 0.85], 4, None)],
)
def test_early_stopping_counts_patience(mode, values, best_epoch, stops_after):
    es = EarlyStopping(monitor="val/x", mode=mode, patience=3)
    stopped = None
    for epoch, v in enumerate(values, 1):
        es.step({"val/x": v}, epoch)
        if es.should_stop and stopped is None:
            stopped = epoch
    assert es.best_epoch == best_epoch and stopped == stops_after


def test_early_stopping_nan_is_never_best_and_bad_config_is_clear():
    es = EarlyStopping(monitor="val/x", mode="max", patience=2)
    es.step({"val/x": float("nan")}, 1)
    assert es.best is None
    with pytest.raises(KeyError, match="early_stopping.monitor"):
        es.step({"val/y": 1.0}, 2)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


def test_fit_restores_best_weights(data, tmp_path):
    tr = make_trainer(lstm(), tmp_path, epochs=6)
    history = tr.fit(data)
    best = tr.early_stopping.best_epoch
    logged = next(h for h in history if h["epoch"] == best)
    again = tr.evaluate(data, "val")
    assert again["mcc"] == pytest.approx(logged["val/mcc"], abs=1e-12)
    assert again["loss"] == pytest.approx(logged["val/loss"], rel=1e-6)
    ckpt = torch.load(tmp_path / "best.pt", weights_only=True)
    assert ckpt["epoch"] == best
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k])


def test_checkpoints_are_complete_and_load_safely(data, tmp_path):
    model = lstm()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
    tr = cpu_trainer(model, opt, sched, epochs=2, batch_size=32, seed=1, checkpoint_dir=tmp_path,
                     checkpoint_extra={"config": {"a": 1}})
    tr.fit(data)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["config"] == {"a": 1}
    assert {"model", "optimizer", "scheduler", "early_stopping", "rng", "history"} <= set(last)
    assert last["scheduler"]["last_epoch"] == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_batch_order_is_seeded_and_changes_every_epoch(data):
    tr = make_trainer(lstm())
    a = tr._epoch_order(100)
    tr.epoch = 1
    b = tr._epoch_order(100)
    assert not torch.equal(a, b)
    tr.epoch = 0
    assert torch.equal(a, tr._epoch_order(100))


def test_weight_decay_really_applies(data):
    norms = {}
    for wd in (0.0, 1.0):
        model = lstm()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=wd)
        make_trainer(model, optimizer=opt, epochs=2).fit(data)
        norms[wd] = flat(model).norm().item()
    assert norms[1.0] < 0.9 * norms[0.0]


def test_gradient_clipping_really_applies(data):
    weights = {}
    for clip in (None, 1e-4):
        model = lstm()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        make_trainer(model, optimizer=opt, epochs=1, gradient_clip_val=clip).fit(data)
        weights[clip] = flat(model)
    start = flat(lstm())
    # SGD step size is bounded by lr * clip per step when clipping
    assert (weights[1e-4] - start).norm() < 0.1 * (weights[None] - start).norm()


def test_engine_adds_the_models_extra_loss(data):
    finals = []
    for eps in (0.0, 0.5):
        seed_everything(0)
        model = AdvLSTM(input_size=5, hidden_size=8, attention_size=8, layers=1, dropout=0.0, epsilon=eps)
        make_trainer(model, epochs=1).fit(data)
        finals.append(flat(model))
    assert not torch.allclose(finals[0], finals[1])


class NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch.x[:, -1, 0] * self.w + math.nan


def test_non_finite_loss_stops_with_advice(data):
    with pytest.raises(FloatingPointError, match="trainer.lr"):
        make_trainer(NaNModel()).fit(data)


def test_bad_trainer_arguments_are_clear(data):
    with pytest.raises(ValueError, match="trainer.epochs"):
        make_trainer(lstm(), epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        make_trainer(lstm(), batch_size=0)
