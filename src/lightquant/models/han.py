"""HAN: Hybrid Attention Network (Hu et al., WSDM 2018, "Listening to Chaotic Whispers: A Deep
Learning Framework for News-oriented Stock Trend Prediction").

News-level attention over each day's texts -> day vectors -> bidirectional GRU over the days ->
day-level (temporal) attention -> MLP -> logit. The paper's self-paced learning schedule is a
training-loop policy, not part of the network, and is left out.
"""

from __future__ import annotations

import torch
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


class HAN(nn.Module):
    """n = tanh(W_n e + b) per text -> news attention (masked) -> day vector d_t
    -> [d_t, x_t if price_size] -> BiGRU -> day attention -> Linear-ELU-dropout-Linear -> logit.

    The projection of the E-dim text embeddings to ``hidden_size`` (not in the paper, whose news
    vectors are averaged word embeddings fed directly to the attention) decouples the model width
    from the text encoder (E = 768 for BERT-like encoders) and its tanh bounds the vectors the
    attention and the GRU see, like ALSTM's feature mapping layer, whatever the encoder's scale.
    Days without any text get d_t = 0 (TemporalAttention's all-masked rule) and still pass through
    the GRU, which carries context from the neighbouring days; the day-level attention is thus
    unmasked, as in the paper.

    Word level (``vocab_size > 0``, data from ``encoder=words``): each text arrives as word ids and
    a :class:`~lightquant.models.layers.WordEncoder` (``word_encoder``: attention over its words by
    default, as HAN's public re-implementation; ``mean``: the averaged word vectors the paper
    describes) gives n, trained with the model from the encoder's word vectors (news_size = their size).
    """

    needs = DataNeeds(news=True, from_data=("vocab_size",))  # word ids with encoder=words

    def __init__(
        self,
        news_size: int,
        hidden_size: int = 128,
        attention_size: int = 64,
        mlp_size: int = 64,
        layers: int = 1,
        dropout: float = 0.2,
        price_size: int = 0,
        vocab_size: int | None = 0,
        word_encoder: str = "attention",
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("news_size", news_size)
        self.vocab_size = check_non_negative_int("vocab_size", vocab_size or 0)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("attention_size", attention_size)
        check_positive_int("mlp_size", mlp_size)
        check_positive_int("layers", layers)
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        if isinstance(price_size, bool) or not isinstance(price_size, int) or price_size < 0:
            raise ValueError(f"price_size must be an int >= 0, got {price_size!r}")
        self.news_size, self.price_size = news_size, price_size
        if vocab_size:  # texts as word ids: the word-level encoder gives n
            self.words = WordEncoder(vocab_size, news_size, hidden_size, word_encoder, attention_size, freeze_embeddings)
        else:
            self.news_proj = nn.Linear(news_size, hidden_size)  # W_n, b: E -> H
        self.news_attention = TemporalAttention(hidden_size, attention_size)  # over a day's K texts
        self.rnn = nn.GRU(
            hidden_size + price_size,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,  # single layer: nn.GRU would warn
        )
        self.day_attention = TemporalAttention(2 * hidden_size, attention_size)  # over the T days
        # the paper's discriminative network: one ELU hidden layer, then the classifier
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden_size, mlp_size), nn.ELU(), Dropout(dropout), nn.Linear(mlp_size, 1)
        )

    def _check(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.news is None:
            raise ValueError("HAN needs news: batch.news is None; run with use_news=true")
        if batch.news_mask is None:
            raise ValueError("HAN needs batch.news_mask (which of the K text slots are real) with batch.news")
        if batch.news.dim() != 4:
            raise ValueError(f"batch.news must be (B, T, K, news_size={self.news_size}) vectors or (B, T, K, words) "
                             f"ids, got {tuple(batch.news.shape)}")
        check_texts(batch.news, self.news_size, self.vocab_size, "HAN")
        if batch.news_mask.shape != batch.news.shape[:-1]:
            raise ValueError(f"batch.news_mask {tuple(batch.news_mask.shape)} must be batch.news's (B, T, K)")
        if self.price_size and batch.x.shape[-1] != self.price_size:
            raise ValueError(f"price_size={self.price_size} but batch.x has {batch.x.shape[-1]} features")
        return batch.news, batch.news_mask.bool()

    def _attend(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> V (B, 2H) the day-attended GRU states, alpha (B, T, K) news weights, beta (B, T) day weights."""
        news, mask = self._check(batch)
        b, t, k, _ = news.shape
        # real texts only (padding never read: its alpha is 0, but 0 * NaN/inf padding would be NaN)
        n = packed(self.words if self.vocab_size else lambda e: torch.tanh(self.news_proj(e)), news, mask)  # (B, T, K, H)
        # news-level attention, all days at once; days without text give d = 0, alpha = 0
        d, alpha = self.news_attention(n.reshape(b * t, k, -1), mask.reshape(b * t, k))  # (B*T, H), (B*T, K)
        d = d.reshape(b, t, -1)  # (B, T, H)
        if self.price_size:
            d = torch.cat([d, batch.x.to(d.dtype)], dim=-1)  # (B, T, H + P)
        # match the GRU weights' dtype: under CPU autocast d is bf16 while the GRU may stay fp32
        h, _ = self.rnn(d.to(self.rnn.weight_ih_l0.dtype))  # (B, T, 2H) both directions' states
        v, beta = self.day_attention(h)  # (B, 2H), (B, T)
        return v, alpha.reshape(b, t, k), beta

    def forward(self, batch: Batch) -> torch.Tensor:
        v, _, _ = self._attend(batch)
        return self.mlp(v).squeeze(-1)  # (B,) logits

    def explain(self, batch: Batch) -> torch.Tensor:
        """(B, T, K) effective weight of each text: news-level alpha times its day's attention beta.

        Zero for padding slots; a window's weights sum to the day attention of its days with news
        (1 when every day has a text). Call in eval mode: GRU inter-layer dropout moves beta.
        """
        _, alpha, beta = self._attend(batch)
        return alpha * beta.unsqueeze(-1)  # (B, T, K)
