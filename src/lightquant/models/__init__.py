"""Model zoo.

Every model is a single-device ``nn.Module`` built from keyword arguments (Hydra
``_target_``) with this interface:

- ``forward(batch: Batch) -> Tensor``: logits of shape (B,) from ``batch.x`` (B, T, F);
  no sigmoid, the engine applies the run's loss (``trainer.loss``: BCE with logits or hinge).
- optional ``extra_loss(batch: Batch, loss: Tensor, criterion) -> Tensor``: called in training
  right after ``loss = criterion(model(batch), batch.y).mean()``; its result is added to ``loss``
  before backward (``AdvLSTM``'s adversarial term, StockNet's KL and auxiliary days, PEN's KL
  and salience). ``criterion`` (``lightquant.losses``) scores any extra predictions the same way.

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
