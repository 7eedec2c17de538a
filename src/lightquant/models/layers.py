"""Building blocks shared by the model zoo, and argument checks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightquant.choices import INITS, WORD_ENCODERS


def check_positive_int(name: str, value: int) -> int:
    """Reject non-integers (bool included) and values < 1, naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_non_negative_float(name: str, value: float, below_one: bool = False) -> float:
    """Accept ints too (YAML writes ``dropout: 0``), reject bools, negatives and NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not value >= 0:  # also catches NaN
        raise ValueError(f"{name} must be >= 0, got {value}")
    if below_one and not value < 1:
        raise ValueError(f"{name} must be < 1, got {value}")
    return float(value)


def check_bool(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def check_init(value: str) -> str:
    if value not in INITS:
        raise ValueError(f"init={value!r}: choose one of {', '.join(INITS)}")
    return value


def tensorflow_init(module: nn.Module, forget_bias: float = 1.0) -> None:
    """Re-initialise ``module``'s Linear and LSTM layers as TensorFlow 1 does for the Adv-ALSTM authors'
    code (``tf.layers.dense`` / ``tf.get_variable`` with ``glorot_uniform_initializer`` and zero biases,
    ``BasicLSTMCell``): Glorot-uniform weights, zero biases, and the cell's ``forget_bias`` on the forget
    gate. TensorFlow adds that constant to the gate and trains a bias starting at 0; a trainable bias
    starting at ``forget_bias`` computes the same function with the same gradients. An LSTM layer's
    kernel is one (input + hidden, 4 hidden) matrix there, so both of PyTorch's weight matrices are drawn
    with that matrix's Glorot bound. PyTorch's default (uniform +-1/sqrt(hidden) everywhere, no forget
    bias) starts every gate half open instead."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LSTM):
            h = m.hidden_size
            for name, p in m.named_parameters():
                if name.startswith("weight_ih"):
                    w_hh = getattr(m, name.replace("weight_ih", "weight_hh"))
                    bound = math.sqrt(6.0 / (p.shape[1] + w_hh.shape[1] + 4 * h))
                    nn.init.uniform_(p, -bound, bound)
                    nn.init.uniform_(w_hh, -bound, bound)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
                    if name.startswith("bias_ih"):
                        with torch.no_grad():
                            p[h : 2 * h] = forget_bias  # PyTorch's gate order: input, forget, cell, output


class TemporalAttention(nn.Module):
    """Additive attention over a set or sequence (Feng et al. 2019, eq. 5-6).

    score_t = u^T tanh(W_a h_t + b_a), alpha = softmax_t(score), a = sum_t alpha_t h_t.
    Used over time steps, and with a mask over a day's texts (news-level attention).
    """

    def __init__(self, hidden_size: int, attention_size: int) -> None:
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("attention_size", attention_size)
        self.proj = nn.Linear(hidden_size, attention_size)  # W_a, b_a
        # u; no bias, it would cancel in the softmax
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """h: (B, T, H), mask: (B, T) bool (True = keep) -> (a (B, H), alpha (B, T)).

        Rows whose mask is all False (a day without news) get alpha = 0 and a = 0
        instead of the NaN a plain masked softmax would give. ``context`` (B, C), with the
        attention built for H + C inputs: scores of [h_t; context] (a query shared by the set),
        computed without repeating the context for every t; ``a`` sums h alone.
        """
        w, n_h = self.proj.weight, h.shape[-1]
        # W [h_t; c] + b = W_h h_t + (W_c c + b): the context's part once per set
        shared = None if context is None else F.linear(context, w[:, n_h:], self.proj.bias).unsqueeze(1)
        sparse = mask is not None and h.device.type == "cpu"
        if sparse:
            # scores of the real elements only (a batch's text slots are mostly padding); on a GPU
            # the boolean gather's host sync would cost more than scoring the padding
            idx = real_rows(mask)
            real_h = h.reshape(-1, n_h).index_select(0, idx)  # (R, H)
            pre = F.linear(real_h, w[:, :n_h], None if shared is not None else self.proj.bias)
            if shared is not None:
                pre = pre + shared.squeeze(1).index_select(0, idx // mask.shape[1])  # each element's set's context
            real = self.score(torch.tanh(pre)).squeeze(-1).float()
            # finite fill, not -inf: an all-masked row would give NaN (and NaN gradients)
            scores = real.new_full((mask.numel(),), torch.finfo(real.dtype).min).index_copy(0, idx, real).view(mask.shape)
        else:
            pre = self.proj(h) if shared is None else F.linear(h, w[:, :n_h]) + shared
            scores = self.score(torch.tanh(pre)).squeeze(-1).float()  # (B, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        # softmax in float32: bf16/fp16 scores under autocast lose too much precision
        alpha = torch.softmax(scores, dim=-1)  # (B, T)
        if mask is not None:
            alpha = alpha * mask.any(dim=-1, keepdim=True)  # all-masked rows -> 0
        alpha = alpha.to(h.dtype)
        if sparse:  # the weighted sum over the real elements only
            weighted = alpha.reshape(-1).index_select(0, idx).unsqueeze(1) * real_h  # (R, H)
            return h.new_zeros(h.shape[0], n_h).index_add(0, idx // mask.shape[1], weighted), alpha
        a = torch.bmm(alpha.unsqueeze(1), h).squeeze(1)  # (B, 1, T) @ (B, T, H) -> (B, H)
        return a, alpha


def check_non_negative_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def price_news_inputs(batch, news_size: int) -> torch.Tensor:
    """Per-day inputs of a price model: ``batch.x`` (B, T, F), plus with ``news_size > 0`` the
    mean embedding of each day's texts (B, T, E) appended (zeros on days without news)."""
    if news_size == 0:
        return batch.x
    if batch.news is None or batch.news_mask is None:
        raise ValueError(f"model has news_size={news_size} but the batch has no news: run with use_news=true")
    if batch.news.shape[-1] != news_size:
        raise ValueError(f"batch news embeddings have size {batch.news.shape[-1]}, model news_size={news_size}")
    pooled = masked_mean(batch.news, batch.news_mask, dim=-2)  # (..., T, K, E) -> (..., T, E)
    return torch.cat([batch.x, pooled.to(batch.x.dtype)], dim=-1)  # (B, T, F+E)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``mask`` (x's shape without the last dim) is True; 0 if none."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` with a cheaper mask on the CPU: there torch's Bernoulli sampling costs about 3x
    comparing uniform draws with the keep rate (same distribution; it was 14-32 % of a SCINet
    step). On other devices torch's fused kernel is the faster one."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    keep = 1.0 - p
    return x * (torch.rand_like(x) < keep).to(x.dtype).div_(keep)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout` (the cheaper CPU mask); the same module otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def packed(fn, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``fn`` on the rows of ``x`` (..., E) where ``mask`` (x's shape without E) is True, zeros on the
    others: (..., H). On the CPU only the real rows are computed (a batch's text slots are mostly
    padding: 4 % real on CSMD50); on a GPU ``fn`` runs on every row, the padding zeroed first
    (a boolean gather syncs with the host), and padding rows hold fn(0): callers mask them."""
    if x.device.type != "cpu":
        return fn(x.masked_fill(~mask.unsqueeze(-1), 0.0))
    idx = real_rows(mask)
    rows = fn(x.reshape(-1, x.shape[-1]).index_select(0, idx))
    return rows.new_zeros(mask.numel(), rows.shape[-1]).index_copy(0, idx, rows).view(*mask.shape, -1)


def real_rows(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of ``mask``'s True elements, in order. Gathering rows with them (index_select) and
    putting results back (index_copy) computes what ``x[mask]`` / ``masked_scatter`` do, with gathers as
    backward: masked_scatter's backward is a masked_select over the mask broadcast to every feature,
    which was a third of a StockNet step on the CPU."""
    return mask.reshape(-1).nonzero().squeeze(1)


def check_texts(news: torch.Tensor, news_size: int, vocab_size: int, who: str) -> None:
    """``batch.news`` is what the model reads: word ids with ``vocab_size > 0``, else news_size-dim vectors."""
    if vocab_size and news.is_floating_point():
        raise ValueError(f"{who} has vocab_size={vocab_size} (it reads word ids) but batch.news holds text vectors: "
                         "run with encoder=words, or set model.vocab_size=0")
    if not vocab_size and not news.is_floating_point():
        raise ValueError(f"{who} reads text vectors (vocab_size=0) but batch.news holds word ids (encoder=words): "
                         "leave model.vocab_size null so it follows the data")
    if not vocab_size and news.shape[-1] != news_size:
        raise ValueError(f"batch news embeddings have size {news.shape[-1]}, model news_size={news_size}")


class WordEncoder(nn.Module):
    """A text's word ids -> one message vector: the word-level encoders of the news papers.

    ids (..., L) int, 0 = padding (a text's words first) -> (..., hidden_size). An embedding table
    (``vocab_size`` x ``embedding_size``, row 0 the padding) then, by ``kind``:

    - ``gru`` (StockNet, PEN): a bidirectional GRU over the words (packed: padding is never read);
      the message is the mean of both directions' final states, each having read the whole text
      (stocknet-code averages the two directions' outputs at the tweet's ticker position instead);
    - ``attention`` (HAN, as its public re-implementation): additive attention over the projected
      words, m = sum_l a_l tanh(W e_l + b);
    - ``mean``: tanh(W mean_l(e_l) + b), averaged word vectors.

    ``load_vectors`` copies pretrained / corpus-trained vectors into the table; ``freeze`` keeps it
    fixed in training (the encoder's own layers still train). ``dropout`` acts on the word vectors
    in training (stocknet-code's ``dropout_mel_in``).
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, kind: str = "gru",
                 attention_size: int = 64, freeze: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("news_size", embedding_size)
        check_positive_int("hidden_size", hidden_size)
        if kind not in WORD_ENCODERS:
            raise ValueError(f"word_encoder={kind!r}: choose one of {', '.join(WORD_ENCODERS)}")
        self.kind, self.hidden_size = kind, hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        self.embedding.weight.requires_grad_(not check_bool("freeze_embeddings", freeze))
        self.dropout = Dropout(check_non_negative_float("word_dropout", dropout, below_one=True))
        if kind == "gru":  # the two directions of a bidirectional GRU, each run on its own word order
            self.rnn = nn.GRU(embedding_size, hidden_size, batch_first=True)
            self.rnn_reverse = nn.GRU(embedding_size, hidden_size, batch_first=True)
        else:
            self.proj = nn.Linear(embedding_size, hidden_size)
            if kind == "attention":
                self.attention = TemporalAttention(hidden_size, attention_size)

    @torch.no_grad()
    def load_vectors(self, vectors: torch.Tensor) -> None:
        if tuple(vectors.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(f"word vectors {tuple(vectors.shape)} do not fit the embedding table "
                             f"{tuple(self.embedding.weight.shape)} (vocab_size, news_size)")
        self.embedding.weight.copy_(vectors)
        self.embedding.weight[0] = 0.0  # padding

    def _bidirectional(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(n, L) ids -> (n, H): the mean of both directions' states after each one read the whole text.

        Each direction runs on padded rows (the text first, then padding), the reverse one on every
        text's words reversed in place, and its state is read at the text's last word: padding after
        it never reaches that state. A packed sequence would skip the padding, but its backward pass
        zero-fills a gradient of every word's input projection at each of the L steps (L times the
        work: 58 % of a StockNet step with 40-word tweets). Texts run in groups of similar length,
        each padded to its own longest, so little padding is read (half the steps of one group
        padded to 40 words on the StockNet protocol's tweets)."""
        lengths = mask.sum(1).clamp_min(1)  # an empty text reads one padding step
        order = lengths.argsort(descending=True)
        out = [self._read(ids[rows], lengths[rows]) for rows in order.chunk(self.LENGTH_GROUPS)]
        return torch.cat(out).index_select(0, order.argsort())

    #: texts of a batch run in this many groups of similar length (fewer padding steps, one GRU call each)
    LENGTH_GROUPS = 4

    def _read(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Both directions over texts (n, L) of ``lengths`` (n,) words -> (n, H) their mean final state."""
        n, width = len(ids), int(lengths.max())  # later columns are padding in every row
        ids, pos = ids[:, :width], torch.arange(width, device=ids.device)
        backwards = ids.gather(1, torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos))
        w = self.rnn.weight_ih_l0
        last = (lengths - 1).view(n, 1, 1).expand(n, 1, self.hidden_size)
        states = [rnn(self.dropout(self.embedding(x)).to(w.dtype))[0].gather(1, last).squeeze(1)
                  for rnn, x in ((self.rnn, ids), (self.rnn_reverse, backwards))]
        return (states[0] + states[1]) / 2

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lead, length = ids.shape[:-1], ids.shape[-1]
        if ids.numel() == 0:  # no text in the whole batch (a news-free stretch of days): nothing to read
            return self.embedding.weight.new_zeros(*lead, self.hidden_size)
        # Each distinct text is read once and its vector copied to every slot holding it: overlapping
        # windows repeat a day's texts (an evaluation batch of consecutive days holds each text about T
        # times), and retweets repeat texts across days (15 % of a StockNet-protocol training batch's).
        ids, copies = torch.unique(ids.reshape(-1, length).long(), dim=0, return_inverse=True)  # (n, L), (N,)
        mask = ids > 0
        if self.kind == "gru":
            out = self._bidirectional(ids, mask)
        elif self.kind == "attention":
            e = self.dropout(self.embedding(ids))  # (n, L, D)
            out, _ = self.attention(torch.tanh(self.proj(e)), mask)  # (n, H); 0 for an empty text
        else:
            out = torch.tanh(self.proj(masked_mean(self.dropout(self.embedding(ids)), mask, dim=1)))
        return out.index_select(0, copies).reshape(*lead, -1)
