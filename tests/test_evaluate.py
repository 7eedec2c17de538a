"""Evaluate from the exported file alone, backtest at the end of training, and the leaderboard."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lightquant.evaluation import leaderboard
from lightquant.evaluation.cli import main as cli_main
from lightquant.evaluation.evaluate import dataset_config, evaluate_export, model_and_config, model_data
from lightquant.evaluation.finish import leaderboard_row
from lightquant.training import build_data, train

from .conftest import CONF, ROOT, make_cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny LSTM run; the tests below only read its outputs."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = make_cfg(tmp, ["trainer.epochs=1", "backtest.top_k=2"])
    metrics = train(cfg)
    return {"cfg": cfg, "metrics": metrics, "run": tmp / "run", "result": tmp / "result",
            "ckpt": tmp / "result" / "synthetic" / "model_saved" / "lstm.pth"}


def test_training_backtests_the_test_split_and_appends_a_leaderboard_row(trained):
    run, m = trained["run"], trained["metrics"]
    bt = m["backtest"]
    assert bt["settings"]["strategy"] == "long_only" and bt["settings"]["top_k"] == 2
    assert bt["settings"]["limit_pct"] == 0.10 and bt["settings"]["stamp_duty_bps"] == 5.0  # the market's rules
    assert "planted" in bt["caution"] and bt["annual_return"] is None  # synthetic; a test period under a year
    assert {"annual_return", "sharpe", "max_drawdown", "calmar", "information_ratio", "hit_rate", "turnover",
            "n_days", "benchmark"} <= set(bt)
    assert bt["n_days"] == pd.read_csv(run / "predictions_test.csv")["date"].nunique()
    assert json.loads((run / "metrics.json").read_text())["backtest"]["sharpe"] == pytest.approx(bt["sharpe"])
    assert json.loads((run / "backtest_test.json").read_text())["sharpe"] == pytest.approx(bt["sharpe"])
    assert (run / "equity_test.png").read_bytes()[:4] == b"\x89PNG"

    board = leaderboard.read(trained["result"] / "synthetic" / "leaderboard.csv")
    assert len(board) == 1
    row = board.iloc[0]
    assert (row["model"], row["dataset"], row["seed"], bool(row["use_news"])) == ("lstm", "synthetic", 37, False)
    assert row["test_accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert row["val_mcc"] == pytest.approx(m["val"]["mcc"])
    assert row["bt_sharpe"] == pytest.approx(bt["sharpe"])
    assert row["bench_sharpe"] == pytest.approx(bt["benchmark"]["sharpe"])
    assert "model.hidden_size=16" in row["overrides"] and "seed=" not in row["overrides"]
    assert row["git_commit"]
    assert "| lstm | False |" in (trained["result"] / "synthetic" / "leaderboard.md").read_text()


def test_evaluate_from_the_exported_file_alone_reproduces_test_metrics(trained, tmp_path):
    ckpt = tmp_path / "elsewhere" / "lstm.pth"  # a copy, away from the run and its cache
    ckpt.parent.mkdir()
    shutil.copy(trained["ckpt"], ckpt)
    res = evaluate_export(ckpt, "test", tmp_path / "eval", cache_dir=str(tmp_path / "fresh_cache"), device="cpu",
                          backtest={"enabled": True, "strategy": "long_only", "top_k": 2, "cost_bps": 10.0})
    want = trained["metrics"]
    assert res["test"]["accuracy"] == pytest.approx(want["test"]["accuracy"], abs=1e-12)
    assert res["test"]["mcc"] == pytest.approx(want["test"]["mcc"], abs=1e-12)
    assert res["test"]["n"] == want["test"]["n"]
    assert res["test"]["loss"] == pytest.approx(want["test"]["loss"], abs=1e-5)
    assert res["backtest"]["sharpe"] == pytest.approx(want["backtest"]["sharpe"], rel=1e-6)
    mine = pd.read_csv(tmp_path / "eval" / "predictions_test.csv")
    theirs = pd.read_csv(trained["run"] / "predictions_test.csv")
    pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=1e-6)
    for name in ("metrics_test.json", "backtest_test.json", "equity_test.png"):
        assert (tmp_path / "eval" / name).is_file()


def test_evaluate_val_split_without_backtest(trained, tmp_path):
    res = evaluate_export(trained["ckpt"], "val", tmp_path, device="cpu", backtest={"enabled": False})
    assert res["val"]["accuracy"] == pytest.approx(trained["metrics"]["val"]["accuracy"], abs=1e-12)
    assert "backtest" not in res and not (tmp_path / "backtest_val.json").exists()
    assert json.loads((tmp_path / "metrics_val.json").read_text())["val"]["n"] == trained["metrics"]["val"]["n"]
    with pytest.raises(ValueError, match="split='valid'"):
        evaluate_export(trained["ckpt"], "valid", tmp_path)


def test_evaluate_on_an_incompatible_dataset_is_a_clear_error(trained, tmp_path):
    with pytest.raises(ValueError, match=r"trained on features .* use dataset.features=\[open,high"):
        evaluate_export(trained["ckpt"], "test", tmp_path, dataset={"features": ["close", "volume"]}, device="cpu")
    with pytest.raises(ValueError, match="look_back_window=7 .* dataset.look_back_window=7"):
        evaluate_export(trained["ckpt"], "test", tmp_path, dataset={"look_back_window": 5}, device="cpu")


def test_evaluate_on_another_compatible_dataset_uses_the_models_normalisation(trained, tmp_path):
    """Another synthetic market (other seed): its inputs are normalised with the statistics the model was
    trained with, the market context included, not with its own."""
    res = evaluate_export(trained["ckpt"], "test", tmp_path, dataset={"source": {"seed": 99}}, device="cpu")
    assert res["dataset"] == "synthetic" and res["test"]["n"] > 0 and "backtest" not in res  # backtest=None

    own = build_data(trained["cfg"])
    _, payload, cfg = model_and_config(trained["ckpt"], {"source": {"seed": 99}})
    other = model_data(payload, cfg)
    torch.testing.assert_close(other.norm_mean, payload["data"]["norm_mean"])
    torch.testing.assert_close(other.norm_std, own.norm_std)
    fresh = build_data(cfg)  # the same market normalised with its own statistics
    assert not torch.allclose(fresh.norm_mean, other.norm_mean)
    ok = other.row_ready  # rows a window may end on hold finite features (the others are zero-filled)
    raw = fresh.features[ok] * fresh.norm_std + fresh.norm_mean
    torch.testing.assert_close(other.features[ok] * other.norm_std + other.norm_mean, raw, rtol=1e-4, atol=1e-4)
    first = other.row_day == 30  # the market context is the mean of the normalised features that day
    torch.testing.assert_close(other.market[30], other.features[first].mean(0), rtol=1e-5, atol=1e-5)


def test_dataset_config_replaces_or_merges():
    trained = {"name": "csmd50", "root": "/a", "source": {"_target_": "X", "name": "csmd50"}, "features": ["close"],
               "look_back_window": 7}
    assert dataset_config(trained, None) == trained
    merged = dataset_config(trained, {"root": "/b", "source": {"name": "csmd50"}})
    assert merged["root"] == "/b" and merged["source"]["_target_"] == "X" and merged["look_back_window"] == 7
    whole = {"name": "csmd300", "source": {"_target_": "Y"}, "features": ["close"]}
    assert dataset_config(trained, whole) == whole


def test_evaluate_config_composes():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        plain = compose("evaluate", overrides=["ckpt=m.pth", "split=val"])
        other = compose("evaluate", overrides=["ckpt=m.pth", "dataset=csmd50", "dataset.root=/data/CSMD50"])
        partial = compose("evaluate", overrides=["ckpt=m.pth", "+dataset.root=/data/CSMD50", "backtest.cost_bps=5"])
    assert plain.split == "val" and plain.get("dataset") is None and plain.backtest.enabled
    assert other.dataset.name == "csmd50" and other.dataset.source.price_dirs[0] == "/data/CSMD50/price"
    assert dict(partial.dataset) == {"root": "/data/CSMD50"} and partial.backtest.cost_bps == 5


def test_evaluate_cli(trained, tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "evaluate.py", f"ckpt={trained['ckpt']}", "split=val", "device=cpu",
           f"hydra.run.dir={out}", f"paths.cache_dir={trained['run'].parent / 'cache'}", "backtest.strategy=long_short"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((out / "metrics_val.json").read_text())
    assert saved["val"]["accuracy"] == pytest.approx(trained["metrics"]["val"]["accuracy"])
    assert saved["backtest"]["settings"]["strategy"] == "long_short"
    assert (out / "equity_val.png").is_file() and "accuracy" in (out / "evaluate.log").read_text()


def test_news_model_predictions_carry_news_and_backtest_can_be_off(cfg_factory, tmp_path):
    cfg = cfg_factory(["model=han", "use_news=true", "trainer.epochs=1", "backtest.enabled=false", "leaderboard=null"])
    metrics = train(cfg)
    assert "backtest" not in metrics and not (tmp_path / "run" / "backtest_test.json").exists()
    assert not list((tmp_path / "result").glob("*/leaderboard.csv"))
    res = evaluate_export(tmp_path / "result" / "synthetic" / "model_saved" / "han.pth", "test", tmp_path / "eval",
                          device="cpu", backtest={"enabled": True, "strategy": "long_only", "top_k": 3, "cost_bps": 0})
    assert res["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-12)
    pred = pd.read_csv(tmp_path / "eval" / "predictions_test.csv")
    assert {"news_1", "news_date_1", "news_weight_1"} <= set(pred.columns)
    assert res["backtest"]["settings"]["top_k"] == 3


def test_csmd50_train_then_evaluate_from_export(cfg_factory, csmd50_root, tmp_path):
    cfg = cfg_factory(["dataset=csmd50", f"dataset.root={csmd50_root}", "model=lstm", "model.hidden_size=16",
                       "trainer.epochs=1", "trainer.device=cpu"], tiny=False)
    metrics = train(cfg)
    assert metrics["backtest"]["n_days"] > 20
    ckpt = tmp_path / "result" / "csmd50" / "model_saved" / "lstm.pth"
    res = evaluate_export(ckpt, "test", tmp_path / "eval", device="cpu", backtest={"enabled": True})
    assert res["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-12)
    assert res["backtest"]["sharpe"] == pytest.approx(metrics["backtest"]["sharpe"], rel=1e-6)
    assert len(leaderboard.read(tmp_path / "result" / "csmd50" / "leaderboard.csv")) == 1


# ------------------------------------------------------------------ leaderboard

def _row(model: str, seed: int, mcc: float, **extra) -> dict:
    return {"model": model, "use_news": False, "seed": seed, "overrides": "", "test_mcc": mcc, **extra}


def test_leaderboard_rows_accumulate_and_summarize(tmp_path):
    path = tmp_path / "synthetic" / "leaderboard.csv"
    for seed, mcc in [(1, 0.1), (2, 0.2), (3, 0.3)]:
        leaderboard.append(path, _row("lstm", seed, mcc))
    df = leaderboard.append(path, _row("alstm", 1, 0.5, bt_sharpe=1.25))  # a new column joins the file
    board = leaderboard.read(path)
    assert len(board) == 4 and list(board["seed"]) == [1, 2, 3, 1] and len(df) == 4
    assert pd.isna(board["bt_sharpe"][0]) and board["bt_sharpe"][3] == 1.25
    assert board["overrides"].tolist() == [""] * 4

    table = leaderboard.summarize(board, by=["model", "use_news", "overrides"]).set_index("model")
    assert table.loc["lstm", "n"] == 3 and table.loc["lstm", "test_mcc"] == "0.2000 ± 0.1000"  # sample std
    assert table.loc["alstm", "n"] == 1 and table.loc["alstm", "test_mcc"] == "0.5000"
    md = path.with_suffix(".md").read_text()
    assert "0.2000 ± 0.1000" in md and md.count("| lstm |") == 4  # 1 summary row + 3 runs
    reference = tmp_path / "plain.txt"
    reference.write_text("x")  # the leaderboard keeps ordinary file permissions (not mkstemp's 0600)
    assert path.stat().st_mode == path.with_suffix(".md").stat().st_mode == reference.stat().st_mode
    with pytest.raises(ValueError, match="grouping columns"):
        leaderboard.summarize(board, by=["optimizer"])


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        leaderboard.append(path, _row(f"m{worker}", i, 0.01 * i))


def test_concurrent_appends_lose_no_rows(tmp_path):
    path = str(tmp_path / "leaderboard.csv")
    ctx = mp.get_context("fork")  # sweep workers are separate processes
    procs = [ctx.Process(target=_append_many, args=(path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    board = leaderboard.read(path)
    assert len(board) == 60
    assert sorted(zip(board["model"], board["seed"])) == sorted((f"m{w}", i) for w in range(4) for i in range(15))


def test_leaderboard_row_and_cli(tmp_path, capsys):
    metrics = {"val": {"accuracy": 0.5, "mcc": 0.1}, "test": {"accuracy": 0.6, "mcc": 0.2, "n": 10},
               "backtest": {"sharpe": 1.5, "annual_return": 0.2, "benchmark": {"sharpe": 0.5},
                            "settings": {"strategy": "long_only", "top_k": 3, "cost_bps": 5.0, "periods_per_year": 252}}}
    row = leaderboard_row(model="alstm", dataset="synthetic", use_news=True, seed=2, metrics=metrics, output_dir="o",
                          commit="abc", overrides=["seed=2", "model.hidden_size=8", "paths.cache_dir=/x",
                                                   "hydra.run.dir=/y", "+trainer.lr=0.1", "model=alstm",
                                                   "tracker=disabled"])
    assert row["overrides"] == "+trainer.lr=0.1 model.hidden_size=8"
    assert (row["bt_strategy"], row["bt_top_k"], row["bt_sharpe"], row["bench_sharpe"]) == ("long_only", 3, 1.5, 0.5)
    assert row["test_mcc"] == 0.2 and row["val_f1"] is None and row["use_news"] is True

    assert cli_main(["leaderboard", "--result-dir", str(tmp_path)]) == 1  # nothing yet: says so
    assert "No leaderboard" in capsys.readouterr().err
    for seed, sharpe in [(1, 1.0), (2, 2.0)]:
        leaderboard.append(tmp_path / "synthetic" / "leaderboard.csv", {**row, "seed": seed, "bt_sharpe": sharpe})
    assert cli_main(["leaderboard", "--result-dir", str(tmp_path), "--format", "markdown", "--runs"]) == 0
    out = capsys.readouterr().out
    assert "1.5000 ± 0.7071" in out and "| alstm | True |" in out
    assert leaderboard.git_commit(tmp_path) == "unknown"  # not a git checkout
    assert leaderboard.git_commit() not in ("", "unknown")  # this repository
