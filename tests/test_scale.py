"""Scale-out: mixed precision, gradient accumulation, DDP through torchrun, resume (CPU only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightquant.batch import Batch
from lightquant.data import load_market_data
from lightquant.data.synthetic import SyntheticSource
from lightquant.engine import place_data, process_group, seed_everything
from lightquant.engine.device import gpu_stats, gpu_status, to_device
from lightquant.launch import main_only, rank_suffix, run_name
from lightquant.models import LSTM, AdvLSTM
from lightquant.settings import EarlyStoppingSettings
from lightquant.training import train

from .conftest import ROOT, TINY, cpu_trainer

SPLITS = {"train_end": "2021-09-30", "val_end": "2021-11-30"}


@pytest.fixture(scope="module")
def data():
    src = SyntheticSource(n_stocks=5, end="2021-12-31", price_signal=0.3, news_signal=0.0)
    return load_market_data(src, features=["open", "high", "low", "close", "volume"], look_back_window=5, splits=SPLITS)


class LastDay(torch.nn.Module):
    """Logits for H horizons from the window's last day: a model for masked (N, H) labels."""

    def __init__(self, horizons: int):
        super().__init__()
        self.lin = torch.nn.Linear(5, horizons)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.lin(batch.x[:, -1])  # (B, H)


def build(kind: str) -> torch.nn.Module:
    seed_everything(0)
    if kind == "lstm":
        return LSTM(input_size=5, hidden_size=8, layers=1, dropout=0.0)
    if kind == "adv_lstm":  # extra_loss per micro-batch; no random perturbation
        return AdvLSTM(input_size=5, hidden_size=8, attention_size=8, layers=1, dropout=0.0, epsilon=0.1)
    return LastDay(horizons=3)


def fit(model, data, checkpoint_dir=None, sgd=False, **kw):
    opts = {"epochs": 1, "batch_size": 64, "seed": 1, "progress": False,
            "early_stopping": EarlyStoppingSettings(monitor="val/loss", mode="min", patience=5), "checkpoint_dir": checkpoint_dir}
    opts.update(kw)
    opt = (torch.optim.SGD(model.parameters(), lr=0.1) if sgd  # the update is the gradient itself
           else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts["epochs"])
    tr = cpu_trainer(model, opt, sched, **opts)
    tr.fit(data)
    return tr


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ------------------------------------------------------------------ precision
def test_bf16_on_cpu_trains_close_to_fp32(data):
    runs = {p: fit(build("lstm"), data, epochs=3, precision=p) for p in ("32", "bf16")}
    h32, h16 = runs["32"].history, runs["bf16"].history
    assert all(torch.isfinite(torch.tensor(h["train/loss"])) for h in h16)
    for a, b in zip(h32, h16):
        assert b["train/loss"] == pytest.approx(a["train/loss"], abs=5e-3)
        assert b["val/loss"] == pytest.approx(a["val/loss"], abs=5e-3)
    w32, w16 = flat(runs["32"].model), flat(runs["bf16"].model)
    start = flat(build("lstm"))
    assert (w16 - w32).norm() < 0.1 * (w32 - start).norm()  # bf16 moved the weights the same way


def test_precision_errors_are_clear():
    with pytest.raises(ValueError, match="trainer.precision=16 needs CUDA.*bf16"):
        fit(build("lstm"), None, precision="16")
    with pytest.raises(ValueError, match="trainer.precision='fp8'"):
        fit(build("lstm"), None, precision="fp8")
    with pytest.raises(ValueError, match="trainer.accumulate_grad_batches=0"):
        fit(build("lstm"), None, accumulate_grad_batches=0)


# --------------------------------------------------------- gradient accumulation
@pytest.mark.parametrize("kind", ["lstm", "adv_lstm", "masked"])
def test_accumulation_gives_the_big_batch_update(data, kind):
    """batch 16 x 4 micro-batches = batch 64, also on the uneven last step, with masked labels
    (weighted by their real label counts) and with a model's extra_loss."""
    d = data.with_horizons(3) if kind == "masked" else data
    assert len(d.splits["train"]) % 64 != 0  # an uneven last step is part of the test
    if kind == "masked":
        assert not d.splits["train"].mask.all()
    big = fit(build(kind), d, batch_size=64, sgd=True)
    acc = fit(build(kind), d, batch_size=16, accumulate_grad_batches=4, sgd=True)
    torch.testing.assert_close(flat(acc.model), flat(big.model), rtol=0, atol=1e-6)
    assert acc.history[0]["train/loss"] == pytest.approx(big.history[0]["train/loss"], rel=1e-6)
    assert acc.effective_batch_size == 64


# ------------------------------------------------------------------- resume
class Interrupt(Exception):
    pass


class StopAfter:
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, row):
        if trainer.epoch == self.epoch:
            raise Interrupt


def test_resume_continues_exactly(data, tmp_path):
    """Optimizer, scheduler, early stopping, best weights, history and RNG (dropout) come back."""
    def model():
        seed_everything(0)
        return LSTM(input_size=5, hidden_size=8, layers=2, dropout=0.3)

    full = fit(model(), data, tmp_path / "full", epochs=5)
    with pytest.raises(Interrupt):
        fit(model(), data, tmp_path / "cut", epochs=5, callbacks=[StopAfter(3)])
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01)
    tr = cpu_trainer(m, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5),
                     epochs=5, batch_size=64, seed=1, progress=False, checkpoint_dir=tmp_path / "resumed",
                     early_stopping=EarlyStoppingSettings(monitor="val/loss", mode="min", patience=5))
    assert tr.resume(tmp_path / "cut") == tmp_path / "cut" / "last.pt"
    assert tr.epoch == 3
    tr.fit(data)
    drop_time = lambda h: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in h]
    assert drop_time(tr.history) == drop_time(full.history)
    assert torch.equal(flat(tr.model), flat(full.model))
    assert tr.evaluate(data, "test") == full.evaluate(data, "test")


def test_resume_from_a_missing_checkpoint_is_clear(data, tmp_path):
    tr = fit(build("lstm"), data)
    with pytest.raises(FileNotFoundError, match="trainer.resume="):
        tr.resume(tmp_path / "nothing")


@pytest.mark.slow
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(cfg_factory, tmp_path):
    """A train.py process killed (SIGKILL) after epoch 2 of 4, resumed with trainer.resume=<run dir>,
    ends with exactly the metrics of an uninterrupted run."""
    killed = tmp_path / "killed"
    overrides = [*TINY, "trainer.epochs=4", "trainer.early_stopping.monitor=val/loss", "trainer.early_stopping.mode=min"]
    env = {**os.environ, "LQ_KILL_AFTER_EPOCH": "2", "OMP_NUM_THREADS": "1",  # 1 thread, as in this process
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kill_after_epoch.py"), *overrides, f"hydra.run.dir={killed}",
         f"paths.cache_dir={tmp_path / 'cache'}", f"paths.result_dir={tmp_path / 'result'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    assert not (killed / "metrics.json").exists()

    full = train(cfg_factory(overrides[len(TINY):]))
    resumed = train(cfg_factory([*overrides[len(TINY):], f"trainer.resume={killed}"]))
    for key in ("val", "test", "best_epoch", "epochs_trained"):
        assert resumed[key] == full[key], key


# ---------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(cfg_factory, tmp_path):
    """torchrun, 2 gloo processes x batch 32 = one process x batch 64: same weights and metrics,
    one run dir (rank 0's logs, .hydra/ and outputs, rank 1's log beside them)."""
    single, single_weights = one_process(cfg_factory, tmp_path)
    cwd = tmp_path / "ddp"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"),
           "trainer=ddp", *TINY, *DDP_COMMON, "dataset.batch_size=32",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.result_dir={tmp_path / 'result'}"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = list((cwd / "outputs" / "synthetic" / "lstm").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    assert sorted(p.name for p in run.glob("*.log")) == ["train.log", "train.rank1.log"]
    assert (run / ".hydra" / "config.yaml").is_file()
    log = (run / "train.log").read_text()
    assert "Effective batch 64 = dataset.batch_size 32 x trainer.accumulate_grad_batches 1 x 2 process(es)" in log
    assert "rank 0/2 (gloo)" in log
    assert_trained_alike(run, single, single_weights)


DDP_COMMON = ["model.dropout=0.0", "trainer.epochs=2"]  # + batch 64 in one process, 32 in each of two


def one_process(cfg_factory, tmp_path) -> tuple[dict, dict]:
    """The reference of the distributed tests: metrics and final weights of one process at batch 64."""
    single = train(cfg_factory([*DDP_COMMON, "dataset.batch_size=64"]))
    return single, torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_trained_alike(run: Path, single: dict, single_weights: dict) -> None:
    """A distributed run dir ended with one process's metrics and weights."""
    ddp = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        for k in ("loss", "accuracy", "mcc", "f1"):
            assert ddp[split][k] == pytest.approx(single[split][k], abs=1e-5), (split, k)
    ddp_weights = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert ddp_weights.keys() == single_weights.keys()  # saved from the raw model: no "module." prefix
    for k, v in single_weights.items():
        torch.testing.assert_close(ddp_weights[k], v, rtol=0, atol=1e-5)


def test_each_rank_trains_a_disjoint_share_of_every_step():
    m = build("lstm")
    tr = cpu_trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), None, epochs=1, batch_size=4, seed=0,
                     accumulate_grad_batches=2)
    tr.world_size = 3  # as in one of 3 processes under torchrun
    for step in (torch.arange(24), torch.arange(7), torch.arange(2)):  # full, short, shorter than world_size
        seen = []
        for tr.rank in range(3):
            micro, live = tr._micro_batches(step)
            assert 1 <= len(micro) <= 2
            if live:
                seen += micro
            else:  # no items left for this rank: one item with weight 0, only to join the all-reduce
                assert len(micro) == 1 and len(micro[0]) == 1
        assert torch.equal(torch.cat(seen).sort().values, step)


def test_launch_mistakes_are_clear(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="trainer=ddp needs torchrun"), process_group(True, "cpu"):
        pass
    with process_group(False, "cpu"):  # a plain run: nothing to set up
        pass
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="without trainer=ddp"), process_group(False, "cpu"):
        pass
    with pytest.raises(RuntimeError, match="--multirun"), process_group(True, "cpu", multirun=True):
        pass


def test_ranks_share_one_run_dir_and_keep_their_own_logs(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    assert (run_name("2024-01-01_00-00-00"), main_only(".hydra"), rank_suffix()) == ("2024-01-01_00-00-00", ".hydra", "")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    assert (run_name("2024-01-01_00-00-00"), main_only(".hydra"), rank_suffix()) == ("abc", None, ".rank1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ValueError, match="--rdzv_id"):
        run_name("2024-01-01_00-00-00")


# --------------------------------------------------------- config and devices
def test_precision_and_accumulation_through_the_config(cfg_factory, tmp_path):
    m = train(cfg_factory(["trainer.precision=bf16", "trainer.accumulate_grad_batches=4", "dataset.batch_size=16",
                           "trainer.epochs=1"]))
    assert m["test"]["n"] > 0
    log = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert log["history"][0]["time/epoch_s"] > 0


class OOMModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_says_what_to_change(data):
    with pytest.raises(torch.OutOfMemoryError, match="lower dataset.batch_size and raise trainer.accumulate_grad_batches"):
        fit(OOMModel(), data)


def test_cpu_data_placement_and_stats(data):
    cpu = torch.device("cpu")
    assert place_data(data, cpu).device == cpu
    batch = data.batch("train", torch.arange(4))
    assert to_device(batch, cpu) is batch  # no copy when the data already lives there
    assert gpu_stats(cpu) == {}
    stats = {"gpu/mem_alloc_mib": 812.4, "gpu/mem_peak_mib": 2048.0, "gpu/util_pct": 97.0, "gpu/temp_c": 61.0}
    assert gpu_status(torch.device("cuda", 0), stats) == "gpu mem 812/2048 MiB (alloc/peak) util 97% 61C"
