"""End to end through the real config: training.train, train.py, outputs, export, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lightquant.export import load_model
from lightquant.training import build_data, optimized_metric, train

from .conftest import ROOT, TINY

MODELS = ["lstm", "bilstm", "alstm", "adv_lstm"]


@pytest.mark.parametrize("model", MODELS)
def test_train_writes_metrics_checkpoints_and_export(cfg_factory, tmp_path, model):
    cfg = cfg_factory([f"model={model}", "trainer.epochs=1"])
    metrics = train(cfg)
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"] == model and saved["dataset"] == "synthetic"
    for split in ("val", "test"):
        assert {"accuracy", "mcc", "f1", "loss", "up_share", "n"} <= set(saved[split])
        assert 0.0 <= saved[split]["accuracy"] <= 1.0 and saved[split]["n"] > 0
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()
    assert "_target_" in (out / "config.yaml").read_text()
    assert metrics["test"] == saved["test"]

    # The exported file alone rebuilds a model that predicts exactly like the trained one.
    path = tmp_path / "result" / "synthetic" / "model_saved" / f"{model}.pth"
    net, payload = load_model(path)
    assert payload["data"]["feature_names"] == list(cfg.dataset.features)
    assert payload["train_config"]["model"]["_target_"] == cfg.model._target_
    data = build_data(cfg)
    batch = data.batch("test", torch.arange(len(data.splits["test"])))
    with torch.no_grad():
        prob = torch.sigmoid(net(batch))
    acc = int(((prob >= 0.5).float() == batch.y).sum()) / len(batch)
    assert acc == pytest.approx(saved["test"]["accuracy"], abs=1e-9)


def test_same_seed_same_metrics_different_seed_different(cfg_factory):
    a = train(cfg_factory(["trainer.epochs=2"]))
    b = train(cfg_factory(["trainer.epochs=2"]))
    c = train(cfg_factory(["trainer.epochs=2", "seed=3"]))
    assert a["val"] == b["val"] and a["test"] == b["test"]
    assert a["val"] != c["val"]


def test_num_threads_sets_torchs_thread_count(cfg_factory):
    before = torch.get_num_threads()
    try:
        train(cfg_factory(["trainer.epochs=1", "trainer.num_threads=2"]))
        assert torch.get_num_threads() == 2
        train(cfg_factory(["trainer.epochs=1"]))  # null: the policy, capped by torch's default (1 in the tests)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_input_size_mismatch_is_a_clear_error(cfg_factory):
    with pytest.raises(ValueError, match="model.input_size=7"):
        train(cfg_factory(["model.input_size=7"]))


def test_optimized_metric():
    assert optimized_metric({"val": {"mcc": 0.25}}, "val/mcc") == 0.25
    with pytest.raises(FloatingPointError):
        optimized_metric({"val": {"mcc": float("nan")}}, "val/mcc")
    with pytest.raises(KeyError, match="optimized_metric"):
        optimized_metric({"val": {"mcc": 0.1}}, "val/sharpe")


def test_cli_entry_point(tmp_path):
    """`python train.py ...` as a user types it: a Hydra run dir with log, config and metrics."""
    run_dir = tmp_path / "cli"
    cmd = [sys.executable, "train.py", *TINY, "trainer.epochs=1", f"hydra.run.dir={run_dir}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.result_dir={tmp_path / 'result'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "Test: accuracy" in log and "epoch 1/1" in log and "torch " in log
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["n"] > 0
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (tmp_path / "result" / "synthetic" / "model_saved" / "lstm.pth").is_file()


@pytest.mark.parametrize("model", MODELS)
def test_csmd50_trains_every_model(cfg_factory, csmd50_root, tmp_path, model):
    cfg = cfg_factory(["dataset=csmd50", f"dataset.root={csmd50_root}", f"model={model}",
                       "model.hidden_size=16", "trainer.epochs=1", "trainer.device=cpu"], tiny=False)
    metrics = train(cfg)
    assert metrics["test"]["n"] > 500 and metrics["val"]["n"] > 500
    assert (tmp_path / "result" / "csmd50" / "model_saved" / f"{model}.pth").is_file()
