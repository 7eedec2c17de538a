"""The one training engine every model goes through.

A model is any ``nn.Module`` with ``forward(batch) -> logits (B,)``; it may add an
auxiliary training loss through ``extra_loss(batch, loss) -> Tensor`` (Adv-LSTM's
adversarial term). The engine knows models only through that interface.

Trackers, plots and the like attach as callbacks: objects with any of
``on_epoch_end(trainer, row)`` (``row`` = the epoch's logged metrics) and
``on_fit_end(trainer)``; the engine imports none of them.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from lightquant.data.market import MarketData
from lightquant.engine.checkpoint import atomic_save
from lightquant.engine.device import gpu_status
from lightquant.engine.early_stopping import EarlyStopping
from lightquant.engine.seed import rng_state
from lightquant.evaluation.metrics import classification_metrics

log = logging.getLogger(__name__)

#: epochs with at least this many batches get a progress bar (on a terminal)
PROGRESS_MIN_BATCHES = 50


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def masked_bce(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean BCE-with-logits over the real labels (padding stocks, missing horizons excluded).
    In float32: autocast may hand back bf16/fp16 logits."""
    if logits.shape != y.shape:
        raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for labels of shape {tuple(y.shape)}")
    if mask is None:
        return F.binary_cross_entropy_with_logits(logits.float(), y)
    w = mask.to(torch.float32)
    per = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
    return (per * w).sum() / w.sum().clamp_min(1.0)


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        *,
        device: torch.device,
        epochs: int,
        batch_size: int,
        seed: int,
        early_stopping: EarlyStopping,
        gradient_clip_val: float | None = None,
        eval_batch_size: int = 1024,
        checkpoint_dir: str | Path | None = None,
        checkpoint_extra: dict | None = None,
        progress: bool | None = None,
        callbacks: Sequence[object] = (),
    ) -> None:
        if epochs < 1:
            raise ValueError(f"trainer.epochs={epochs} must be >= 1")
        if batch_size < 1:
            raise ValueError(f"dataset.batch_size={batch_size} must be >= 1")
        self.model = model.to(device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.early_stopping = early_stopping
        self.gradient_clip_val = gradient_clip_val
        self.eval_batch_size = eval_batch_size
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_extra = checkpoint_extra or {}
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.callbacks = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self._extra_loss: Callable | None = getattr(model, "extra_loss", None)

    # ------------------------------------------------------------------ training
    def _epoch_order(self, n: int) -> torch.Tensor:
        # Keyed by (seed, epoch) rather than a running generator: a resumed run or
        # another rank reproduces the order without carrying generator state.
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(n, generator=g)

    def train_epoch(self, data: MarketData) -> float:
        self.model.train()
        n = len(data.splits["train"])
        order = self._epoch_order(n).to(self.device)
        n_batches = (n + self.batch_size - 1) // self.batch_size
        total = torch.zeros((), device=self.device)
        with Progress(
            TextColumn(f"epoch {self.epoch + 1}/{self.epochs}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(), transient=True, disable=not (self.progress and n_batches >= PROGRESS_MIN_BATCHES),
        ) as bar:
            task = bar.add_task("train", total=n_batches)
            for i in range(0, n, self.batch_size):
                batch = data.batch("train", order[i : i + self.batch_size])
                logits = self.model(batch)  # shaped like batch.y
                loss = masked_bce(logits, batch.y, batch.y_mask)
                objective = loss + self._extra_loss(batch, loss) if self._extra_loss else loss
                self.optimizer.zero_grad(set_to_none=True)
                objective.backward()
                if self.gradient_clip_val:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.gradient_clip_val)
                self.optimizer.step()
                total += loss.detach() * len(batch)  # summed on device: no CPU sync per step
                bar.advance(task)
        mean = float(total) / n
        if not np.isfinite(mean):
            raise FloatingPointError(
                f"Training loss became {mean} in epoch {self.epoch + 1}; lower trainer.lr, set "
                "trainer.gradient_clip_val, or check the data for extreme values"
            )
        return mean

    def fit(self, data: MarketData) -> list[dict[str, float]]:
        """Train until ``epochs`` or early stopping; leaves the model with the best weights."""
        if len(data.splits["val"]) == 0:
            raise ValueError("The validation split is empty; check dataset.splits (train_end < val_end within the data)")
        best_state = copy.deepcopy(self.model.state_dict())
        start = time.perf_counter()
        first_epoch = self.epoch
        while self.epoch < self.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(data)
            if self.scheduler is not None:
                self.scheduler.step()
            val = self.evaluate(data, "val")
            self.epoch += 1
            row = {"epoch": self.epoch, "lr": lr, "train/loss": train_loss, **{f"val/{k}": v for k, v in val.items()}}
            self.history.append(row)
            improved = self.early_stopping.step(row, self.epoch)
            if improved:
                best_state = copy.deepcopy(self.model.state_dict())
            elapsed = time.perf_counter() - start
            eta = elapsed / (self.epoch - first_epoch) * (self.epochs - self.epoch)
            log.info(
                "epoch %d/%d | %s elapsed, ETA %s | train loss %.4f | val loss %.4f acc %.4f mcc %.4f | lr %.2e%s%s",
                self.epoch, self.epochs, _fmt_time(elapsed), _fmt_time(eta), train_loss,
                val["loss"], val["accuracy"], val["mcc"], lr, " | " + gpu_status(self.device) if self.device.type == "cuda" else "",
                " *" if improved else "",
            )
            self._save("last.pt")
            if improved:
                self._save("best.pt")
            self._callback("on_epoch_end", row)
            if self.early_stopping.should_stop:
                log.info(
                    "Early stopping: %s did not improve for %d epochs (best %.4f at epoch %d)",
                    self.early_stopping.monitor, self.early_stopping.patience,
                    self.early_stopping.best, self.early_stopping.best_epoch,
                )
                break
        self.model.load_state_dict(best_state)
        if self.early_stopping.best is not None:
            log.info("Restored best weights from epoch %d", self.early_stopping.best_epoch)
        self._callback("on_fit_end")
        return self.history

    def _callback(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, data: MarketData, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, labels and label mask of every item of ``split``, in the split's order
        (shaped like the split's ``y``: (N,), (N, H) with horizons, (N, S) for date items)."""
        self.model.eval()
        s = data.splits[split]
        logits = []
        for i in range(0, len(s), self.eval_batch_size):
            batch = data.batch(split, torch.arange(i, min(i + self.eval_batch_size, len(s)), device=data.device))
            logits.append(self.model(batch).float())
        y = s.y.cpu()
        mask = s.mask.cpu() if s.mask is not None else torch.ones_like(y, dtype=torch.bool)
        return (torch.cat(logits).cpu() if logits else torch.zeros_like(y)), y, mask

    def evaluate(self, data: MarketData, split: str, per_horizon: bool = False) -> dict:
        """Loss (the training objective, over every real label) and the headline metrics: the
        t+1 movement of every stock-day (horizon 1 of a multi-horizon model). ``per_horizon``
        adds ``horizons: {"t+h": metrics}``."""
        logits, y, mask = self.predict(data, split)
        if not mask.any():
            return {"loss": float("nan"), "accuracy": float("nan"), "mcc": float("nan"), "f1": float("nan"), "n": 0}
        out = {"loss": float(masked_bce(logits, y, mask))}
        if data.horizons > 1:  # (N, H): the headline is t+1
            out.update(classification_metrics(y[:, 0].numpy(), torch.sigmoid(logits[:, 0]).numpy()))
            if per_horizon:
                out["horizons"] = {
                    f"t+{h + 1}": classification_metrics(y[mask[:, h], h].numpy(), torch.sigmoid(logits[mask[:, h], h]).numpy())
                    for h in range(y.shape[1])
                }
        else:  # (N,) or date items (N, S): every real stock-day
            out.update(classification_metrics(y[mask].numpy(), torch.sigmoid(logits[mask]).numpy()))
        return out

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "early_stopping": self.early_stopping.state_dict(),
            "history": self.history,
            "rng": rng_state(),
            **self.checkpoint_extra,
        }

    def _save(self, name: str) -> None:
        if self.checkpoint_dir is not None:
            atomic_save(self.state_dict(), self.checkpoint_dir / name)
