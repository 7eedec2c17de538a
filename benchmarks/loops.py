"""The training loops the sections time: the engine's own, and the bare PyTorch loop that is
the obvious alternative to it.

The bare loop is what one writes by hand with nothing but PyTorch: the whole training split
materialised once as ordinary tensors (``x`` (N, T, F), ``news`` (N, T, K, E), ...), a
shuffled index per epoch, slicing, forward, BCE, backward, gradient clipping, optimizer step.
It does the same arithmetic as the engine (same model, optimizer, clipping, extra loss) and
none of the engine's bookkeeping (label-weighted losses for accumulation/DDP, autocast and
loss-scaler hooks, loss logging, progress bar, NaN check).
"""

from __future__ import annotations

import copy
from dataclasses import fields, replace

import torch
import torch.nn.functional as F

from lightquant.batch import Batch
from lightquant.engine import Trainer
from lightquant.evaluation.metrics import split_metrics
from lightquant.settings import EarlyStoppingSettings, TrainerSettings

CLIP = 1.0  # conf/trainer/default.yaml gradient_clip_val: both loops clip alike
#: AdamW as conf/trainer/default.yaml builds it (one fused kernel over all parameters), in both loops
FUSED = {"fused": True}


def materialise(data, split: str = "train") -> Batch:
    """Every item of ``split`` gathered once into plain tensors: the bare loop's input."""
    return data.batch(split, torch.arange(len(data.splits[split]), device=data.device))


def index_batch(full: Batch, idx: torch.Tensor) -> Batch:
    """Rows ``idx`` of every tensor of a materialised split (what ``X[idx]`` code does)."""
    return replace(full, **{f.name: getattr(full, f.name)[idx] for f in fields(full) if getattr(full, f.name) is not None})


class BareLoop:
    """A hand-written epoch over pre-built tensors (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, full: Batch, batch_size: int, lr: float = 3e-4,
                 precision: torch.dtype | None = None, seed: int = 0):
        self.model, self.full, self.batch_size = model, full, batch_size
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4, **FUSED)
        self.extra = getattr(model, "extra_loss", None)
        self.gen = torch.Generator().manual_seed(seed)
        self.precision = precision  # None: fp32; a dtype: autocast around forward + loss

    def step(self, b: Batch) -> None:
        if self.precision is None:
            logits = self.model(b)
            loss = F.binary_cross_entropy_with_logits(logits, b.y)
        else:
            with torch.autocast(b.x.device.type, dtype=self.precision):
                logits = self.model(b)
                loss = F.binary_cross_entropy_with_logits(logits.float(), b.y)
        if self.extra is not None:
            loss = loss + self.extra(b, loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.opt.step()

    def epoch(self) -> int:
        self.model.train()
        n = len(self.full)
        order = torch.randperm(n, generator=self.gen)
        for i in range(0, n, self.batch_size):
            self.step(index_batch(self.full, order[i : i + self.batch_size]))
        return n


def engine(model: torch.nn.Module, batch_size: int, precision: str = "32", lr: float = 3e-4, seed: int = 0,
           epochs: int = 1000, device: torch.device | None = None) -> Trainer:
    """The project's Trainer as training.train builds it (AdamW, clipping), without checkpoints or a
    progress bar; ``Trainer.train_epoch(data)`` is the timed engine loop."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4, **FUSED)
    settings = TrainerSettings(epochs=epochs, early_stopping=EarlyStoppingSettings(patience=None), gradient_clip_val=CLIP,
                               precision=precision, progress=False)
    return Trainer(model, opt, None, settings, device=device or torch.device("cpu"), batch_size=batch_size, seed=seed,
                   score=split_metrics)


def twin(model: torch.nn.Module) -> torch.nn.Module:
    """An identical copy (same weights), so both loops start from the same point."""
    return copy.deepcopy(model)
