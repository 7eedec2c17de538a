"""PEN: shapes, gradients, arguments, labels only in the training posterior, KL annealing,
explanations, and learning (and explaining) a rule planted in the texts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.models.pen import PEN

from .fakes import n_params, random_batch

SMALL = {"hidden_size": 8, "latent_size": 4, "attention_size": 6, "dropout": 0.0, "salience_weight": 0.0}


def make_batch(b: int, t: int, f: int, k: int = 3, e: int = 5, seed: int = 0) -> Batch:
    """Random batch; sample 0 has an empty first day, sample 1 (if any) an empty window.

    On top of ``random_batch``: PEN's day and text attentions must handle a day with no text
    and a window with none (test_explain_shape_masking_and_mass checks samples 0 and 1).
    """
    batch = random_batch(b, t, f, k, e, seed=seed)
    batch.news_mask[0, 0] = False
    if b > 1:
        batch.news_mask[1] = False
    return batch


def build(f: int = 3, e: int = 5, seed: int = 0, **kw) -> PEN:
    torch.manual_seed(seed)
    return PEN(f, e, **{**SMALL, **kw})


def train_loss(model: PEN, batch: Batch) -> torch.Tensor:
    """The engine's training step contract: clean BCE + extra_loss."""
    loss = F.binary_cross_entropy_with_logits(model(batch).float(), batch.y)
    return loss + model.extra_loss(batch, loss)


def extra(model: PEN, batch: Batch, seed: int = 0) -> torch.Tensor:
    """extra_loss of one seeded training forward (same z samples for equal weights)."""
    model.train()
    torch.manual_seed(seed)
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.y)
    return model.extra_loss(batch, loss).detach()


@pytest.mark.parametrize("shape", [(1, 1, 3, 1, 4), (4, 5, 3, 3, 5), (6, 7, 2, 4, 6)])
def test_forward_shape_and_grads(shape):
    b, t, f, k, e = shape
    model = build(f, e, salience_weight=0.5).train()  # the entropy of masked texts must not NaN
    batch = make_batch(b, t, f, k, e)
    assert model(batch).shape == (b,)
    model.zero_grad()
    train_loss(model, batch).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (b,) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kw, arg",
    [({"input_size": 0}, "input_size"), ({"news_size": 0}, "news_size"), ({"hidden_size": True}, "hidden_size"),
     ({"latent_size": 0}, "latent_size"), ({"attention_size": 1.5}, "attention_size"),
     ({"dropout": 1.0}, "dropout"), ({"dropout": float("nan")}, "dropout"), ({"kl_weight": -1.0}, "kl_weight"),
     ({"kl_anneal_steps": 0}, "kl_anneal_steps"), ({"salience_weight": -0.1}, "salience_weight")],
)
def test_invalid_arguments(kw, arg):
    with pytest.raises(ValueError, match=arg):
        PEN(**{"input_size": 3, "news_size": 5, **kw})


def test_size_arguments_change_parameter_count():
    base = n_params(build())
    assert n_params(build(f=4)) != base  # input_size
    assert n_params(build(e=6)) != base  # news_size
    for kw in ({"hidden_size": 9}, {"latent_size": 5}, {"attention_size": 7}):
        assert n_params(build(**kw)) != base, kw


def test_dropout_acts_in_train_only():
    batch = make_batch(6, 5, 3)
    drop, plain = build(dropout=0.5), build(dropout=0.0)
    outs = []
    for model in (drop, plain):
        torch.manual_seed(1)
        outs.append(model.train()(batch))
    assert not torch.allclose(*outs)
    with torch.no_grad():
        torch.testing.assert_close(drop.eval()(batch), plain.eval()(batch), rtol=0, atol=0)


def test_kl_weight_scales_the_kl_term():
    batch = make_batch(6, 5, 3)
    one = extra(build(kl_weight=1.0, kl_anneal_steps=1), batch)
    assert one > 0
    torch.testing.assert_close(extra(build(kl_weight=2.0, kl_anneal_steps=1), batch), 2 * one)
    assert extra(build(kl_weight=0.0, kl_anneal_steps=1), batch) == 0


def test_kl_annealing_grows_and_is_saved():
    batch = make_batch(6, 5, 3)
    model = build(kl_anneal_steps=4)
    ref = extra(build(kl_anneal_steps=1), batch)  # full weight at once
    seen = []
    for _ in range(6):
        seen.append(model.kl_anneal().item())
        state = {k: v.clone() for k, v in model.state_dict().items()}
        value = extra(model, batch)
        model.load_state_dict({**state, "kl_step": model.kl_step})  # keep weights, keep counter
        torch.testing.assert_close(value, seen[-1] * ref)
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert model.state_dict()["kl_step"].item() == 6  # checkpointed with the weights
    with torch.no_grad():
        model.eval()(batch)
    assert model.kl_step.item() == 6  # only training steps count


def test_salience_weight_adds_mean_entropy():
    batch = make_batch(6, 5, 3)
    base = extra(build(salience_weight=0.0), batch)
    model = build(salience_weight=0.5)
    beta = model._run(batch)[1].detach()  # (B, T, K); independent of z and (dropout 0) of mode
    ent = -(beta * beta.clamp_min(1e-12).log()).sum(-1)  # (B, T)
    expected = ent.sum() / batch.news_mask.any(-1).sum()
    assert expected > 0
    torch.testing.assert_close(extra(model, batch) - base, 0.5 * expected)


def test_empty_news_does_not_nan():
    batch = make_batch(4, 5, 3)
    batch = replace(batch, news_mask=torch.zeros_like(batch.news_mask))
    model = build(salience_weight=0.5).train()
    loss = train_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    assert torch.isfinite(model(batch)).all()
    assert (model.explain(batch) == 0).all()


def test_missing_news_raises():
    batch = replace(make_batch(2, 4, 3), news=None, news_mask=None)
    with pytest.raises(ValueError, match="use_news=true"):
        build()(batch)
    with pytest.raises(ValueError, match="news_size=6"):
        build(e=6)(make_batch(2, 4, 3, e=5))


def test_eval_deterministic_and_per_sample():
    model = build().eval()
    batch = make_batch(7, 6, 3)
    with torch.no_grad():
        full = model(batch)
        torch.testing.assert_close(model(batch), full, rtol=0, atol=0)
        for i in (0, 1, 6):
            one = Batch(**{k: (v[i : i + 1] if v is not None else None) for k, v in vars(batch).items()})
            torch.testing.assert_close(model(one)[0], full[i], rtol=1e-5, atol=1e-6)


def test_labels_only_reach_the_training_posterior():
    model = build()
    batch = make_batch(6, 5, 3)
    flipped = replace(batch, y=1 - batch.y, y_hist=1 - batch.y_hist)
    model.eval()
    with torch.no_grad():
        ref = model(batch)
        torch.testing.assert_close(model(flipped), ref, rtol=0, atol=0)
        torch.testing.assert_close(model(replace(batch, y_hist=None)), ref, rtol=0, atol=0)
        torch.testing.assert_close(model.explain(flipped), model.explain(batch), rtol=0, atol=0)
    model.train()  # the test above is not vacuous: training does read the labels
    outs = []
    for b in (batch, flipped, replace(batch, y=1 - batch.y)):
        torch.manual_seed(0)
        outs.append(model(b))
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    torch.manual_seed(0)
    assert torch.isfinite(train_loss(model, replace(batch, y_hist=None)))  # prior for earlier days
    with pytest.raises(ValueError, match="y_hist"):
        model(replace(batch, y_hist=batch.y_hist[:, :2]))


def test_bf16_autocast_forward_and_training_step():
    model = build()
    batch = make_batch(4, 5, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.eval()(batch)
        ex = model.explain(batch)
    assert out.shape == (4,) and torch.isfinite(out.float()).all() and torch.isfinite(ex).all()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = train_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_explain_shape_masking_and_mass():
    model = build().eval()
    batch = make_batch(8, 5, 3, k=4)
    batch.news_mask[2] = True  # every day of sample 2 has all texts
    ex = model.explain(batch)
    assert ex.shape == (8, 5, 4)
    assert (ex[~batch.news_mask] == 0).all() and (ex >= 0).all()
    mass = ex.sum((1, 2))
    assert (mass <= 1 + 1e-5).all()
    assert mass[1] == 0  # empty window: no text to blame
    torch.testing.assert_close(mass[2], torch.tensor(1.0))  # every day has text: all weight on texts
    assert mass[0] < 1  # first day empty: its temporal weight goes to no text


def test_extra_loss_needs_training_forward():
    model = build().train()
    batch = make_batch(4, 5, 3)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, torch.tensor(0.0))
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.y)
    model.extra_loss(batch, loss)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)  # state consumed
    with torch.no_grad():
        model(batch)
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.extra_loss(batch, loss)


def test_hydra_instantiate():
    instantiate = pytest.importorskip("hydra.utils").instantiate
    cfg = {"_target_": "lightquant.models.pen.PEN", "input_size": 3, "news_size": 5, "hidden_size": 8,
           "latent_size": 4, "attention_size": 6, "dropout": 0, "kl_weight": 1, "salience_weight": 0}
    model = instantiate(cfg)
    assert isinstance(model, PEN) and model(make_batch(2, 4, 3)).shape == (2,)


# --- learning ----------------------------------------------------------------------------------


def rule_batch(b: int, seed: int, planted: bool = True) -> tuple[Batch, torch.Tensor]:
    """T=5, K=4, E=8. planted: label = the last day holds a text with component 0 > 1 (exactly
    one, at index sig); earlier days' texts are random N(0, 1), so ~16% of them look like a signal
    too. Not planted: labels are random and a signal text sits on a random earlier day of a
    random half of the samples, independent of the label."""
    t, k, e = 5, 4, 8
    g = torch.Generator().manual_seed(seed)
    news = torch.randn(b, t, k, e, generator=g)
    mask = torch.rand(b, t, k, generator=g) < 0.5
    y = (torch.rand(b, generator=g) < 0.5).float()
    news[:, -1, :, 0] = news[:, -1, :, 0].clamp(max=0.5)
    idx, sig = torch.arange(b), torch.randint(0, k, (b,), generator=g)
    where = y.bool() if planted else torch.rand(b, generator=g) < 0.5
    day = torch.full((b,), t - 1) if planted else torch.randint(0, t - 1, (b,), generator=g)
    news[idx[where], day[where], sig[where], 0] = 1.5 + torch.rand(int(where.sum()), generator=g)
    mask[idx[where], day[where], sig[where]] = True
    x = torch.randn(b, t, 3, generator=g)
    y_hist = (torch.rand(b, t - 1, generator=g) < 0.5).float()
    return Batch(x, y, idx, idx, idx, y_hist=y_hist, news=news, news_mask=mask), sig


def fit(batch: Batch, steps: int = 200) -> PEN:
    torch.manual_seed(0)
    model = PEN(3, 8, hidden_size=16, latent_size=4, attention_size=16, dropout=0.2,
                kl_anneal_steps=50, salience_weight=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        model.train()
        opt.zero_grad()
        train_loss(model, batch).backward()
        opt.step()
    return model.eval()


def accuracy(model: PEN, batch: Batch) -> float:
    with torch.no_grad():
        return ((model(batch) > 0).float() == batch.y).float().mean().item()


def test_learns_and_explains_the_planted_text_rule():
    train, _ = rule_batch(512, seed=0)
    test, sig = rule_batch(512, seed=1)
    model = fit(train)
    assert accuracy(model, train) > 0.85  # eval mode: the prior, no label read
    assert accuracy(model, test) > 0.85
    ex = model.explain(test)  # (B, T, K)
    pos = test.y.bool()
    top = ex.flatten(1).argmax(-1)  # the text with the largest effective weight
    hit = (top == (ex.shape[1] - 1) * ex.shape[2] + sig)[pos].float().mean().item()
    assert hit > 0.7, hit


def test_finds_nothing_when_the_texts_do_not_tell():
    train, _ = rule_batch(512, seed=0, planted=False)
    test, _ = rule_batch(512, seed=1, planted=False)
    assert accuracy(fit(train), test) < 0.65


def per_day_latents(model: PEN, hd: torch.Tensor, labels: torch.Tensor | None):
    """Deep Recurrent Generation as written before its day-independent products left the loop."""
    from lightquant.models.variational import gaussian as _gaussian
    from lightquant.models.variational import gaussian_kl as _gaussian_kl

    b, t, _ = hd.shape
    z_prev, zs, kl = hd.new_zeros(b, model.prior.out_features // 2), [], torch.zeros(b)
    for d in range(t):
        hz = torch.cat([hd[:, d], z_prev], dim=-1)
        mu_p, lv_p = _gaussian(model.prior(hz))
        if labels is None:
            z = mu_p
        elif d == t - 1 or labels.shape[1] == t:
            y_d = labels[:, d - t].unsqueeze(-1) * 2 - 1
            mu_q, lv_q = _gaussian(model.posterior(torch.cat([hz, y_d], dim=-1)))
            z = mu_q + (0.5 * lv_q).exp() * torch.randn_like(mu_q)
            kl = kl + _gaussian_kl(mu_q, lv_q, mu_p, lv_p)
        else:
            z = mu_p + (0.5 * lv_p).exp() * torch.randn_like(mu_p)
        zs.append(z)
        z_prev = z
    return torch.stack(zs, 1), kl


@pytest.mark.parametrize("labels_kind", ["all days", "last day only", "eval"])
def test_generation_computes_what_the_per_day_loop_computed(labels_kind):
    """Same weights, inputs and noise: the batched generation's latents and KL equal the per-day
    loop's, and so do the gradients through the weights and the inputs."""
    model = build(seed=3)
    g = torch.Generator().manual_seed(0)
    hd = torch.randn(6, 5, 8, generator=g).requires_grad_(True)
    labels = {"all days": (torch.rand(6, 5, generator=g) > 0.5).float(),
              "last day only": (torch.rand(6, 1, generator=g) > 0.5).float(), "eval": None}[labels_kind]
    outs = []
    for decoder in (model._latents, lambda *a: per_day_latents(model, *a)):
        torch.manual_seed(7)
        z, kl = decoder(hd, labels)
        grads = torch.autograd.grad(z.sum() + kl.sum(), [hd, model.prior.weight, model.posterior.weight],
                                    allow_unused=True)
        outs.append((z, kl, grads))
    (z, kl, grads), (z_ref, kl_ref, grads_ref) = outs
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kl, kl_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
