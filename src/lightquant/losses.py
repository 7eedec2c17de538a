"""Per-label classification losses on logits, shared by the engine and the models' extra terms.

At the package top (like ``batch.py``) so the engine and the models, which import nothing from
each other, both name them. Each takes logits and {0, 1} labels of one shape and returns the
per-label loss in float32 (autocast may hand back bf16/fp16 logits); the caller averages over
the real labels.

- ``bce``: binary cross-entropy with logits, the default.
- ``hinge``: ``max(0, 1 - s * logit)`` with ``s = 2y - 1`` in {-1, +1}: the Adv-ALSTM authors'
  objective (``tf.losses.hinge_loss`` in their ``pred_lstm.py``). The decision rule stays
  ``logit >= 0`` (``sigmoid(logit) >= 0.5``), so metrics mean the same under either loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lightquant.errors import ConfigError

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), y.float(), reduction="none")


def hinge(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    sign = 2.0 * y.float() - 1.0
    return torch.relu(1.0 - sign * logits.float())


#: trainer.loss -> per-label criterion
LOSSES: dict[str, Criterion] = {"bce": bce, "hinge": hinge}


def get_criterion(name: str) -> Criterion:
    if name not in LOSSES:
        raise ConfigError(f"trainer.loss={name!r}; use one of {sorted(LOSSES)}")
    return LOSSES[name]


def masked_loss(criterion: Criterion, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``criterion`` over the real labels (padding stocks, missing horizons excluded)."""
    if logits.shape != y.shape:
        raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for labels of shape {tuple(y.shape)}")
    per = criterion(logits, y)
    if mask is None:
        return per.mean()
    w = mask.to(torch.float32)
    return (per * w).sum() / w.sum().clamp_min(1.0)
