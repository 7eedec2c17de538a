"""Exports are never lost: every run exports into its own run dir; result/<dataset>/model_saved/
keeps the best run so far by the optimised metric, with the run it came from; evaluate accepts a
run dir, a checkpoint or an export."""

from __future__ import annotations

import torch

from lightquant.evaluation.evaluate import evaluate_export
from lightquant.export import load_model
from lightquant.training import train


def test_each_run_keeps_its_export_and_the_best_is_findable(cfg_factory, tmp_path):
    results = {}
    for seed in (1, 2, 3):
        cfg = cfg_factory([f"seed={seed}"])
        cfg.paths.output_dir = str(tmp_path / f"run{seed}")
        results[seed] = train(cfg)["val"]["mcc"]
        assert (tmp_path / f"run{seed}" / "model.pth").is_file()
    best_seed = max(results, key=lambda s: results[s])  # the first best on ties
    _, payload = load_model(tmp_path / "result" / "synthetic" / "model_saved" / "lstm.pth")
    sel = payload["selection"]
    assert sel["metric"] == "val/mcc" and sel["value"] == results[best_seed]
    assert sel["run_dir"] == str(tmp_path / f"run{best_seed}")


def test_evaluate_takes_a_run_dir_or_its_checkpoint(cfg_factory, tmp_path):
    cfg = cfg_factory()
    metrics = train(cfg)
    run = tmp_path / "run"
    for ckpt in (run, run / "checkpoints" / "best.pt", run / "model.pth"):
        res = evaluate_export(ckpt, "test", tmp_path / "eval", cache_dir=tmp_path / "cache", device="cpu")
        assert res["test"]["accuracy"] == metrics["test"]["accuracy"]
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    model, _ = load_model(run / "checkpoints" / "last.pt")
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)  # the best epoch's weights
