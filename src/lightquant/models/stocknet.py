"""StockNet (Xu & Cohen, ACL 2018, "Stock Movement Prediction from Tweets and Historical Prices").

Market Information Encoder (text attention per day + prices) -> Variational Movement Decoder
(GRU + per-day latent z_d, posterior q(z_d | ., y_d) in training, prior p(z_d | .) at eval)
-> Attentive Temporal Auxiliary (the final day attends over the earlier days' predictions).
The KL term and the attention-weighted auxiliary loss of the earlier days enter the objective
through the engine's ``extra_loss`` hook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightquant.batch import Batch
from lightquant.losses import Criterion, bce
from lightquant.models.layers import (
    Dropout,
    TemporalAttention,
    WordEncoder,
    check_bool,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    check_texts,
    packed,
)
from lightquant.models.needs import DataNeeds
from lightquant.models.variational import gaussian, gaussian_kl, kl_anneal, sample


class StockNet(nn.Module):
    """StockNet for binary next-day movement; ``forward`` returns the logit of day T's movement.

    Days are indexed 0..T-1 in the window; day d's target is the movement d -> d+1, i.e.
    ``batch.y_hist[:, d]`` for d < T-1 and ``batch.y`` for the last day (the prediction).

    Messages: with ``vocab_size > 0`` (``encoder=words``) each text arrives as word ids and the
    paper's message encoder, a bidirectional GRU over its words (``word_encoder=gru``; see
    :class:`~lightquant.models.layers.WordEncoder`), embeds it, trained with the model from the
    encoder's word vectors (news_size = their size); with text vectors a tanh projection stands in.
    A message vector has ``message_size`` dims (stocknet-code's ``mel_h_size``: 100 against
    ``h_size`` 150), ``hidden_size`` when left unset. ``word_dropout`` drops word vectors in training (``dropout_mel_in``).
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
        aux_weight: float = 0.5,
        use_text: bool = True,
        use_price: bool = True,
        vocab_size: int | None = 0,
        word_encoder: str = "gru",
        freeze_embeddings: bool = False,
        message_size: int | None = None,
        word_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        # news_size 0 is fine for the price-only variant: news-free data reports E = 0
        if not (use_text is False and type(news_size) is int and news_size == 0):
            check_positive_int("news_size", news_size)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("latent_size", latent_size)
        check_positive_int("attention_size", attention_size)
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        self.kl_weight = check_non_negative_float("kl_weight", kl_weight)
        self.kl_anneal_steps = check_positive_int("kl_anneal_steps", kl_anneal_steps)
        self.aux_weight = check_non_negative_float("aux_weight", aux_weight)
        self.use_text = check_bool("use_text", use_text)
        self.use_price = check_bool("use_price", use_price)
        if not (use_text or use_price):
            raise ValueError("use_text and use_price are both False: StockNet needs texts, prices or both")
        self.news_size, self.vocab_size = news_size, check_non_negative_int("vocab_size", vocab_size or 0)
        h, z = hidden_size, latent_size
        m = hidden_size if message_size is None else check_positive_int("message_size", message_size)
        day_size = (m if use_text else 0) + (input_size if use_price else 0)
        if use_text and vocab_size:  # texts as word ids: the paper's bi-GRU over each message's words
            self.words = WordEncoder(vocab_size, news_size, m, word_encoder, attention_size, freeze_embeddings,
                                     word_dropout)
        elif use_text:  # texts as vectors (encoder=tfidf / word2vec / transformer): a projection instead
            self.text_proj = nn.Linear(news_size, m)
        if use_text:
            self.text_attention = TemporalAttention(m, attention_size)  # corpus vector c_d
        self.dropout = Dropout(dropout)
        self.rnn = nn.GRU(day_size, h, batch_first=True)  # h_d
        # h^z_d = tanh(W [x_d; h_d; z_{d-1}] (; y_d)) -> (mu, log var); the posterior also sees y_d
        self.prior = nn.Linear(day_size + h + z, h)
        self.posterior = nn.Linear(day_size + h + z + 1, h)
        self.prior_out = nn.Linear(h, 2 * z)
        self.posterior_out = nn.Linear(h, 2 * z)
        self.g = nn.Linear(h + z, h)  # g_d = tanh(W_g [h_d; z_d] + b)
        self.day_head = nn.Linear(h, 1)  # per-day logit y~_d
        # Attentive Temporal Auxiliary: information score w_i^T tanh(W_i g_d), dependency score
        # g_T^T tanh(W_d g_d); final logit from [sum_d v*_d y~_d; g_T]
        self.info_proj = nn.Linear(h, attention_size, bias=False)
        self.info_score = nn.Linear(attention_size, 1, bias=False)
        self.dep_proj = nn.Linear(h, h, bias=False)
        self.out = nn.Linear(1 + h, 1)
        self.latent_size = z
        # training steps seen by extra_loss: a buffer so KL annealing resumes from a checkpoint
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))
        self._cache: dict[str, torch.Tensor] | None = None

    def _kl_scale(self) -> torch.Tensor:
        """The KL weight of the last training step (:func:`~lightquant.models.variational.kl_anneal`)."""
        return kl_anneal(self.kl_step, self.kl_anneal_steps) * self.kl_weight

    def kl_anneal_weight(self) -> float:
        """Current KL weight: min(1, step / kl_anneal_steps) * kl_weight."""
        return float(self._kl_scale())

    def _day_inputs(self, batch: Batch) -> torch.Tensor:
        """Market Information Encoder: (B, T, F) prices + (B, T, K, E) texts -> (B, T, D)."""
        parts = []
        if self.use_text:
            if batch.news is None or batch.news_mask is None:
                raise ValueError(
                    "StockNet with use_text=true needs news: run with use_news=true "
                    "(or set model.use_text=false for the price-only variant)"
                )
            check_texts(batch.news, self.news_size, self.vocab_size, "StockNet")
            b, t, k, _ = batch.news.shape
            mask = batch.news_mask.bool()  # (B, T, K)
            # message embeddings of the real texts only (padding may hold garbage: never read)
            encode = self.words if self.vocab_size else lambda e: torch.tanh(self.text_proj(e))
            m = packed(encode, batch.news, mask)  # (B, T, K, H)
            c, _ = self.text_attention(m.reshape(b * t, k, -1), mask.reshape(b * t, k))  # (B*T, H), 0 for no text
            parts.append(c.reshape(b, t, -1))  # (B, T, H)
        if self.use_price:
            parts.append(batch.x)  # (B, T, F)
        if len(parts) == 2 and parts[0].dtype != parts[1].dtype:  # autocast: bf16 text vs f32 prices
            parts[1] = parts[1].to(parts[0].dtype)
        return self.dropout(torch.cat(parts, dim=-1))  # (B, T, D)

    def _latents(self, x: torch.Tensor, h: torch.Tensor,
                 labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Variational Movement Decoder's latents: x (B, T, D), h (B, T, H), labels (B, T) in training,
        None in eval -> z (B, T, Z) (posterior samples, or the prior means), KL per day (B, T) or None."""
        b, t, _ = x.shape
        # The prior's and posterior's first layers read [x_d; h_d; z_{d-1}] (and y_d): only the
        # z_{d-1} part depends on the previous day, so the rest is one product over all days, and
        # the loop keeps one (B, Z) x (Z, 2H) product, the two output layers and the sampling.
        zi = x.shape[-1] + h.shape[-1]  # where z_{d-1}'s columns start
        days = torch.cat([x, h], dim=-1)  # (B, T, D+H)
        pre_p = F.linear(days, self.prior.weight[:, :zi], self.prior.bias)  # (B, T, H)
        w_z = self.prior.weight[:, zi:]  # (H, Z)
        if labels is not None:
            wq = self.posterior.weight  # columns [x; h; z; y]
            pre_q = F.linear(days, wq[:, :zi], self.posterior.bias) + labels.to(days.dtype).unsqueeze(-1) * wq[:, -1]
            pre = torch.cat([pre_p, pre_q], dim=-1)  # (B, T, 2H)
            w_z = torch.cat([w_z, wq[:, zi:-1]], dim=0)  # (2H, Z)
        else:
            pre = pre_p
        z_prev = x.new_zeros(b, self.latent_size)  # z_{-1} = 0
        zs, stats = [], []
        for d in range(t):  # z_d depends on z_{d-1}: a recurrence over days
            hz = torch.tanh(torch.addmm(pre[:, d], z_prev.to(pre.dtype), w_z.t()))  # (B, H) or (B, 2H)
            if labels is None:
                z_d = self.prior_out(hz)[:, : self.latent_size]  # eval: the prior mean, deterministic and label-free
            else:
                hp, hq = hz.chunk(2, dim=-1)
                mu_q, logvar_q = gaussian(self.posterior_out(hq))  # (B, Z) each
                z_d = sample(mu_q, logvar_q)
                stats.append((hp, mu_q, logvar_q))  # the prior's outputs only enter the KL: after the loop
            zs.append(z_d)
            z_prev = z_d
        if labels is None:
            return torch.stack(zs, dim=1), None
        hp, mu_q, logvar_q = (torch.stack(v, dim=1) for v in zip(*stats))  # (B, T, .)
        # the KL of every day at once: it feeds no later day
        return torch.stack(zs, dim=1), gaussian_kl(mu_q, logvar_q, *gaussian(self.prior_out(hp)))

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self._day_inputs(batch)  # (B, T, D)
        b, t, _ = x.shape
        h, _ = self.rnn(x)  # (B, T, H)
        labels = None
        if self.training:  # the posterior sees each day's movement; never at eval
            if t > 1 and batch.y_hist is None:
                raise ValueError("StockNet needs batch.y_hist (earlier days' movements) in training when T > 1")
            hist = batch.y_hist if t > 1 else batch.y.new_zeros(b, 0)
            labels = torch.cat([hist.float(), batch.y.float().unsqueeze(1)], dim=1)  # (B, T)
        z, kl_days = self._latents(x, h, labels)  # (B, T, Z), (B, T) or None
        g = torch.tanh(self.g(torch.cat([h, z.to(h.dtype)], dim=-1)))  # (B, T, H)
        day_logits = self.day_head(g).squeeze(-1)  # (B, T) y~_d
        g_past, g_last = g[:, :-1], g[:, -1]  # (B, T-1, H), (B, H)
        info = self.info_score(torch.tanh(self.info_proj(g_past))).squeeze(-1)  # (B, T-1)
        dep = torch.bmm(torch.tanh(self.dep_proj(g_past)), g_last.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        v = torch.softmax((info * dep).float(), dim=-1)  # (B, T-1); float32 softmax under autocast
        past = (v * day_logits[:, :-1].float()).sum(-1, keepdim=True)  # (B, 1); 0 when T == 1
        logits = self.out(torch.cat([past.to(g_last.dtype), g_last], dim=-1)).squeeze(-1)  # (B,)
        if labels is not None:  # keep what extra_loss needs from this very forward
            self._cache = {
                "kl": kl_days.sum(1),  # (B,) summed over days
                "v": v,  # (B, T-1) ATA attention
                "day_logits": day_logits[:, :-1],  # (B, T-1) y~ of the earlier days
                "y_hist": labels[:, :-1],  # (B, T-1) their known movements
            }
        else:
            self._cache = None
        return logits

    def extra_loss(self, batch: Batch, loss: torch.Tensor, criterion: Criterion = bce) -> torch.Tensor:
        """annealed KL(q || p) summed over days + aux_weight * attention-weighted ``criterion`` (the
        run's loss, BCE by default) of the earlier days."""
        cache, self._cache = self._cache, None  # drop our reference to the graph right away
        if cache is None:
            raise RuntimeError("StockNet.extra_loss needs a preceding forward in training mode")
        if cache["kl"].shape[0] != len(batch):
            raise RuntimeError(f"extra_loss batch size {len(batch)} != forward batch size {cache['kl'].shape[0]}")
        with torch.no_grad():
            self.kl_step.add_(1)  # one call per training step
        kl = cache["kl"].mean()  # sum over days (in forward), mean over the batch
        per_day = criterion(cache["day_logits"], cache["y_hist"])  # (B, T-1) per earlier day
        aux = (cache["v"] * per_day).sum(-1).mean()  # 0 when T == 1
        return self._kl_scale() * kl + self.aux_weight * aux
