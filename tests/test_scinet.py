"""SCINet: shapes per horizon, padding, gradients, every argument acts, y_mask, learning."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.models.scinet import SCINet

from .fakes import n_params, random_batch

SMALL = {"hidden_size": 8, "dropout": 0.0}


def make_batch(b: int, t: int, f: int, h: int = 1, seed: int = 0, news: int = 0) -> Batch:
    """``random_batch`` with labels for ``h`` horizons ((B, H) when h > 1) and, with ``news`` > 0,
    3 texts of that size per day, including a day and a whole window without any text."""
    batch = random_batch(b, t, f, k=3 if news else 0, e=news, seed=seed)
    if h > 1:
        batch.y = (torch.rand(b, h, generator=torch.Generator().manual_seed(seed + 1000)) > 0.5).float()
    if news:
        batch.news_mask[0, 2] = False  # a day without any text
        batch.news_mask[1] = False  # a window without any text
    return batch


def build(f: int, t: int, seed: int = 0, **kw) -> SCINet:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the padding note; tested on its own below
        return SCINet(f, t, **{**SMALL, **kw})


def masked_bce(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The engine's multi-horizon loss: BCE averaged over the real (mask True) labels."""
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    m = mask.to(bce.dtype)
    return (bce * m).sum() / m.sum()


@pytest.mark.parametrize(
    "t, levels, h",
    [(7, 2, 1), (7, 2, 3), (8, 2, 1), (8, 2, 4), (16, 3, 1), (16, 3, 5), (3, 3, 2), (1, 1, 1)],
)
def test_shapes_and_finite_grads(t, levels, h):
    b, f = 4, 3
    model = build(f, t, pred_len=h, SCINet_Layers=levels, dropout=0.1).train()
    batch = make_batch(b, t, f, h)
    out = model(batch)
    assert out.shape == ((b,) if h == 1 else (b, h))
    model.zero_grad()
    F.binary_cross_entropy_with_logits(out, batch.y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # every parameter is on the path to the logits


def test_padding_note_only_when_needed():
    with pytest.warns(UserWarning, match=r"seq_len=7 .* left-padded .* to 8 days.*multiples of 4"):
        SCINet(3, 7, SCINet_Layers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SCINet(3, 8, SCINet_Layers=2)
        SCINet(3, 16, SCINet_Layers=3)


def test_padding_replicates_the_first_day():
    """A 7-day model on x equals the same weights on x with its first day repeated (8 days)."""
    m7 = build(3, 7).eval()
    m8 = build(3, 8).eval()
    m8.load_state_dict(m7.state_dict())  # same shapes: both work on 8 days
    b7 = make_batch(5, 7, 3)
    b8 = make_batch(5, 8, 3)
    b8.x = torch.cat([b7.x[:, :1], b7.x], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(m7(b7), m8(b8))


def test_every_argument_acts():
    base = build(3, 8)
    n = n_params(base)
    assert n_params(build(4, 8)) != n  # input_size
    assert n_params(build(3, 16)) != n  # seq_len (projection over the days)
    assert n_params(build(3, 8, pred_len=3)) != n
    assert n_params(build(3, 8, SCINet_Layers=3)) != n
    assert n_params(build(3, 8, hidden_size=5)) != n
    assert n_params(build(3, 8, kernel_size=3)) != n
    assert n_params(build(3, 8, news_size=6)) != n
    # seq_len 5 and 7 share the padded length 8 and the weights, but not the padding
    b = make_batch(4, 7, 3)
    b5 = make_batch(4, 5, 3)
    b5.x = b.x[:, 2:]
    with torch.no_grad():
        assert not torch.allclose(build(3, 7).eval()(b), build(3, 5).eval()(b5))
    # dropout: two training passes differ with it, agree without it
    batch = make_batch(4, 8, 3)
    drop, none = build(3, 8, dropout=0.5).train(), build(3, 8, dropout=0.0).train()
    assert not torch.allclose(drop(batch), drop(batch))
    assert torch.allclose(none(batch), none(batch))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"SCINet_Layers": 0}, "SCINet_Layers"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"pred_len": 0}, "pred_len"),
        ({"hidden_size": 2.0}, "hidden_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"news_size": -1}, "news_size"),
        ({"seq_len": 0}, "seq_len"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        SCINet(**{"input_size": 3, "seq_len": 8, **kw})


def test_wrong_window_length_and_missing_news_raise():
    with pytest.raises(ValueError, match="seq_len=8 .* 7 days"):
        build(3, 8)(make_batch(2, 7, 3))
    with pytest.raises(ValueError, match="use_news=true"):
        build(3, 8, news_size=6)(make_batch(2, 8, 3))


def test_news_fusion_and_empty_news():
    model = build(3, 7, news_size=6, pred_len=2).train()
    batch = make_batch(4, 7, 3, h=2, news=6)
    out = model(batch)
    assert out.shape == (4, 2) and torch.isfinite(out).all()
    F.binary_cross_entropy_with_logits(out, batch.y).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # the texts reach the logits
    moved = make_batch(4, 7, 3, h=2, news=6)
    moved.news = moved.news + 1.0
    with torch.no_grad():
        model.eval()
        assert not torch.allclose(model(batch), model(moved))


def test_eval_deterministic_and_bf16_autocast():
    model = build(3, 7, pred_len=3, dropout=0.3).eval()
    batch = make_batch(6, 7, 3, h=3)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch)
    assert out.shape == (6, 3) and torch.isfinite(out).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # and a training step under autocast
        loss = F.binary_cross_entropy_with_logits(model.train()(batch), batch.y)
    loss.backward()
    assert torch.isfinite(loss)


def test_masked_horizons_do_not_affect_the_gradient():
    model = build(3, 8, pred_len=4).train()
    batch = make_batch(6, 8, 3, h=4)
    mask = torch.ones(6, 4, dtype=torch.bool)
    mask[:, 3] = False  # horizon 4 beyond the data for everyone
    mask[2, 1:] = False  # one sample near the end of the data: only t+1 is real
    grads = []
    for y in (batch.y, torch.where(mask, batch.y, 1.0 - batch.y)):  # flip only masked labels
        model.zero_grad()
        torch.manual_seed(0)  # dropout is 0 here, but keep passes identical anyway
        masked_bce(model(batch), y, mask).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1)
    # while a real label does change the gradient
    model.zero_grad()
    masked_bce(model(batch), torch.where(mask, 1.0 - batch.y, batch.y), mask).backward()
    assert any(not torch.allclose(g, p.grad) for g, p in zip(grads[0], model.parameters()))


@pytest.mark.parametrize("t, levels", [(7, 2), (8, 2)])
def test_learns_position_dependent_horizons(t, levels):
    """Horizon h's label = sign of x[:, -h, 0]: each horizon reads its own day, so a model
    that mixed up its horizon outputs fails on them. Random masks exercise the masked loss."""
    h, f = 4, 3
    model = build(f, t, pred_len=h, SCINet_Layers=levels, hidden_size=16, dropout=0.1)

    def data(n: int, seed: int) -> tuple[Batch, torch.Tensor]:
        batch = make_batch(n, t, f, h, seed=seed)
        days = torch.stack([batch.x[:, -k, 0] for k in range(1, h + 1)], dim=1)  # (n, H)
        batch.y = (days > 0).float()
        mask = torch.rand(n, h, generator=torch.Generator().manual_seed(seed + 1)) > 0.2
        return batch, mask

    train, train_mask = data(512, 1)
    test, _ = data(1024, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(300):
        idx = torch.randint(0, 512, (64,), generator=torch.Generator().manual_seed(step))
        batch = Batch(x=train.x[idx], y=train.y[idx], stock=train.stock[idx], date=train.date[idx], row=idx)
        opt.zero_grad()
        masked_bce(model(batch), batch.y, train_mask[idx]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = ((model(test) > 0).float() == test.y).float().mean(0)  # (H,) held-out accuracy
    assert (acc > 0.85).all(), acc


class PerBlockTree(torch.nn.Module):
    """The tree as it was before it was batched (and as the reference code writes it): one
    Sequential per phi/psi/rho/eta, a Python recursion over even/odd sub-trees."""

    def __init__(self, levels, c, h, k):
        super().__init__()
        mods = []
        for _ in range(4):
            mods.append(torch.nn.Sequential(torch.nn.ReplicationPad1d((k - 1) // 2 + 1), torch.nn.Conv1d(c, h, k),
                                            torch.nn.LeakyReLU(0.01), torch.nn.Dropout(0.0), torch.nn.Conv1d(h, c, 3),
                                            torch.nn.Tanh()))
        self.block = torch.nn.Module()
        self.block.phi, self.block.psi, self.block.rho, self.block.eta = mods
        self.even = PerBlockTree(levels - 1, c, h, k) if levels > 1 else None
        self.odd = PerBlockTree(levels - 1, c, h, k) if levels > 1 else None

    def forward(self, x):  # (B, C, L)
        even, odd = x[..., ::2], x[..., 1::2]
        odd_s = odd * torch.exp(self.block.phi(even))
        even_s = even * torch.exp(self.block.psi(odd))
        even, odd = even_s + self.block.eta(odd_s), odd_s - self.block.rho(even_s)
        if self.even is not None:
            even, odd = self.even(even), self.odd(odd)
        return torch.stack([even, odd], dim=-1).flatten(-2)


@pytest.mark.parametrize("levels, t", [(1, 4), (2, 8), (3, 16)])
def test_batched_tree_computes_the_per_block_tree_and_loads_its_weights(levels, t):
    """Weights saved by the per-block tree load into the batched one (old exports keep working),
    and both compute the same logits and gradients."""
    f, h = 3, 8
    torch.manual_seed(1)
    ref = PerBlockTree(levels, f, h, 5)
    model = build(f, t, SCINet_Layers=levels, hidden_size=h)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("tree.")}
    state.update({f"tree.{k}": v for k, v in ref.state_dict().items()})
    model.load_state_dict(state)  # strict: every batched weight filled, no old key left over
    batch = make_batch(4, t, f)
    x = batch.x.requires_grad_(True)
    want = model.projection(ref(x.transpose(1, 2)).transpose(1, 2) + x)
    want = (want * model.head_weight).sum(-1).squeeze(-1) + model.head_bias
    got = model(batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    (g_got,) = torch.autograd.grad(got.sum(), x, retain_graph=True)
    (g_want,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)


def test_cpu_dropout_keeps_the_rate_and_the_scale():
    from lightquant.models.layers import dropout

    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = dropout(x, 0.25, training=True)
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.01
    torch.testing.assert_close(y.unique(), torch.tensor([0.0, 4 / 3]))
    assert dropout(x, 0.25, training=False) is x and dropout(x, 0.0, training=True) is x
