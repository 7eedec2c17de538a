"""Model zoo.

Every model is a single-device ``nn.Module`` built from keyword arguments (Hydra
``_target_``) with this interface:

- ``forward(batch: Batch) -> Tensor``: logits of shape (B,) from ``batch.x`` (B, T, F);
  no sigmoid, the engine applies ``BCEWithLogitsLoss``.
- optional ``extra_loss(batch: Batch, loss: Tensor) -> Tensor``: called in training right
  after ``loss = BCEWithLogits(model(batch), batch.y)``; its result is added to ``loss``
  before backward (used by ``AdvLSTM`` for its adversarial term).

Price models (``news_size > 0`` fuses each day's mean text embedding): ``LSTM``
(``bidirectional=True`` for BiLSTM), ``ALSTM``, ``AdvLSTM`` (Adv-ALSTM).
News models (need ``batch.news``): ``HAN``, ``StockNet``, ``PEN``.
Cross-stock: ``DTML`` (date items, ``batch_layout = "date"``). Multi-horizon: ``SCINet``
(``pred_len`` logits per sample).
"""

from lightquant.models.adv_lstm import AdvLSTM
from lightquant.models.alstm import ALSTM
from lightquant.models.dtml import DTML
from lightquant.models.han import HAN
from lightquant.models.layers import TemporalAttention
from lightquant.models.lstm import LSTM
from lightquant.models.pen import PEN
from lightquant.models.scinet import SCINet
from lightquant.models.stocknet import StockNet

__all__ = ["LSTM", "ALSTM", "AdvLSTM", "DTML", "HAN", "PEN", "SCINet", "StockNet", "TemporalAttention"]
