"""StockNet: shapes, gradients, arguments, text masking, variational decoder, ATA, learning."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.models.stocknet import StockNet

from .fakes import n_params, random_batch

F_IN, E, K = 3, 6, 4
SMALL = {"hidden_size": 8, "latent_size": 4, "attention_size": 5, "dropout": 0.0}


def make_batch(b: int, t: int, f: int = F_IN, e: int = E, k: int = K, seed: int = 0) -> Batch:
    """Random prices and texts; some days have no text and sample 0's window has none at all.

    On top of ``random_batch``: StockNet's text encoder must skip empty days (every window's
    first day) and whole empty windows, and must never read padding, which is therefore NaN.
    """
    batch = random_batch(b, t, f, k, e, seed=seed)
    mask = batch.news_mask  # (B, T, K), edited in place
    days = torch.Generator().manual_seed(seed + 1000)  # a stream apart from random_batch's
    mask[:, :, 0] |= torch.rand(b, t, generator=days) > 0.3  # most days have >= 1 text ...
    mask[:, 0] = False  # ... every window has an empty first day
    mask[0] = False  # ... and one window has no text at all
    news = batch.news.masked_fill(~mask.unsqueeze(-1), float("nan"))  # padding must never be read
    return replace(batch, news=news)


def build(seed: int = 0, f: int = F_IN, e: int = E, **kw) -> StockNet:
    torch.manual_seed(seed)
    return StockNet(f, e, **{**SMALL, **kw})


def train_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The engine's training step contract: clean BCE + extra_loss."""
    loss = F.binary_cross_entropy_with_logits(model(batch).float(), batch.y)
    return loss + model.extra_loss(batch, loss)


@pytest.mark.parametrize("shape", [(1, 2), (4, 5), (7, 12)])
@pytest.mark.parametrize("variant", [{}, {"use_text": False}, {"use_price": False}])
def test_forward_shape_and_grads(shape, variant):
    b, t = shape
    model = build(**variant).train()
    batch = make_batch(b, t)
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


def test_single_day_window():
    """T = 1: no earlier days, no y_hist needed, the auxiliary term is 0."""
    model = build().train()
    batch = replace(make_batch(3, 1), y_hist=None)
    loss = train_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    assert torch.isfinite(model(batch)).all()


def test_empty_news_is_finite():
    model = build().train()
    batch = make_batch(5, 4)
    batch = replace(batch, news_mask=torch.zeros_like(batch.news_mask))  # no text anywhere
    loss = train_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(batch)).all()


def test_missing_news_raises_clear_error():
    batch = replace(make_batch(2, 3), news=None, news_mask=None)
    with pytest.raises(ValueError, match="use_news=true"):
        build().eval()(batch)
    # the price-only variant (TECHNICAL) does not need news, nor a news size (news-free data: E = 0)
    assert build(use_text=False).eval()(batch).shape == (2,)
    assert build(use_text=False, e=0).eval()(batch).shape == (2,)
    with pytest.raises(ValueError, match="news_size"):
        build(e=0)


def test_size_arguments_change_parameter_count():
    base = n_params(build())
    assert n_params(build(f=4)) != base  # input_size
    assert n_params(build(e=7)) != base  # news_size
    for kw in ({"hidden_size": 9}, {"latent_size": 5}, {"attention_size": 6},
               {"use_text": False}, {"use_price": False}):
        assert n_params(build(**kw)) != base, kw


def test_use_text_and_use_price_select_inputs():
    batch = make_batch(4, 5)
    other_news = replace(batch, news=torch.randn_like(batch.news))
    other_x = replace(batch, x=torch.randn_like(batch.x))
    with torch.no_grad():
        both = build().eval()
        assert not torch.allclose(both(batch)[1:], both(other_news)[1:])  # sample 0 has no text
        assert not torch.allclose(both(batch), both(other_x))
        price_only = build(use_text=False).eval()
        torch.testing.assert_close(price_only(batch), price_only(other_news), rtol=0, atol=0)
        text_only = build(use_price=False).eval()
        torch.testing.assert_close(text_only(batch), text_only(other_x), rtol=0, atol=0)


def test_dropout_acts_in_train_only():
    batch = make_batch(6, 5)
    outs = {}
    for p in (0.0, 0.5):
        model = build(dropout=p).train()
        torch.manual_seed(1)  # same latent noise for both
        outs[p] = model(batch)
        model.eval()
        with torch.no_grad():
            outs[("eval", p)] = model(batch)
    assert not torch.allclose(outs[0.0], outs[0.5])
    torch.testing.assert_close(outs[("eval", 0.0)], outs[("eval", 0.5)], rtol=0, atol=0)


def test_eval_deterministic_train_samples_latent():
    model = build()
    batch = make_batch(6, 5)
    model.train()
    assert not torch.allclose(model(batch), model(batch))  # reparameterised z_d, dropout 0
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)


def test_eval_ignores_labels():
    model = build().eval()
    batch = make_batch(8, 5)
    flipped = replace(batch, y=1 - batch.y, y_hist=1 - batch.y_hist)
    with torch.no_grad():
        ref = model(batch)
        torch.testing.assert_close(model(flipped), ref, rtol=0, atol=0)
        torch.testing.assert_close(model(replace(batch, y_hist=None)), ref, rtol=0, atol=0)
    # in training the posterior does read the labels
    model.train()
    torch.manual_seed(0)
    a = model(batch)
    torch.manual_seed(0)
    assert not torch.allclose(a, model(flipped))


def test_training_needs_y_hist():
    model = build().train()
    with pytest.raises(ValueError, match="y_hist"):
        model(replace(make_batch(4, 5), y_hist=None))


def test_eval_output_is_per_sample():
    model = build().eval()
    batch = make_batch(9, 6)
    with torch.no_grad():
        full = model(batch)
        for i in (0, 4, 8):
            sl = slice(i, i + 1)
            one = model(Batch(**{k: (v[sl] if v is not None else None) for k, v in vars(batch).items()}))
            torch.testing.assert_close(one[0], full[i], rtol=1e-5, atol=1e-6)


def test_bf16_autocast():
    batch = make_batch(4, 5)
    for variant in ({}, {"use_text": False}, {"use_price": False}):
        model = build(**variant).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch)
        assert out.shape == (4,) and torch.isfinite(out.float()).all()
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = train_loss(model, batch)
        loss.backward()
        assert torch.isfinite(loss)


# --- objective: KL annealing, auxiliary loss, extra_loss contract --------------------------------


def test_kl_annealing_grows_and_resumes():
    model = build(kl_weight=2.0, kl_anneal_steps=4).train()
    batch = make_batch(4, 5)
    weights = []
    for _ in range(6):
        train_loss(model, batch)
        weights.append(model.kl_anneal_weight())
    assert weights == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert int(model.state_dict()["kl_step"]) == 6
    resumed = build(seed=3, kl_weight=2.0, kl_anneal_steps=100)
    resumed.load_state_dict(model.state_dict())
    assert resumed.kl_anneal_weight() == pytest.approx(2.0 * 6 / 100)


def extra_and_grads(ref: StockNet, batch: Batch, use_extra: bool = True, **kw):
    model = StockNet(F_IN, E, **{**SMALL, **kw})
    model.load_state_dict(ref.state_dict())
    model.train()
    torch.manual_seed(5)  # same latent noise in every call
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.y)
    extra = model.extra_loss(batch, loss)
    (loss + extra if use_extra else loss).backward()
    return extra.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def test_extra_loss_terms_and_weights():
    ref = build()
    batch = make_batch(8, 6)
    extra, g_with = extra_and_grads(ref, batch, kl_anneal_steps=1)
    _, g_without = extra_and_grads(ref, batch, use_extra=False, kl_anneal_steps=1)
    assert extra > 0
    assert any(not torch.allclose(a, b) for a, b in zip(g_with, g_without))
    kl_only, _ = extra_and_grads(ref, batch, kl_anneal_steps=1, aux_weight=0.0)
    aux_only, _ = extra_and_grads(ref, batch, kl_anneal_steps=1, kl_weight=0.0)
    assert kl_only > 0 and aux_only > 0
    torch.testing.assert_close(kl_only + aux_only, extra)
    kl2, _ = extra_and_grads(ref, batch, kl_anneal_steps=1, aux_weight=0.0, kl_weight=2.0)
    torch.testing.assert_close(kl2, 2 * kl_only)
    aux2, _ = extra_and_grads(ref, batch, kl_anneal_steps=1, kl_weight=0.0, aux_weight=1.0)
    torch.testing.assert_close(aux2, 2 * aux_only)  # SMALL leaves aux_weight at its 0.5 default
    kl_first_step, _ = extra_and_grads(ref, batch, kl_anneal_steps=10, aux_weight=0.0)
    torch.testing.assert_close(kl_first_step, kl_only / 10)


def test_extra_loss_needs_training_forward():
    model = build().train()
    batch = make_batch(4, 5)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, torch.tensor(0.0))
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.y)
    assert model.extra_loss(batch, loss) > 0
    assert model._cache is None  # graph reference freed
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)  # second call: already consumed
    model.eval()
    model(batch)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)
    model.train()
    model(batch)
    with pytest.raises(RuntimeError, match="batch size"):
        model.extra_loss(make_batch(3, 5), loss)


@pytest.mark.parametrize(
    "kw, arg",
    [
        ({"input_size": 0}, "input_size"),
        ({"news_size": 0}, "news_size"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"latent_size": 1.5}, "latent_size"),
        ({"attention_size": True}, "attention_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"kl_weight": -1.0}, "kl_weight"),
        ({"kl_anneal_steps": 0}, "kl_anneal_steps"),
        ({"aux_weight": float("nan")}, "aux_weight"),
        ({"use_text": 1}, "use_text"),
        ({"use_price": "yes"}, "use_price"),
        ({"use_text": False, "use_price": False}, "use_text and use_price"),
    ],
)
def test_invalid_arguments(kw, arg):
    with pytest.raises(ValueError, match=arg):
        StockNet(**{"input_size": 3, "news_size": 4, **kw})


def test_hydra_instantiate():
    instantiate = pytest.importorskip("hydra.utils").instantiate
    cfg = {"_target_": "lightquant.models.stocknet.StockNet", "input_size": F_IN, "news_size": E,
           "hidden_size": 16, "dropout": 0, "kl_weight": 1, "aux_weight": 0}  # YAML ints accepted
    model = instantiate(cfg)
    assert isinstance(model, StockNet)
    assert model.eval()(make_batch(2, 4)).shape == (2,)


# --- learning ------------------------------------------------------------------------------------


def text_task(n: int, seed: int, signal_last: bool = True) -> Batch:
    """Label = whether any text of the LAST day has embedding component 0 > 1 (others random).

    With ``signal_last=False`` the signal text sits on a random earlier day of half the windows
    and the label is independent of it: nothing in the inputs predicts the label.
    """
    t = 5
    b = make_batch(n, t, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask = torch.rand(n, t, K, generator=g) > 0.5
    mask[:, -1, 0] = True  # the last day always has a text
    news = torch.randn(n, t, K, E, generator=g)
    news[..., 0] = news[..., 0].clamp(max=0.8)  # no accidental signal
    has = torch.rand(n, generator=g) > 0.5
    if signal_last:
        news[has, -1, 0, 0] = 2.0
        y = has.float()
    else:
        day = torch.randint(0, t - 1, (n,), generator=g)
        news[has, day[has], 0, 0] = 2.0
        mask[has, day[has], 0] = True
        y = (torch.rand(n, generator=g) > 0.5).float()
    y_hist = (torch.rand(n, t - 1, generator=g) > 0.5).float()
    return replace(b, news=news, news_mask=mask, y=y, y_hist=y_hist)


def fit_accuracy(train: Batch, test: Batch) -> tuple[float, float]:
    model = build(hidden_size=32, latent_size=8, attention_size=16, kl_anneal_steps=20)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        opt.zero_grad()
        train_loss(model, train).backward()
        opt.step()
    model.eval()  # accuracy from the prior: no label can help
    with torch.no_grad():
        return tuple(((model(b) > 0).float() == b.y).float().mean().item() for b in (train, test))


def test_learns_text_rule_on_last_day():
    train_acc, test_acc = fit_accuracy(text_task(256, 0), text_task(512, 100))
    assert train_acc > 0.85 and test_acc > 0.8, (train_acc, test_acc)


def test_no_signal_no_skill():
    """Labels independent of the inputs: held-out accuracy stays at chance (no label leak)."""
    _, test_acc = fit_accuracy(text_task(256, 0, signal_last=False), text_task(512, 100, signal_last=False))
    assert test_acc < 0.65, test_acc


def per_day_latents(model: StockNet, x: torch.Tensor, h: torch.Tensor, labels: torch.Tensor | None):
    """The variational decoder as written before its day-independent products left the loop: the
    prior and posterior layers on [x_d; h_d; z_{d-1}] (; y_d) day by day, the KL inside the loop."""
    from lightquant.models.variational import gaussian_kl as _gaussian_kl

    b = x.shape[0]
    z_prev, zs, kls = x.new_zeros(b, model.latent_size), [], []
    for d in range(x.shape[1]):
        base = torch.cat([x[:, d], h[:, d], z_prev], dim=-1)
        mu_p, logvar_p = model.prior_out(torch.tanh(model.prior(base))).chunk(2, dim=-1)
        if labels is None:
            z_d = mu_p
        else:
            hq = torch.tanh(model.posterior(torch.cat([base, labels[:, d : d + 1]], dim=-1)))
            mu_q, logvar_q = model.posterior_out(hq).chunk(2, dim=-1)
            z_d = mu_q + torch.randn_like(mu_q) * torch.exp(0.5 * logvar_q)
            kls.append(_gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))
        zs.append(z_d)
        z_prev = z_d
    return torch.stack(zs, 1), (torch.stack(kls, 1).sum(1) if kls else None)


@pytest.mark.parametrize("training", [True, False])
def test_decoder_computes_what_the_per_day_loop_computed(training):
    """Same weights, inputs and noise: the batched decoder's latents and per-day KL equal the
    per-day loop's, and so do the gradients of both through the weights and the inputs."""
    model = build(seed=3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, F_IN + 8, generator=g).requires_grad_(True)  # [c_d; prices], as _day_inputs gives
    h = torch.randn(6, 5, 8, generator=g).requires_grad_(True)
    labels = (torch.rand(6, 5, generator=g) > 0.5).float() if training else None
    outs = []
    for decoder in (model._latents, lambda *a: per_day_latents(model, *a)):
        torch.manual_seed(7)
        z, kl = decoder(x, h, labels)
        kl = kl.sum(-1) if kl is not None and kl.dim() == 2 else kl  # the batched one keeps days apart
        loss = z.sum() + (kl.sum() if kl is not None else 0)
        params = [x, h, model.prior.weight, model.prior_out.weight, model.posterior.weight]
        outs.append((z, kl, torch.autograd.grad(loss, params, allow_unused=True)))
    (z, kl, grads), (z_ref, kl_ref, grads_ref) = outs
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-6)
    if training:
        torch.testing.assert_close(kl, kl_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
