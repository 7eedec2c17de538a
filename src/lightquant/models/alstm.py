"""Attentive LSTM (Feng et al., IJCAI 2019, "Enhancing Stock Movement Prediction with
Adversarial Training", section 3.1)."""

from __future__ import annotations

import torch
from torch import nn

from lightquant.batch import Batch
from lightquant.models.layers import (
    Dropout,
    TemporalAttention,
    check_init,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    price_news_inputs,
    tensorflow_init,
)


class ALSTM(nn.Module):
    """m_t = tanh(W_m x_t + b) -> LSTM -> temporal attention a -> e = [a, h_T] -> dropout -> Linear.

    ``mapping_size`` is the width of m_t: ``None`` (the default) takes ``hidden_size``; the
    authors' code maps the features to as many units as there are features (``input_size``).

    The model is split into ``latent`` (everything up to and including dropout) and ``head``
    (the linear classifier) so that Adv-ALSTM can perturb exactly the latent the head sees.
    ``dropout`` acts between stacked LSTM layers (``layers > 1``) and on the latent.
    ``news_size > 0`` (``use_news=true``) appends each day's mean text embedding to x_t.
    ``init="tensorflow"`` initialises the weights as the authors' TensorFlow code did
    (``tensorflow_init``: Glorot, zero biases, forget bias 1).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 128,
        attention_size: int = 128,
        layers: int = 2,
        dropout: float = 0.2,
        news_size: int = 0,
        mapping_size: int | None = None,
        init: str = "torch",
    ) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        mapping_size = hidden_size if mapping_size is None else check_positive_int("mapping_size", mapping_size)
        check_positive_int("attention_size", attention_size)
        check_positive_int("layers", layers)
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        self.news_size = check_non_negative_int("news_size", news_size)
        self.mapping = nn.Linear(input_size + news_size, mapping_size)  # feature mapping layer W_m, b
        self.rnn = nn.LSTM(
            mapping_size,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,  # single layer: nn.LSTM would warn
        )
        self.attention = TemporalAttention(hidden_size, attention_size)
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(2 * hidden_size, 1)
        if check_init(init) == "tensorflow":
            tensorflow_init(self)

    def latent(
        self, batch: Batch, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) -> e (B, 2H), and the attention weights alpha (B, T) if asked."""
        m = torch.tanh(self.mapping(price_news_inputs(batch, self.news_size)))  # (B, T, H)
        h, _ = self.rnn(m)  # (B, T, H) last layer's states at every step
        a, alpha = self.attention(h)  # (B, H), (B, T)
        # dropout inside the latent (not in head) so an adversarial perturbation is computed
        # and applied on the very tensor, dropout mask included, that the head consumed
        e = self.dropout(torch.cat([a, h[:, -1]], dim=-1))  # (B, 2H)
        return (e, alpha) if return_attention else e

    def head(self, e: torch.Tensor) -> torch.Tensor:
        """(B, 2H) -> logits (B,)."""
        return self.fc(e).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.latent(batch))  # (B,)
