"""predict.py: tomorrow's ranked signals, as known at the scored day's close."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lightquant.data.synthetic import SyntheticSource
from lightquant.errors import ConfigError
from lightquant.evaluation.signals import predict_signals
from lightquant.training import train

from .conftest import ROOT, make_cfg

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def write_csmd(panel, root) -> None:
    """A panel in CSMD's published layout: price/<stock>.csv, news/<stock>/<day>.csv."""
    (root / "price").mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(panel.stocks):
        traded = np.isfinite(panel.prices["close"][s])
        cols = [panel.prices[f][s, traded] for f in ("open", "high", "low", "close", "adj_close", "volume")]
        lines = [f"{d},{','.join(f'{v[i]:.6f}' for v in cols)}" for i, d in enumerate(panel.dates[traded])]
        (root / "price" / f"{name}.csv").write_text("\n".join([HEADER, *lines]) + "\n")
    days = panel.news_date.astype("datetime64[D]").astype(str)
    for s, day, text in zip(panel.news_stock, days, panel.news_text):
        f = root / "news" / panel.stocks[s] / f"{day}.csv"
        f.parent.mkdir(parents=True, exist_ok=True)
        if not f.exists():
            f.write_text("code_name,ticker,created_at,text\n")
        with f.open("a") as fh:
            fh.write(f'{panel.stocks[s]},X,{day},"{text}"\n')


@pytest.fixture(scope="module")
def price_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("price_run")
    cfg = make_cfg(tmp, ["trainer.epochs=1"])
    train(cfg)
    return {"cfg": cfg, "run": tmp / "run"}


@pytest.fixture(scope="module")
def news_market(tmp_path_factory):
    """HAN (news, explains its predictions) trained on a synthetic market written as CSMD files."""
    tmp = tmp_path_factory.mktemp("news_run")
    panel = SyntheticSource(n_stocks=6, start="2021-01-04", end="2022-12-30", seed=5).load()
    root = tmp / "CSMD"
    write_csmd(panel, root)
    cfg = make_cfg(tmp, ["dataset=csmd50", f"dataset.root={root}", "model=han", "use_news=true", "encoder.dim=8",
                         "model.hidden_size=8", "trainer.epochs=1", "trainer.device=cpu",
                         "dataset.splits.train_end=2022-06-30", "dataset.splits.val_end=2022-09-30",
                         "dataset.splits.test_end=null"], tiny=False)
    train(cfg)
    return {"cfg": cfg, "run": tmp / "run", "root": root, "panel": panel}


def test_the_last_day_without_a_label_is_scored_and_ranked(price_run, tmp_path):
    res = predict_signals(price_run["run"], None, tmp_path, device="cpu")
    signals = pd.read_csv(tmp_path / f"signals_{res['date']}.csv")
    assert res["date"] == "2022-12-30" and res["n"] == len(signals) > 0  # the data's last day
    assert list(signals.columns[:4]) == ["stock", "date", "prob_up", "rank"]
    assert "label" not in signals and "return" not in signals  # unknown on the scored day
    assert (signals["rank"] == np.arange(1, len(signals) + 1)).all()
    assert signals["prob_up"].is_monotonic_decreasing and signals["prob_up"].between(0, 1).all()
    tested = pd.read_csv(price_run["run"] / "predictions_test.csv")
    assert tested["date"].max() < res["date"]  # evaluation never had that day: it has no next day yet


def test_a_signal_equals_the_prediction_evaluation_gave_that_day(price_run, tmp_path):
    tested = pd.read_csv(price_run["run"] / "predictions_test.csv")
    day = sorted(tested["date"].unique())[5]
    predict_signals(price_run["run"] / "checkpoints" / "best.pt", day, tmp_path, device="cpu")
    signals = pd.read_csv(tmp_path / f"signals_{day}.csv").set_index("stock")
    want = tested[tested["date"] == day].set_index("stock")
    assert sorted(signals.index) == sorted(want.index)
    np.testing.assert_allclose(signals.loc[want.index, "prob_up"], want["prob_up"], rtol=1e-5, atol=1e-6)


def test_news_signals_ignore_everything_after_the_scored_day(news_market, tmp_path):
    """Prices and texts after day t are altered and appended: t's signals, news behind them included,
    stay the same, and equal what evaluation gave on t with the training-time text encoder."""
    run, root = news_market["run"], news_market["root"]
    tested = pd.read_csv(run / "predictions_test.csv")
    day = sorted(tested["date"].unique())[10]
    before = pd.read_csv(predict_signals(run, day, tmp_path / "a", device="cpu")["path"])
    assert "news_1" in before and (before["news_1"].fillna("") != "").any()
    want = tested[tested["date"] == day].set_index("stock")
    np.testing.assert_allclose(before.set_index("stock").loc[want.index, "prob_up"], want["prob_up"], rtol=1e-5,
                               atol=1e-6)

    moved = tmp_path / "refreshed"  # the dataset refreshed in another folder: dataset.root moves its price/news dirs
    shutil.copytree(root, moved)
    rng = np.random.default_rng(0)
    for f in (moved / "price").glob("*.csv"):  # later prices scrambled, a week appended
        df = pd.read_csv(f)
        later = df["Date"] > day
        df.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= rng.uniform(0.5, 1.5, (int(later.sum()), 1))
        extra = df.tail(1).copy()
        new_days = pd.bdate_range(pd.Timestamp(df["Date"].max()) + pd.Timedelta(days=1), periods=5)
        extra = pd.concat([extra] * 5, ignore_index=True).assign(Date=new_days.strftime("%Y-%m-%d"))
        pd.concat([df, extra]).to_csv(f, index=False)
        news = moved / "news" / f.stem
        for d in pd.date_range(pd.Timestamp(day) + pd.Timedelta(days=1), periods=3):  # texts dated after t
            (news / f"{d.date()}.csv").write_text(f"code_name,ticker,created_at,text\n{f.stem},X,{d.date()},利好 利好\n")
    after = pd.read_csv(predict_signals(run, day, tmp_path / "b", dataset={"root": str(moved)}, device="cpu")["path"])
    pd.testing.assert_frame_equal(after, before)
    latest = predict_signals(run, None, tmp_path / "c", dataset={"root": str(moved)}, device="cpu")
    assert latest["date"] == str(new_days[-1].date())


def test_scoring_refuses_what_it_cannot_score(price_run, tmp_path):
    with pytest.raises(ConfigError, match=r"not a trading day .*2021-01-04 .. 2022-12-30\); the data ends before it"):
        predict_signals(price_run["run"], "2022-12-31", tmp_path, device="cpu")
    with pytest.raises(ConfigError, match="date=2022-09-01 lies in the training or validation period"):
        predict_signals(price_run["run"], "2022-09-01", tmp_path, device="cpu")
    with pytest.raises(ConfigError, match="date='tomorrow' is not a day"):
        predict_signals(price_run["run"], "tomorrow", tmp_path, device="cpu")
    with pytest.raises(ConfigError, match=r"trained on features .* use dataset.features=\[open,high"):
        predict_signals(price_run["run"], None, tmp_path, dataset={"features": ["close"]}, device="cpu")


def test_predict_py_writes_signals(price_run, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "predict.py"), f"ckpt={price_run['run']}",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "signals_2022-12-30.csv").is_file()
    shutil.rmtree(tmp_path / ".hydra", ignore_errors=True)


@pytest.mark.parametrize("model", ["dtml", "scinet"])
def test_cross_sectional_and_multi_horizon_models_score_like_evaluation(model, tmp_path):
    """DTML scores one date's stocks together; SCINet also writes its later horizons."""
    cfg = make_cfg(tmp_path, [f"model={model}", "trainer.epochs=1"] + (["model.pred_len=2"] if model == "scinet" else []))
    train(cfg)
    tested = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    day = sorted(tested["date"].unique())[3]
    signals = pd.read_csv(predict_signals(tmp_path / "run", day, tmp_path / "p", device="cpu")["path"])
    want = tested[tested["date"] == day].set_index("stock")
    np.testing.assert_allclose(signals.set_index("stock").loc[want.index, "prob_up"], want["prob_up"], rtol=1e-5,
                               atol=1e-6)
    if model == "scinet":
        assert "prob_up_t+2" in signals


def test_a_day_without_enough_history_is_refused(price_run):
    from lightquant.training import build_data

    data = build_data(price_run["cfg"])
    with pytest.raises(ConfigError, match="complete trading days of history ending on 2021-01-06"):
        data.with_scoring(data.dates[2])
