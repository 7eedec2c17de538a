"""Model zoo: shapes, gradients, every constructor argument acts, adversarial hook, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.models import ALSTM, LSTM, AdvLSTM, TemporalAttention

from .fakes import n_params, random_batch

SMALL = {"hidden_size": 8, "layers": 2, "dropout": 0.0}
FACTORIES = {
    "lstm": lambda f, **kw: LSTM(f, **{**SMALL, **kw}),
    "bilstm": lambda f, **kw: LSTM(f, **{**SMALL, "bidirectional": True, **kw}),
    "alstm": lambda f, **kw: ALSTM(f, **{**SMALL, "attention_size": 6, **kw}),
    "adv_lstm": lambda f, **kw: AdvLSTM(f, **{**SMALL, "attention_size": 6, "epsilon": 0.1, **kw}),
}
NAMES = list(FACTORIES)


def build(name: str, f: int, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return FACTORIES[name](f, **kw)


def train_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The engine's training step contract: clean BCE + optional extra_loss."""
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.y)
    if hasattr(model, "extra_loss"):
        loss = loss + model.extra_loss(batch, loss)
    return loss


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 1, 3), (4, 5, 3), (7, 12, 6)])
def test_forward_shape_and_grads(name, shape):
    b, t, f = shape
    model = build(name, f).train()
    batch = random_batch(b, t, f)
    assert model(batch).shape == (b,)
    model.zero_grad()
    train_loss(model, batch).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (b,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_size_arguments_change_parameter_count(name):
    base = n_params(build(name, 3))
    assert n_params(build(name, 4)) != base  # input_size
    assert n_params(build(name, 3, hidden_size=9)) != base
    assert n_params(build(name, 3, layers=3)) != base
    assert n_params(build(name, 3, layers=1)) != base
    if name in ("alstm", "adv_lstm"):
        assert n_params(build(name, 3, attention_size=7)) != base


def test_bidirectional_uses_both_final_states():
    uni, bi = build("lstm", 3).eval(), build("bilstm", 3).eval()
    batch = random_batch(5, 6, 3)
    assert n_params(bi) > n_params(uni)
    assert bi.fc.in_features == 2 * uni.fc.in_features
    with torch.no_grad():
        out, _ = bi.rnn(batch.x)  # (B, T, 2H)
        h = 8
        # forward state at T-1 and backward state at t=0: both have read all T steps
        expected = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=-1)
        torch.testing.assert_close(bi.latent(batch), expected)
        # the backward state at t=0 depends on the first step; a last-step-only readout would not
        x2 = batch.x.clone()
        x2[:, 0] += 1.0
        assert not torch.allclose(bi(batch), bi(Batch(x2, batch.y, batch.stock, batch.date, batch.row)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layers", [1, 2])
def test_dropout_acts_in_train_only(name, layers):
    batch = random_batch(6, 5, 3)
    model = build(name, 3, layers=layers, dropout=0.5).train()
    assert not torch.allclose(model(batch), model(batch))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)
    model = build(name, 3, layers=layers, dropout=0.0).train()
    torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_eval_output_is_per_sample(name):
    model = build(name, 4).eval()
    batch = random_batch(9, 7, 4)
    with torch.no_grad():
        full = model(batch)
        for i in (0, 4, 8):
            sl = slice(i, i + 1)
            one = model(Batch(batch.x[sl], batch.y[sl], batch.stock[sl], batch.date[sl], batch.row[sl]))
            torch.testing.assert_close(one[0], full[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward(name):
    model = build(name, 3).eval()
    batch = random_batch(4, 5, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert out.shape == (4,) and torch.isfinite(out.float()).all()


def test_adv_lstm_training_step_under_autocast():
    model = build("adv_lstm", 3).train()
    batch = random_batch(4, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = train_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_alstm_attention_weights():
    model = build("alstm", 3).eval()
    batch = random_batch(4, 5, 3)
    e, alpha = model.latent(batch, return_attention=True)
    assert e.shape == (4, 16) and alpha.shape == (4, 5)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4))
    attn = TemporalAttention(8, 3)
    a, w = attn(torch.randn(2, 4, 8))
    assert a.shape == (2, 8) and w.shape == (2, 4)


def test_attention_context_scores_the_concatenation_without_building_it():
    """A shared query c scores [h_t; c] as attending over the concatenation would, masks included."""
    torch.manual_seed(0)
    attn = TemporalAttention(8 + 5, 3)
    h, c = torch.randn(4, 6, 8, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    mask = torch.rand(4, 6) > 0.3
    mask[1] = False  # a set with nothing in it
    a, w = attn(h, mask, context=c)
    a_ref, w_ref = attn(torch.cat([h, c[:, None].expand(-1, 6, -1)], -1), mask)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(a, a_ref[:, :8])  # the sum runs over h alone
    # and both equal the plain masked softmax over every element (the CPU scores real elements only)
    full = attn.score(torch.tanh(attn.proj(torch.cat([h, c[:, None].expand(-1, 6, -1)], -1)))).squeeze(-1)
    w_plain = torch.softmax(full.masked_fill(~mask, torch.finfo(full.dtype).min), -1) * mask.any(-1, keepdim=True)
    torch.testing.assert_close(w, w_plain)
    a_plain = torch.bmm(w_plain.unsqueeze(1), h).squeeze(1)  # the weighted sum over every element
    torch.testing.assert_close(a, a_plain)
    for got, want in zip(torch.autograd.grad(a.pow(2).sum(), [h, c], retain_graph=True),
                         torch.autograd.grad(a_plain.pow(2).sum(), [h, c], retain_graph=True)):
        torch.testing.assert_close(got, want)
    gh, gc = torch.autograd.grad(w.pow(2).sum(), [h, c])
    gh_ref, gc_ref = torch.autograd.grad(w_ref.pow(2).sum(), [h, c])
    torch.testing.assert_close(gh, gh_ref)
    torch.testing.assert_close(gc, gc_ref)


# --- AdvLSTM -------------------------------------------------------------------------------


def adv_grads(seed_model: AdvLSTM, batch: Batch, **kw) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model = AdvLSTM(3, hidden_size=8, attention_size=6, layers=2, dropout=0.0, **kw)
    model.load_state_dict(seed_model.state_dict())
    model.train()
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.y)
    extra = model.extra_loss(batch, loss)
    (loss + extra).backward()
    return extra.detach(), [p.grad.clone() for p in model.parameters()]


def test_adversarial_term_changes_gradients():
    torch.manual_seed(0)
    ref = build("adv_lstm", 3)
    batch = random_batch(8, 6, 3)
    clean_extra, g0 = adv_grads(ref, batch, epsilon=0.0)
    adv_extra, g1 = adv_grads(ref, batch, epsilon=0.5)
    torch.manual_seed(1)
    _, g2 = adv_grads(ref, batch, epsilon=0.0, perturbation_size=0.5)
    differs = lambda a, b: any(not torch.allclose(x, y) for x, y in zip(a, b))  # noqa: E731
    assert differs(g0, g1)
    assert differs(g0, g2)
    # epsilon=0, no noise: the adversarial example is the clean one, so the extra term is the
    # clean loss; a worst-case perturbation can only raise it
    assert adv_extra > clean_extra > 0
    # adv_weight scales the term
    w2_extra, _ = adv_grads(ref, batch, epsilon=0.5, adv_weight=2.0)
    torch.testing.assert_close(w2_extra, 2 * adv_extra)
    w0_extra, _ = adv_grads(ref, batch, epsilon=0.5, adv_weight=0.0)
    assert w0_extra == 0


def test_extra_loss_needs_training_forward():
    model = build("adv_lstm", 3).train()
    batch = random_batch(4, 5, 3)
    loss_fn = F.binary_cross_entropy_with_logits
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, torch.tensor(0.0, requires_grad=True))
    loss = loss_fn(model(batch), batch.y)
    assert model.extra_loss(batch, loss) > 0
    assert model._latent is None  # graph reference freed
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)  # second call: latent already consumed
    model.eval()
    loss = loss_fn(model(batch), batch.y)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)
    model.train()
    with torch.no_grad():
        model(batch)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)


# --- validation and construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, kw, arg",
    [
        (LSTM, {"input_size": 0}, "input_size"),
        (LSTM, {"hidden_size": 0}, "hidden_size"),
        (LSTM, {"layers": 0}, "layers"),
        (LSTM, {"layers": 1.5}, "layers"),
        (LSTM, {"dropout": 1.0}, "dropout"),
        (LSTM, {"dropout": -0.1}, "dropout"),
        (LSTM, {"bidirectional": 1}, "bidirectional"),
        (ALSTM, {"attention_size": 0}, "attention_size"),
        (ALSTM, {"hidden_size": True}, "hidden_size"),
        (ALSTM, {"dropout": float("nan")}, "dropout"),
        (AdvLSTM, {"epsilon": -1.0}, "epsilon"),
        (AdvLSTM, {"perturbation_size": -1.0}, "perturbation_size"),
        (AdvLSTM, {"adv_weight": -1.0}, "adv_weight"),
        (LSTM, {"init": "keras"}, "init"),
        (AdvLSTM, {"init": "keras"}, "init"),
    ],
)
def test_invalid_arguments(cls, kw, arg):
    with pytest.raises(ValueError, match=arg):
        cls(**{"input_size": 3, **kw})


def test_hydra_instantiate():
    instantiate = pytest.importorskip("hydra.utils").instantiate
    cfg = {"_target_": "lightquant.models.alstm.ALSTM", "input_size": 5, "hidden_size": 16,
           "attention_size": 8, "layers": 2, "dropout": 0}  # YAML int dropout is accepted
    model = instantiate(cfg)
    assert isinstance(model, ALSTM)
    assert model(random_batch(2, 4, 5)).shape == (2,)


# --- learning --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_learns_planted_rule(name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, 3, generator=g)
    y = (x[:, -2, 0] > 0).float()  # depends on the second-to-last step, not the last one
    idx = torch.arange(256)
    batch = Batch(x, y, idx, idx, idx)
    model = build(name, 3, hidden_size=32, layers=1, dropout=0.0).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        train_loss(model, batch).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = ((model(batch) > 0).float() == y).float().mean().item()
    assert acc > 0.9, acc


def test_packed_computes_real_rows_only_and_zeros_the_rest():
    from lightquant.models.layers import packed

    x = torch.randn(3, 4, 5, requires_grad=True)
    mask = torch.rand(3, 4) > 0.5
    calls = []

    def fn(rows):
        calls.append(rows.shape[0])
        return torch.tanh(rows @ torch.ones(5, 2))

    out = packed(fn, x, mask)
    assert calls == [int(mask.sum())] and out.shape == (3, 4, 2)
    torch.testing.assert_close(out[mask], torch.tanh(x[mask] @ torch.ones(5, 2)))
    assert (out[~mask] == 0).all()
    (g,) = torch.autograd.grad(out.sum(), x)
    assert (g[~mask] == 0).all() and (g[mask] != 0).any()
