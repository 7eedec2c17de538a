"""Item layouts: multi-horizon labels (SCINet) and date items (DTML), and the masked loss."""

from __future__ import annotations

import pytest
import torch

from lightquant.data import load_market_data
from lightquant.data.synthetic import SyntheticSource
from lightquant.engine.trainer import masked_bce

SPLITS = {"train_end": "2021-09-30", "val_end": "2021-11-15"}


@pytest.fixture(scope="module")
def data():
    src = SyntheticSource(n_stocks=7, end="2021-12-31", late_listing_share=0.3, suspension_rate=0.02)
    return load_market_data(src, features=["open", "high", "low", "close", "volume"], look_back_window=5, splits=SPLITS)


def test_horizon_labels_line_up_with_the_right_days(data):
    h = data.with_horizons(4)
    for name, s in h.splits.items():
        assert s.y.shape == (len(data.splits[name]), 4)
        assert torch.equal(s.y[:, 0], data.splits[name].y) and s.mask[:, 0].all()
        for k in range(1, 4):
            r = s.end_row + k  # row of day t+k; its movement runs to t+k+1
            m = s.mask[:, k]
            assert m.any()
            assert torch.equal(s.y[m, k], data.row_up[r[m]])
            assert (data.row_stock[r[m]] == data.row_stock[s.end_row[m]]).all()
            assert torch.allclose(s.ret[m, k], data._row_ret[r[m]])
            # no horizon label of a split reaches past the split's last target day
            last_day = data.dates[data.row_day[r[m] + 1].numpy()]
            assert (last_day <= h.bounds[name][1]).all()
    train = h.splits["train"]
    assert not train.mask[:, 1:].all()  # the last training samples lose the horizons that cross into val
    b = h.batch("train", torch.arange(5))
    assert b.y.shape == b.y_mask.shape == (5, 4)


def test_date_items_hold_stocks_of_one_date_each_once(data):
    for n_stocks in (None, 3):
        dd = data.by_date(n_stocks, seed=1)
        for name, s in dd.splits.items():
            m = s.mask
            if n_stocks:
                assert s.end_row.shape[1] <= n_stocks
            days = data.row_day[s.end_row]
            assert (days[m] == s.day[:, None].expand_as(m)[m]).all()  # one date per item
            real = torch.sort(s.end_row[m]).values
            assert torch.equal(real, torch.sort(data.splits[name].end_row).values)  # every stock-day exactly once
            stocks = data.row_stock[s.end_row]
            for i in range(len(s)):
                assert len(set(stocks[i][m[i]].tolist())) == int(m[i].sum())
        b = dd.batch("val", torch.arange(3))
        assert b.x.ndim == 4 and b.market.shape == (3, 5, 5) and b.y_mask.shape == b.y.shape


def test_market_context_is_the_equal_weighted_universe(data):
    first = torch.ones_like(data.row_stock, dtype=torch.bool)  # a stock's first day has no features
    first[1:] = data.row_stock[1:] != data.row_stock[:-1]
    for day in (5, 150, 200):
        ok = (data.row_day == day) & ~first
        assert torch.allclose(data.market[day], data.features[ok].mean(0), atol=1e-5)
    b = data.batch("test", torch.tensor([0]))
    days = data.row_day[b.row[0] + torch.arange(-4, 1)]
    assert torch.equal(b.market[0], data.market[days])


def test_masked_loss_ignores_padding():
    logits = torch.tensor([[2.0, -1.0, 100.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    full = masked_bce(logits[:, :2], y[:, :2], None)
    assert torch.allclose(masked_bce(logits, y, mask), full)
    with pytest.raises(ValueError, match="logits of shape"):
        masked_bce(logits, y[:, :2], None)


def test_bad_layout_arguments(data):
    with pytest.raises(ValueError, match="pred_len"):
        data.with_horizons(0)
    with pytest.raises(ValueError, match="n_stocks"):
        data.by_date(0)
