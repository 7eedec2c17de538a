"""DTML: date-item shapes, gradients, arguments, padding isolation, permutation equivariance
across stocks, and learning a signal only visible across the stocks of a date."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.models import LSTM
from lightquant.models.dtml import DTML

from .fakes import n_params

SMALL = {"hidden_size": 8, "attention_size": 6, "heads": 2, "dropout": 0.0}


def make_batch(b: int, s: int, t: int, f: int, k: int = 3, e: int = 5, seed: int = 0, pad: bool = True) -> Batch:
    """Random date items; with ``pad``, item 0 has its last slot padded (zero x) and item 1
    (if any) is all padding. News masks have empty days and an empty window."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, t, f, generator=g)
    valid = torch.ones(b, s, dtype=torch.bool)
    if pad:
        if s > 1:
            valid[0, -1] = False
        if b > 1:
            valid[1] = False
    x = x * valid[..., None, None]  # the data layer fills padding slots with zeros
    news_mask = torch.rand(b, s, t, k, generator=g) < 0.6
    news_mask[0, 0, 0] = False
    news_mask[-1, 0] = False
    z = torch.zeros(b, s, dtype=torch.long)
    return Batch(
        x=x,
        y=(torch.rand(b, s, generator=g) > 0.5).float(),
        stock=z,
        date=z,
        row=z,
        y_mask=valid,
        market=x.mean(1),
        news=torch.randn(b, s, t, k, e, generator=g),
        news_mask=news_mask,
    )


def build(f: int = 3, seed: int = 0, **kw) -> DTML:
    torch.manual_seed(seed)
    return DTML(f, **{**SMALL, **kw})


def masked_bce(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The engine's loss on date items: BCE over real stock-days only."""
    m = batch.y_mask.float()
    return (F.binary_cross_entropy_with_logits(logits.float(), batch.y, reduction="none") * m).sum() / m.sum()


def out(model: DTML, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(batch)


def test_batch_layout():
    assert DTML.batch_layout == "date"


@pytest.mark.parametrize("shape", [(1, 1, 3, 1), (4, 5, 3, 3), (6, 7, 2, 4), (3, 2, 1, 2)])
@pytest.mark.parametrize("news", [False, True])
def test_forward_shape_and_grads(shape, news):
    b, s, t, f = shape
    model = build(f, news_size=5 if news else 0, dropout=0.2, layers=2).train()
    batch = make_batch(b, s, t, f)
    logits = model(batch)
    assert logits.shape == (b, s)
    model.zero_grad()
    masked_bce(logits, batch).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    res = out(model, batch)
    assert res.shape == (b, s) and torch.isfinite(res).all()  # all-padding item 1 included
    assert out(model, replace(batch, y_mask=None)).shape == (b, s)  # None = every slot real


@pytest.mark.parametrize(
    "kw, arg",
    [({"input_size": 0}, "input_size"), ({"hidden_size": True}, "hidden_size"),
     ({"attention_size": 1.5}, "attention_size"), ({"heads": 0}, "heads"), ({"layers": 0}, "layers"),
     ({"hidden_size": 10, "heads": 4}, "divisible"), ({"dropout": 1.0}, "dropout"),
     ({"dropout": float("nan")}, "dropout"), ({"beta": -0.1}, "beta"), ({"news_size": -1}, "news_size")],
)
def test_invalid_arguments(kw, arg):
    with pytest.raises(ValueError, match=arg):
        DTML(**{"input_size": 3, **kw})


def test_size_arguments_change_parameter_count():
    base = n_params(build())
    assert n_params(build(f=4)) != base  # input_size
    for kw in ({"hidden_size": 12}, {"attention_size": 7}, {"layers": 2}, {"news_size": 5}):
        assert n_params(build(**kw)) != base, kw


def test_heads_layers_and_beta_change_outputs():
    batch = make_batch(4, 5, 4, 3)
    ref = out(build(), batch)
    assert not torch.allclose(out(build(heads=1), batch), ref)  # same weights, other split
    two = build(layers=2)
    full = out(two, batch)
    two.blocks = two.blocks[:1]
    assert not torch.allclose(full, out(two, batch))  # the second block really runs
    assert not torch.allclose(out(build(beta=0.5), batch), ref)
    # beta = 0: the market context is ignored
    none = build(beta=0.0)
    torch.testing.assert_close(out(none, replace(batch, market=torch.randn_like(batch.market))), out(none, batch))


def test_news_size_uses_news():
    batch = make_batch(4, 5, 4, 3)
    model = build(news_size=5)
    other = replace(batch, news=torch.randn_like(batch.news))
    assert not torch.allclose(out(model, other)[batch.y_mask], out(model, batch)[batch.y_mask])
    with pytest.raises(ValueError, match="use_news=true"):
        model(replace(batch, news=None, news_mask=None))


def test_dropout_acts_in_train_only():
    batch = make_batch(6, 5, 4, 3)
    drop, plain = build(dropout=0.5), build(dropout=0.0)
    outs = []
    for model in (drop, plain):
        torch.manual_seed(1)
        outs.append(model.train()(batch))
    assert not torch.allclose(*outs)
    torch.testing.assert_close(out(drop, batch), out(plain, batch), rtol=0, atol=0)
    torch.testing.assert_close(out(drop, batch), out(drop, batch), rtol=0, atol=0)  # eval deterministic


def test_padding_slots_do_not_influence_real_stocks():
    batch = make_batch(4, 6, 4, 3)
    model = build(layers=2)
    ref = out(model, batch)
    real = batch.y_mask
    x = batch.x.clone()
    x[~real] = 100 * torch.randn_like(x[~real])  # whatever the padding holds...
    x[0, -1, 0, 0] = float("nan")  # ...even NaN
    changed = out(model, replace(batch, x=x))
    torch.testing.assert_close(changed[real], ref[real], rtol=0, atol=0)
    assert torch.isfinite(changed).all()
    # the same real stocks with or without extra padding slots (interleaved) give the same logits
    b = make_batch(3, 4, 4, 3, pad=False)
    wide = torch.zeros(3, 7, 4, 3)
    slots = torch.tensor([0, 2, 3, 6])
    wide[:, slots] = b.x
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[:, slots] = True
    padded = replace(b, x=wide, y=torch.zeros(3, 7), y_mask=mask, stock=mask.long(), date=mask.long(),
                     row=mask.long(), news=None, news_mask=None)
    torch.testing.assert_close(out(model, padded)[:, slots], out(model, b), rtol=1e-5, atol=1e-5)


def test_items_are_independent():
    batch = make_batch(5, 4, 3, 3)
    model = build()
    full = out(model, batch)
    for i in (0, 1, 4):
        one = Batch(**{k: (v[i : i + 1] if v is not None else None) for k, v in vars(batch).items()})
        torch.testing.assert_close(out(model, one)[0], full[i], rtol=1e-5, atol=1e-6)


def test_permutation_equivariant_across_stocks():
    batch = make_batch(3, 6, 4, 3)
    model = build(layers=2)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    permuted = replace(batch, x=batch.x[:, perm], y=batch.y[:, perm], y_mask=batch.y_mask[:, perm])
    torch.testing.assert_close(out(model, permuted), out(model, batch)[:, perm], rtol=1e-5, atol=1e-6)


def test_bf16_autocast_forward():
    batch = make_batch(4, 5, 4, 3)
    model = build(news_size=5).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()


def test_bad_inputs_raise():
    batch = make_batch(2, 3, 4, 3)
    with pytest.raises(ValueError, match="market"):
        build()(replace(batch, market=None))
    with pytest.raises(ValueError, match="market"):
        build()(replace(batch, market=batch.market[:, :2]))
    with pytest.raises(ValueError, match=r"\(B, S, T, F\)"):
        build()(replace(batch, x=batch.x[:, 0]))


def cross_stock_data(n: int, seed: int, s: int = 6, t: int = 5, f: int = 3) -> Batch:
    """Stock 1's label = sign of stock 0's last-day feature 0; stock 1's own features are
    noise. Feature 1 is a per-stock constant (a stock's identity, as real stocks differ in
    their feature statistics): attention needs it to find stock 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, s, t, f, generator=g)
    x[..., 1] = torch.linspace(-1, 1, s).view(1, s, 1)
    y = (torch.rand(n, s, generator=g) > 0.5).float()
    y[:, 1] = (x[:, 0, -1, 0] > 0).float()
    z = torch.zeros(n, s, dtype=torch.long)
    return Batch(x=x, y=y, stock=z, date=z, row=z, market=x.mean(1))


def item(batch: Batch, idx: torch.Tensor, stock: int | None = None) -> Batch:
    """Rows idx of a date batch; with ``stock``, that stock's per-stock (B, T, F) samples."""
    pick = (lambda v: v[idx]) if stock is None else (lambda v: v[idx, stock])
    return Batch(x=pick(batch.x), y=pick(batch.y), stock=pick(batch.stock), date=pick(batch.date),
                 row=pick(batch.row), market=batch.market[idx] if stock is None else None)


def fit_accuracy(model: torch.nn.Module, stock: int | None) -> float:
    """300 Adam steps on stock 1's label; accuracy on held-out items."""
    train, test = cross_stock_data(512, 0), cross_stock_data(512, 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    pick = (lambda l: l[:, 1]) if stock is None else (lambda l: l)
    model.train()
    for _ in range(300):
        b = item(train, torch.randint(0, 512, (64,), generator=g), stock)
        loss = F.binary_cross_entropy_with_logits(pick(model(b)), b.y if stock is not None else b.y[:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        b = item(test, torch.arange(512), stock)
        pred = (pick(model(b)) > 0).float()
    return (pred == test.y[:, 1]).float().mean().item()


def test_learns_cross_stock_signal():
    torch.manual_seed(0)
    dtml = DTML(3, hidden_size=32, attention_size=16, heads=4, dropout=0.0)
    assert fit_accuracy(dtml, stock=None) > 0.85
    torch.manual_seed(0)
    per_stock = LSTM(3, hidden_size=32, layers=1, dropout=0.0)  # sees stock 1 only
    assert fit_accuracy(per_stock, stock=1) < 0.65
