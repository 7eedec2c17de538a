"""PEN (Li et al., AAAI 2023, "PEN: Prediction-Explanation Network to Forecast Stock Price
Movement with Better Explainability"): a StockNet-style variational recurrent model whose text
path selects a few texts per day, so the selection weights (the "Vector of Salience") explain
which news items drove a prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightquant.batch import Batch
from lightquant.models.layers import (
    Dropout,
    TemporalAttention,
    WordEncoder,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    check_texts,
    packed,
)
from lightquant.models.needs import DataNeeds
from lightquant.models.variational import gaussian, gaussian_kl, kl_anneal, sample


class PEN(nn.Module):
    """Shared Representation Learning -> Deep Recurrent Generation -> temporal attention -> head.

    - Text Selection: per day, additive attention of the price GRU state s_d over the day's
      K projected texts n_dk (masked) gives the salience beta_dk (B, T, K), 0 on days without
      text; the selected text vector is c_d = sum_k beta_dk n_dk.
    - Text Memory: a GRU over [c_d, has_text_d] carries text information across days (the
      flag tells it when a day brought nothing new, so stale news need not look fresh).
    - Information Fusion: f_d = gate * p_d + (1 - gate) * m_d, gate = sigmoid(W [p_d, m_d]).
    - Deep Recurrent Generation (StockNet's VMD): h_d = GRU(f_d); latent z_d with prior
      N(mu, sigma)(h_d, z_{d-1}) and posterior (h_d, z_{d-1}, y_d), y_d from ``batch.y_hist``
      for earlier days and ``batch.y`` for the last; posterior sample in training, prior mean
      in eval (no label is read in eval); g_d = tanh(W [f_d, h_d, z_d]). A training batch
      without ``y_hist`` samples the prior on earlier days (no KL for them).
    - Temporal attention over all T days with the last state g_T as query; the head reads only
      the attended a = sum_d alpha_d g_d, so every day acts on the logit through alpha_d and
      ``explain`` = beta_dk * alpha_d is the text's effective weight.

    ``extra_loss`` = kl_weight * anneal * mean KL + salience_weight * mean entropy of beta over
    days with text (low entropy = few texts picked; the default 0.1 made the explanations of a
    planted rule markedly sharper in the tests without hurting accuracy). anneal = min(1, (step + 1) /
    kl_anneal_steps), step counted in the ``kl_step`` buffer (saved with the weights).
    ``dropout`` acts on the projected prices and texts and before the head.

    Texts arrive as vectors (n_dk = tanh(W e_dk + b)) or, with ``vocab_size > 0`` (``encoder=words``),
    as word ids read by a :class:`~lightquant.models.layers.WordEncoder` (``word_encoder``: a
    bidirectional GRU over the words by default, as the StockNet code PEN builds on), trained with
    the model from the encoder's word vectors (news_size = their size). A text vector n_dk has
    ``message_size`` dims (PEN's code: ``mel_h_size`` 100 against ``h_size`` 150), ``hidden_size`` when
    left unset. ``word_dropout`` drops word vectors in training (``dropout_mel_in``).
    """

    needs = DataNeeds(news=True, from_data=("vocab_size",))  # word ids with encoder=words

    def __init__(
        self,
        input_size: int,
        news_size: int,
        hidden_size: int = 64,
        latent_size: int = 32,
        attention_size: int = 64,
        dropout: float = 0.2,
        kl_weight: float = 1.0,
        kl_anneal_steps: int = 1000,
        salience_weight: float = 0.1,
        vocab_size: int | None = 0,
        word_encoder: str = "gru",
        freeze_embeddings: bool = False,
        message_size: int | None = None,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in [("input_size", input_size), ("news_size", news_size), ("hidden_size", hidden_size),
                            ("latent_size", latent_size), ("attention_size", attention_size),
                            ("kl_anneal_steps", kl_anneal_steps)]:
            check_positive_int(name, value)
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        self.kl_weight = check_non_negative_float("kl_weight", kl_weight)
        self.kl_anneal_steps = kl_anneal_steps
        self.salience_weight = check_non_negative_float("salience_weight", salience_weight)
        self.news_size, self.vocab_size = news_size, check_non_negative_int("vocab_size", vocab_size or 0)
        h, z = hidden_size, latent_size
        m = hidden_size if message_size is None else check_positive_int("message_size", message_size)
        self.price_proj = nn.Linear(input_size, h)
        if vocab_size:  # texts as word ids: a bi-GRU over each text's words (PEN's text encoder, from StockNet's)
            self.words = WordEncoder(vocab_size, news_size, m, word_encoder, attention_size, freeze_embeddings,
                                     word_dropout)
        else:
            self.news_proj = nn.Linear(news_size, m)
        self.price_rnn = nn.GRU(h, h, batch_first=True)  # market state s_d: the selection query
        self.selection = TemporalAttention(m + h, attention_size)  # over [n_dk, s_d]
        self.memory = nn.GRU(m + 1, h, batch_first=True)  # over [c_d, has_text_d]
        self.fusion_gate = nn.Linear(2 * h, h)
        self.drg_rnn = nn.GRU(h, h, batch_first=True)
        self.prior = nn.Linear(h + z, 2 * z)  # -> (mu, log var)
        self.posterior = nn.Linear(h + z + 1, 2 * z)  # the extra input is the day's label
        self.generate = nn.Linear(2 * h + z, h)
        self.temporal = TemporalAttention(2 * h, attention_size)  # over [g_d, g_T]
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(h, 1)
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))
        self._cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> logits (B,), beta (B, T, K), alpha (B, T), kl (B,) (zeros in eval)."""
        if batch.news is None:
            raise ValueError("PEN needs news (batch.news is None): run with use_news=true")
        x, news = batch.x, batch.news  # (B, T, F), (B, T, K, E)
        b, t, k, _ = news.shape
        check_texts(news, self.news_size, self.vocab_size, "PEN")
        mask = batch.news_mask if batch.news_mask is not None else news.new_ones(b, t, k, dtype=torch.bool)
        p = self.dropout(torch.tanh(self.price_proj(x)))  # (B, T, H)
        s, _ = self.price_rnn(p)  # (B, T, H) price state up to each day
        encode = self.words if self.vocab_size else lambda e: torch.tanh(self.news_proj(e))
        n = packed(lambda e: self.dropout(encode(e)), news, mask)  # (B, T, K, H), real texts only
        # Text Selection: score_dk = u^T tanh(W_n n_dk + W_s s_d + b); empty days -> beta = 0
        _, beta = self.selection(n.reshape(b * t, k, -1), mask.reshape(b * t, k), context=s.reshape(b * t, -1).to(n.dtype))
        beta = beta.view(b, t, k)  # (B, T, K) the Vector of Salience
        c = (beta.unsqueeze(-1).to(n.dtype) * n).sum(2)  # (B, T, H), 0 on days without text
        has_text = mask.any(-1, keepdim=True).to(c.dtype)  # (B, T, 1)
        m, _ = self.memory(torch.cat([c, has_text], dim=-1))  # (B, T, H) text memory
        m = m.to(p.dtype)
        gate = torch.sigmoid(self.fusion_gate(torch.cat([p, m], dim=-1)))  # (B, T, H)
        f = gate * p + (1 - gate) * m  # (B, T, H) fused day representation
        hd, _ = self.drg_rnn(f)  # (B, T, H)
        hd = hd.to(f.dtype)
        # Labels enter only the training posterior; eval never reads batch.y / y_hist.
        labels = None
        if self.training:
            if batch.y_hist is not None and batch.y_hist.shape != (b, t - 1):
                raise ValueError(f"batch.y_hist must have shape {(b, t - 1)}, got {tuple(batch.y_hist.shape)}")
            last = batch.y.reshape(b, 1).float()
            # without y_hist the earlier days fall back to the prior (no KL for them)
            labels = torch.cat([batch.y_hist.float(), last], 1) if batch.y_hist is not None else last  # (B, T or 1)
        zz, kl = self._latents(hd, labels)  # (B, T, Z), (B,)
        g = torch.tanh(self.generate(torch.cat([f, hd, zz], dim=-1)))  # (B, T, H)
        # query-aware temporal attention: score_d = u^T tanh(W_g g_d + W_q g_T + b)
        _, alpha = self.temporal(g, context=g[:, -1])  # (B, T)
        a = torch.bmm(alpha.unsqueeze(1).to(g.dtype), g).squeeze(1)  # (B, H)
        return self.fc(self.dropout(a)).squeeze(-1), beta, alpha, kl

    def _latents(self, hd: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Deep Recurrent Generation's latents: hd (B, T, H), labels (B, T) or (B, 1) in training,
        None in eval -> z (B, T, Z), KL (B,) summed over the days with a posterior (zeros in eval)."""
        b, t, _ = hd.shape
        # prior(h_d, z_{d-1}) and posterior(h_d, z_{d-1}, y_d): only z_{d-1} depends on the previous
        # day, so the h_d and y_d parts are one product over all days and the loop keeps one
        # (B, Z) x (Z, 4Z) product for both, the sampling and nothing else (the KL after it)
        zsz, hsz = self.prior.out_features // 2, hd.shape[-1]
        pre = F.linear(hd, self.prior.weight[:, :hsz], self.prior.bias)  # (B, T, 2Z)
        w_z = self.prior.weight[:, hsz:]  # (2Z, Z)
        if labels is not None:
            y = labels * 2 - 1  # {-1, 1}; without y_hist only the last day's is known (the rest unused)
            y = y if y.shape[1] == t else torch.cat([y.new_zeros(b, t - 1), y], 1)  # (B, T)
            wq = self.posterior.weight  # columns [h; z; y]
            pre_q = F.linear(hd, wq[:, :hsz], self.posterior.bias) + y.unsqueeze(-1).to(hd.dtype) * wq[:, -1]
            pre, w_z = torch.cat([pre, pre_q], -1), torch.cat([w_z, wq[:, hsz:-1]], 0)  # (B, T, 4Z), (4Z, Z)
        z_prev = hd.new_zeros(b, zsz)  # (B, Z)
        zs, post = [], []
        for d in range(t):  # z_d depends on z_{d-1}: the one loop over days
            out = torch.addmm(pre[:, d], z_prev.to(pre.dtype), w_z.t())
            mu_p, lv_p = gaussian(out[:, : 2 * zsz])  # (B, Z) each
            if labels is None:
                z = mu_p  # eval: prior mean, deterministic
            elif d == t - 1 or labels.shape[1] == t:  # this day's label is known: posterior
                mu_q, lv_q = gaussian(out[:, 2 * zsz :])
                z = sample(mu_q, lv_q)
                post.append((mu_q, lv_q, mu_p, lv_p))
            else:  # training without y_hist: sample the prior
                z = sample(mu_p, lv_p)
            zs.append(z)
            z_prev = z
        # the KL of the posterior days at once, summed over them
        kl = gaussian_kl(*(torch.stack(v, 1) for v in zip(*post))).sum(1) if post else torch.zeros(b, device=hd.device)
        return torch.stack(zs, 1).to(hd.dtype), kl

    def forward(self, batch: Batch) -> torch.Tensor:
        logits, beta, _, kl = self._run(batch)
        # keep this step's KL and salience for extra_loss (training with grad only)
        self._cache = (kl, beta, batch.news_mask) if (self.training and torch.is_grad_enabled()) else None
        return logits  # (B,)

    @torch.no_grad()
    def explain(self, batch: Batch) -> torch.Tensor:
        """(B, T, K) effective weight of each text: beta_dk * alpha_d; 0 on masked texts, sums to
        <= 1 per sample (< 1 when some days have no text). Call in eval mode."""
        _, beta, alpha, _ = self._run(batch)
        return beta.float() * alpha.float().unsqueeze(-1)

    def kl_anneal(self) -> torch.Tensor:
        """The KL annealing factor of the next training step (:func:`~lightquant.models.variational.kl_anneal`)."""
        return kl_anneal(self.kl_step + 1, self.kl_anneal_steps)

    def extra_loss(self, batch: Batch, loss: torch.Tensor, criterion: object = None) -> torch.Tensor:
        """Annealed KL + salience entropy of the preceding training forward; advances the step.
        Neither term scores a prediction, so the run's ``criterion`` has nothing to act on here."""
        cache, self._cache = self._cache, None  # drop the graph reference right away
        if cache is None:
            raise RuntimeError("PEN.extra_loss needs a preceding forward in training mode with grad enabled")
        kl, beta, mask = cache
        if kl.shape[0] != len(batch):
            raise RuntimeError(f"extra_loss batch size {len(batch)} != forward batch size {kl.shape[0]}")
        total = self.kl_weight * self.kl_anneal() * kl.mean()
        self.kl_step += 1
        beta = beta.float()  # (B, T, K)
        # clamped log, not xlogy: d(b log b)/db = -inf at the masked b = 0 would NaN the grads
        entropy = -(beta * beta.clamp_min(1e-12).log()).sum(-1)  # (B, T), 0 on days without text
        days = beta.sum(-1) > 0 if mask is None else mask.any(-1)  # (B, T) days with text
        total = total + self.salience_weight * entropy.sum() / days.sum().clamp_min(1)
        return total
