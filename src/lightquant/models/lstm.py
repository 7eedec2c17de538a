"""Plain (Bi)LSTM classifier: the last hidden state feeds a linear head."""

from __future__ import annotations

import torch
from torch import nn

from lightquant.batch import Batch
from lightquant.models.layers import (
    Dropout,
    check_bool,
    check_init,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    price_news_inputs,
    tensorflow_init,
)


class LSTM(nn.Module):
    """LSTM over the look-back window -> last hidden state -> dropout -> Linear -> logits (B,).

    ``dropout`` acts between stacked LSTM layers (``layers > 1``) and always before the head,
    so it also acts with ``layers=1``. With ``bidirectional=True`` (BiLSTM) the feature is the
    forward direction's state at t=T-1 concatenated with the backward direction's state at
    t=0, i.e. each direction's state after reading the whole window. ``news_size > 0``
    (``use_news=true``) appends each day's mean text embedding to its price features.
    ``mapping_size > 0`` first maps each day's inputs through ``tanh(W x_t + b)`` of that width,
    as the Adv-ALSTM authors' LSTM baseline (their ALSTM network without attention) does.
    ``init="tensorflow"`` initialises the weights as their TensorFlow code did (``tensorflow_init``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 128,
        layers: int = 2,
        dropout: float = 0.2,
        bidirectional: bool = False,
        news_size: int = 0,
        mapping_size: int = 0,
        init: str = "torch",
    ) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("layers", layers)
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        check_bool("bidirectional", bidirectional)
        self.news_size = check_non_negative_int("news_size", news_size)
        self.directions = 2 if bidirectional else 1
        check_non_negative_int("mapping_size", mapping_size)
        self.mapping = nn.Linear(input_size + news_size, mapping_size) if mapping_size else None
        self.rnn = nn.LSTM(
            mapping_size or input_size + news_size,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            # nn.LSTM warns when inter-layer dropout is set for a single layer
            dropout=dropout if layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(self.directions * hidden_size, 1)
        if check_init(init) == "tensorflow":
            tensorflow_init(self)

    def latent(self, batch: Batch) -> torch.Tensor:
        """(B, T, F) -> (B, D*H) last-layer final state of each direction, after dropout."""
        x = price_news_inputs(batch, self.news_size)  # (B, T, F+E)
        if self.mapping is not None:
            x = torch.tanh(self.mapping(x))  # (B, T, M)
        elif torch.is_autocast_enabled(x.device.type):
            # oneDNN on CPUs without native bf16 (AVX2 only) fails on an fp32 input that autocast
            # casts for the LSTM, and runs one that arrives in the autocast dtype
            x = x.to(torch.get_autocast_dtype(x.device.type))
        _, (h_n, _) = self.rnn(x)  # h_n: (layers*D, B, H), last layer's directions last
        # h_n[-2] = forward at t=T-1, h_n[-1] = backward at t=0 (bidirectional case)
        last = h_n[-self.directions :]  # (D, B, H)
        return self.dropout(last.transpose(0, 1).reshape(last.shape[1], -1))  # (B, D*H)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        """(B, D*H) -> logits (B,)."""
        return self.fc(e).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.latent(batch))  # (B,)
