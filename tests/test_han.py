"""HAN (Hu et al., WSDM 2018): shapes, gradients, arguments, empty news, explain, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.models.han import HAN

from .fakes import n_params, random_batch

SMALL = {"hidden_size": 8, "attention_size": 6, "mlp_size": 5, "layers": 1, "dropout": 0.0}


def make_batch(b: int, t: int, k: int, e: int, f: int = 3, seed: int = 0) -> Batch:
    """Random texts; about half the slots padded, some days empty, window 0 all empty.

    On top of ``random_batch``: HAN must cope with days without any text and with a window
    that has no text at all (attention over nothing), so each batch has both.
    """
    batch = random_batch(b, t, f, k, e, seed=seed)
    days = torch.Generator().manual_seed(seed + 1000)  # a stream apart from random_batch's
    batch.news_mask[torch.rand(b, t, generator=days) < 0.25] = False  # days without any text
    batch.news_mask[0] = False  # an entirely empty window
    return batch


def build(e: int, seed: int = 0, **kw) -> HAN:
    torch.manual_seed(seed)
    return HAN(e, **{**SMALL, **kw})


@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (4, 5, 3, 4), (6, 8, 5, 7)])
@pytest.mark.parametrize("kw", [{}, {"price_size": 3, "layers": 2, "dropout": 0.3}])
def test_forward_shape_and_finite_grads(shape, kw):
    b, t, k, e = shape
    model = build(e, **kw).train()
    batch = make_batch(b, t, k, e)
    batch.news_mask[-1, :, 0] = True  # at least one text somewhere, so the news layers get gradient
    out = model(batch)
    assert out.shape == (b,)
    F.binary_cross_entropy_with_logits(out, batch.y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(batch)).all()


def test_size_arguments_change_parameter_count():
    base = n_params(build(4))
    assert n_params(build(5)) != base  # news_size
    for arg, value in [("hidden_size", 9), ("attention_size", 7), ("mlp_size", 6), ("layers", 2), ("price_size", 2)]:
        assert n_params(build(4, **{arg: value})) != base, arg


def test_price_size_feeds_prices():
    batch = make_batch(4, 5, 3, 4)
    shifted = Batch(**{**batch.__dict__, "x": batch.x + 1.0})
    news_only, with_prices = build(4).eval(), build(4, price_size=3).eval()
    with torch.no_grad():
        assert torch.equal(news_only(batch), news_only(shifted))  # default: news only
        assert not torch.allclose(with_prices(batch), with_prices(shifted))
    with pytest.raises(ValueError, match="price_size"):
        build(4, price_size=2)(batch)  # x has 3 features


def test_dropout_acts():
    batch = make_batch(6, 5, 3, 4)
    for layers in (1, 2):
        model = build(4, dropout=0.5, layers=layers).train()
        torch.manual_seed(1)
        a = model(batch)
        torch.manual_seed(2)
        assert not torch.allclose(a, model(batch)), layers
    model = build(4, dropout=0.0).train()
    assert torch.equal(model(batch), model.eval()(batch))


def test_eval_is_deterministic():
    model = build(4, dropout=0.5, layers=2).eval()
    batch = make_batch(6, 5, 3, 4)
    with torch.no_grad():
        assert torch.equal(model(batch), model(batch))


@pytest.mark.parametrize(
    "arg, bad",
    [("news_size", 0), ("hidden_size", -1), ("attention_size", 2.0), ("mlp_size", True), ("layers", 0),
     ("dropout", 1.0), ("dropout", -0.1), ("price_size", -1), ("price_size", True), ("price_size", 1.5)],
)
def test_bad_arguments_raise(arg, bad):
    kw = {**SMALL, "news_size": 4, arg: bad}
    with pytest.raises(ValueError, match=arg):
        HAN(**kw)


def test_bad_batches_raise_clearly():
    model = build(4)
    batch = make_batch(2, 3, 2, 4)
    with pytest.raises(ValueError, match="use_news=true"):
        model(Batch(**{**batch.__dict__, "news": None, "news_mask": None}))
    with pytest.raises(ValueError, match="news_mask"):
        model(Batch(**{**batch.__dict__, "news_mask": None}))
    with pytest.raises(ValueError, match="news_size"):
        build(5)(batch)


def test_empty_news_gives_no_nan():
    model = build(4, price_size=3).train()
    batch = make_batch(3, 4, 2, 4)
    batch.news_mask[:] = False  # no text in any window
    batch.news[:] = float("nan")  # padding content must never leak in
    out = model(batch)
    assert torch.isfinite(out).all()
    F.binary_cross_entropy_with_logits(out, batch.y).backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert torch.equal(model.explain(batch), torch.zeros(3, 4, 2))


def test_padding_and_text_order_do_not_matter():
    model = build(4).eval()
    batch = make_batch(5, 4, 3, 4)
    other = batch.news.clone()
    other[~batch.news_mask] = 100.0  # rewrite only the padding slots
    perm = torch.tensor([2, 0, 1])  # reorder each day's K slots
    with torch.no_grad():
        ref = model(batch)
        assert torch.equal(ref, model(Batch(**{**batch.__dict__, "news": other})))
        shuffled = Batch(**{**batch.__dict__, "news": batch.news[:, :, perm], "news_mask": batch.news_mask[:, :, perm]})
        assert torch.allclose(ref, model(shuffled), atol=1e-6)


def test_explain_weights():
    model = build(4).eval()
    batch = make_batch(5, 4, 3, 4)
    with torch.no_grad():
        w = model.explain(batch)
    assert w.shape == (5, 4, 3)
    assert (w >= 0).all() and (w[~batch.news_mask] == 0).all()
    assert torch.equal(w[0], torch.zeros(4, 3))  # the empty window
    assert (w.sum((1, 2)) <= 1 + 1e-6).all()
    full = make_batch(5, 4, 3, 4)
    full.news_mask[:] = True  # every day has text: the weights of a window sum to 1
    with torch.no_grad():
        assert torch.allclose(model.explain(full).sum((1, 2)), torch.ones(5), atol=1e-5)


def test_bf16_autocast():
    model = build(4, price_size=3, layers=2).train()
    batch = make_batch(4, 5, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        loss = F.binary_cross_entropy_with_logits(out.float(), batch.y)
        w = model.explain(batch)
    assert out.shape == (4,) and torch.isfinite(out).all() and torch.isfinite(w).all()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


T, K, E = 5, 4, 8


def planted(n: int, seed: int, random_labels: bool = False) -> tuple[Batch, torch.Tensor]:
    """y = 1 iff some text of the LAST day has component 0 > 0.5 (about half the windows); other
    days' texts are just as random, so a model that ignores *which* day a text is on scores ~0.5."""
    b = make_batch(n, T, K, E, seed=seed)
    signal = (b.news[..., 0] > 0.5) & b.news_mask  # (B, T, K)
    y = signal[:, -1].any(-1).float()
    if random_labels:  # control: the texts (signal on earlier days included) say nothing of y
        y = (torch.rand(n, generator=torch.Generator().manual_seed(seed + 1)) < 0.5).float()
    return Batch(**{**b.__dict__, "y": y}), signal


def fit(batch: Batch, steps: int = 200, stop_at: float = 2.0) -> tuple[HAN, float]:
    model = build(E, hidden_size=16, attention_size=8, mlp_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        out = model(batch)
        F.binary_cross_entropy_with_logits(out, batch.y).backward()
        opt.step()
        acc = ((out > 0).float() == batch.y).float().mean().item()
        if acc > stop_at:
            break
    return model.eval(), acc


def accuracy(model: HAN, batch: Batch) -> float:
    with torch.no_grad():
        return ((model(batch) > 0).float() == batch.y).float().mean().item()


def test_learns_rule_on_last_days_texts():
    train, signal = planted(256, seed=0)
    day_blind = (signal.flatten(1).any(-1).float() == train.y).float().mean().item()
    assert day_blind < 0.65  # the rule needs the day's position, not just the text
    model, _ = fit(train, stop_at=0.95)
    assert accuracy(model, train) > 0.85
    assert accuracy(model, planted(1024, seed=7)[0]) > 0.8  # held out
    # news-level attention (explain renormalised within the last day) finds the signal texts
    with torch.no_grad():
        w = model.explain(train)[:, -1]  # (B, K)
    pos = train.y.bool()
    alpha = w[pos] / w[pos].sum(-1, keepdim=True)  # (P, K)
    on_signal = (alpha * signal[pos, -1]).sum(-1).mean()
    share = (signal[pos, -1].sum(-1) / train.news_mask[pos, -1].sum(-1)).mean()  # uniform attention's
    assert on_signal > share + 0.1


def test_cannot_learn_unrelated_labels():
    model, _ = fit(planted(256, seed=0, random_labels=True)[0])
    assert accuracy(model, planted(1024, seed=7, random_labels=True)[0]) < 0.65  # held out
