"""The one training engine every model goes through.

A model is any ``nn.Module`` with ``forward(batch) -> logits (B,)``; it may add an
auxiliary training loss through ``extra_loss(batch, loss, criterion) -> Tensor`` (Adv-LSTM's
adversarial term; ``criterion`` is the run's per-label loss, ``trainer.loss``). The engine
knows models only through that interface.

The objective of a step is ``loss + extra_loss + penalty``: ``loss`` the mean ``trainer.loss``
(bce | hinge) over the real labels, ``penalty`` = ``trainer.penalty.weight * sum(w**2) / 2`` over
the parameters ``trainer.penalty.params`` names (Adv-ALSTM's L2 on its prediction layer only),
apart from the optimizer's weight decay. The logged train loss is ``loss`` alone.

Scale-out (README "Scale-out"): mixed precision (one autocast context around the forward),
gradient accumulation, and DDP when torchrun started a process group (the Trainer wraps the
single-device model itself). Every rank draws the same epoch order from (seed, epoch) and
trains on its disjoint share of each step; every rank evaluates the full splits (exact and
simple), with rank 0's validation metrics broadcast so all ranks stop together. Only rank 0
writes checkpoints and runs callbacks.

Trackers, plots and the like attach as callbacks: objects with any of
``on_epoch_end(trainer, row)`` (``row`` = the epoch's logged metrics),
``on_train_step_end(trainer)`` (after every optimizer step) and ``on_fit_end(trainer)``;
the engine imports none of them.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from lightquant.data.market import MarketData
from lightquant.engine.checkpoint import atomic_save, check_fits, find_checkpoint, read_checkpoint
from lightquant.engine.device import gpu_stats, gpu_status, to_device
from lightquant.engine.early_stopping import EarlyStopping
from lightquant.engine.seed import rng_state, set_rng_state
from lightquant.errors import ConfigError
from lightquant.losses import Criterion, bce, get_criterion, masked_loss
from lightquant.mappings import flatten
from lightquant.settings import TrainerSettings

log = logging.getLogger(__name__)

#: epochs with at least this many optimizer steps get a progress bar (on a terminal)
PROGRESS_MIN_BATCHES = 50
#: trainer.precision -> autocast dtype (None: full fp32, no autocast)
PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


#: (logits, labels, mask, data, split, criterion, per_horizon) -> the split's metrics: Trainer's ``score``
Scorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, MarketData, str, Criterion, bool], dict]


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def masked_bce(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean BCE-with-logits over the real labels (padding stocks, missing horizons excluded)."""
    return masked_loss(bce, logits, y, mask)


def penalized_parameters(model: torch.nn.Module, patterns: Sequence[str]) -> list[torch.nn.Parameter]:
    """The parameters whose names match one of the ``fnmatch`` patterns (e.g. ``fc.weight``, ``fc.*``);
    a pattern matching nothing is an error listing the names there are."""
    named = dict(model.named_parameters())
    unmatched = [p for p in patterns if not fnmatch.filter(named, p)]
    if unmatched:
        raise ConfigError(f"trainer.penalty.params: {unmatched} match no parameter of {type(model).__name__}; "
                         f"its parameters are {sorted(named)}")
    return [w for n, w in named.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _autocast(precision: str, device: torch.device) -> torch.autocast | nullcontext:
    if precision == "16" and device.type != "cuda":
        raise ConfigError("trainer.precision=16 needs CUDA (fp16 autocast of LSTMs fails on CPU); use trainer.precision=bf16 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"trainer.precision=bf16 but {torch.cuda.get_device_name(device)} has no bf16; use trainer.precision=16")
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: MarketData, split: str, batch_size: int = 1024,
                   device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and label mask of every item of ``split``, in the split's order, on the CPU
    (shaped like the split's ``y``: (N,), (N, H) with horizons, (N, S) for date items); one pass in
    eval mode, fp32 whatever trainer.precision: metrics describe the weights as exported."""
    model.eval()
    device = device or next(model.parameters()).device
    s = data.splits[split]
    logits = []
    for i in range(0, len(s), batch_size):
        batch = data.batch(split, torch.arange(i, min(i + batch_size, len(s)), device=data.device))
        logits.append(model(to_device(batch, device)).float())
    y = s.y.cpu()
    mask = s.mask.cpu() if s.mask is not None else torch.ones_like(y, dtype=torch.bool)
    return (torch.cat(logits).cpu() if logits else torch.zeros_like(y)), y, mask


class Trainer:
    """Trains ``model`` with the run's :class:`~lightquant.settings.TrainerSettings`.

    ``score(logits, y, mask, data, split, criterion, per_horizon) -> dict`` turns one pass over a
    split into its metrics (the run passes :func:`lightquant.evaluation.metrics.split_metrics`):
    the engine produces logits, labels and masks, evaluation decides what they score, and the
    validation metrics it returns drive early stopping.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        settings: TrainerSettings,
        *,
        device: torch.device,
        batch_size: int,
        seed: int,
        score: Scorer,
        checkpoint_dir: str | Path | None = None,
        checkpoint_extra: dict | None = None,
        callbacks: Sequence[object] = (),
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"dataset.batch_size={batch_size} must be >= 1")
        s = self.settings = settings
        self.criterion: Criterion = get_criterion(s.loss)
        self.penalized = penalized_parameters(model, s.penalty.params) if s.penalty.weight > 0 else []
        # One autocast context for every training forward (a no-op in fp32): no AMP copy of the loop.
        self.autocast = _autocast(s.precision, device)
        # Loss scaling keeps small fp16 gradients from flushing to zero; a pass-through otherwise.
        self.scaler = torch.amp.GradScaler(device.type, enabled=s.precision == "16")
        self.ddp = dist.is_available() and dist.is_initialized()
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if self.ddp else (0, 1)
        self.is_main = self.rank == 0
        self.raw_model = model.to(device)  # what is saved, evaluated and exported
        # DDP wraps the single-device model from outside; it all-reduces gradients in backward.
        self.model = (
            DistributedDataParallel(self.raw_model, device_ids=[device.index] if device.type == "cuda" else None,
                                    find_unused_parameters=s.find_unused_parameters)
            if self.ddp else self.raw_model
        )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.epochs = s.epochs
        self.batch_size = batch_size
        self.accumulate = s.accumulate_grad_batches
        self.seed = seed
        self.score = score
        self.early_stopping = EarlyStopping(**asdict(s.early_stopping))
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_extra = checkpoint_extra or {}
        self.progress = (sys.stdout.isatty() if s.progress is None else s.progress) and self.is_main
        self.callbacks = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.best_state: dict | None = None  # weights of the best epoch so far (restored at the end)
        self._extra_loss: Callable | None = getattr(model, "extra_loss", None)

    # ------------------------------------------------------------------ training
    def _epoch_order(self, n: int) -> torch.Tensor:
        # A function of (seed, epoch) rather than a running generator: a resumed run or
        # another rank reproduces the order without carrying generator state.
        if self.settings.shuffle == "none":
            return torch.arange(n)
        if self.settings.shuffle == "repeat":
            # The Adv-ALSTM code (pred_lstm.py): the first epoch in data order, then after every
            # epoch `shuffle(..., random_state=0)` permutes the already permuted arrays again with
            # the same permutation, so epoch k sees it composed k times.
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003))
            order = torch.arange(n)
            for _ in range(self.epoch):
                order = order[perm]
            return order
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(n, generator=g)

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.accumulate * self.world_size

    def _micro_batches(self, step: torch.Tensor) -> tuple[list[torch.Tensor], float]:
        """This rank's disjoint share of one optimizer step's items, in up to ``accumulate``
        micro-batches, and its weight factor. A rank left without items (a last step shorter than
        world_size) must still join the gradient all-reduce: it runs one item with weight 0."""
        share = torch.tensor_split(step, self.world_size)[self.rank]
        micro = [m for m in torch.tensor_split(share, self.accumulate) if len(m)]
        return (micro, 1.0) if micro else ([step[:1]], 0.0)

    def train_epoch(self, data: MarketData) -> float:
        self.model.train()
        s = data.splits["train"]
        # Real labels per item (1 per stock sample; the unmasked ones of a date item or horizons).
        # Each micro-batch's mean loss is weighted by its share of its step's labels, so
        # accumulation and DDP give the gradient of the whole step's mean loss.
        labels = s.mask.reshape(len(s), -1).sum(1).float() if s.mask is not None else torch.ones(len(s), device=data.device)
        step_size = self.effective_batch_size
        if self.settings.overfit_batches:  # the same first items every epoch, unshuffled: can the model fit them?
            order = torch.arange(min(len(s), self.settings.overfit_batches * step_size))
        else:
            order = self._epoch_order(len(s))  # the same on every rank
            if self.settings.limit_train_batches:  # a shuffled sample of the epoch: quick checks
                order = order[: self.settings.limit_train_batches * step_size]
        order = order.to(data.device)
        self.last_epoch_items = len(order)
        n_steps = (len(order) + step_size - 1) // step_size
        total = torch.zeros(2, device=self.device)  # loss x labels, labels; on device: no CPU sync per step
        with Progress(
            TextColumn(f"epoch {self.epoch + 1}/{self.epochs}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(), transient=True, disable=not (self.progress and n_steps >= PROGRESS_MIN_BATCHES),
        ) as bar:
            task = bar.add_task("train", total=n_steps)
            for i in range(0, len(order), step_size):
                step = order[i : i + step_size]  # this optimizer step's items, all ranks
                n_step = labels[step].sum().clamp_min(1).to(self.device)
                micro, live = self._micro_batches(step)
                for k, idx in enumerate(micro):
                    batch = to_device(data.batch("train", idx), self.device)
                    if self.ddp:  # all-reduce gradients on the last micro-step only (DDP.no_sync otherwise)
                        self.model.require_backward_grad_sync = k == len(micro) - 1
                    with self.autocast:
                        logits = self.model(batch)  # shaped like batch.y
                        loss = masked_loss(self.criterion, logits, batch.y, batch.y_mask)  # this micro-batch's mean
                        objective = loss + self._extra_loss(batch, loss, self.criterion) if self._extra_loss else loss
                        if self.penalized:  # per step: the micro-batch weights below sum to 1
                            objective = objective + self.penalty()
                    n = labels[idx].sum().to(self.device) * live
                    # weights n / n_step sum to 1 over all ranks' micro-batches; DDP divides the
                    # summed gradients by world_size, hence x world_size
                    self.scaler.scale(objective * (n * self.world_size / n_step)).backward()
                    total += torch.stack([loss.detach() * n, n])
                if self.settings.gradient_clip_val:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradients, not fp16-scaled ones
                    torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.settings.gradient_clip_val)
                self.scaler.step(self.optimizer)  # skips the step if fp16 gradients overflowed
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                bar.advance(task)
                self._callback("on_train_step_end")
        if self.ddp:
            dist.all_reduce(total)  # the logged loss covers every rank's items
        mean = float(total[0] / total[1].clamp_min(1))
        if not np.isfinite(mean):
            raise FloatingPointError(
                f"Training loss became {mean} in epoch {self.epoch + 1}; lower trainer.lr, set "
                "trainer.gradient_clip_val, or check the data for extreme values"
            )
        return mean

    def penalty(self) -> torch.Tensor:
        """``trainer.penalty.weight * sum(w**2) / 2`` over the named parameters (TF's ``l2_loss``)."""
        return self.settings.penalty.weight * 0.5 * sum((w.float() ** 2).sum() for w in self.penalized)

    def fit(self, data: MarketData) -> list[dict[str, float]]:
        """Train until ``epochs`` or early stopping; leaves the model with the best weights."""
        if len(data.splits["val"]) == 0:
            raise ConfigError("The validation split is empty; check dataset.splits (train_end < val_end within the data)")
        log.info(
            "Effective batch %d = dataset.batch_size %d x trainer.accumulate_grad_batches %d x %d process(es); "
            "precision %s; data on %s", self.effective_batch_size, self.batch_size, self.accumulate,
            self.world_size, self.settings.precision, data.device,
        )
        if self.best_state is None:
            self.best_state = copy.deepcopy(self.raw_model.state_dict())
        start = time.perf_counter()
        first_epoch = self.epoch
        while self.epoch < self.epochs and not self.early_stopping.should_stop:
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            with self._explain_oom():
                train_loss = self.train_epoch(data)
                train_s = time.perf_counter() - t0
                if self.scheduler is not None:
                    self.scheduler.step()
                val = self._from_rank0(self.evaluate(data, "val"))
            self.epoch += 1
            gpu = gpu_stats(self.device)
            row = {"epoch": self.epoch, "lr": lr, "train/loss": train_loss, **{f"val/{k}": v for k, v in val.items()},
                   "time/epoch_s": time.perf_counter() - t0, "time/train_items_per_s": self.last_epoch_items / train_s,
                   **gpu}
            self.history.append(row)
            improved = self.early_stopping.step(row, self.epoch)
            if improved:
                self.best_state = copy.deepcopy(self.raw_model.state_dict())
            elapsed = time.perf_counter() - start
            per_epoch = elapsed / (self.epoch - first_epoch)
            eta = _fmt_time(per_epoch * (self.epochs - self.epoch))
            left = self.early_stopping.epochs_left
            if left is not None and left < self.epochs - self.epoch:  # early stopping may end it sooner
                eta += f" (or {_fmt_time(per_epoch * left)}: stops after {left} more without gain)"
            log.info(
                "epoch %d/%d | %s elapsed, ETA %s | train loss %.4f | val loss %.4f acc %.4f mcc %.4f | lr %.2e%s%s",
                self.epoch, self.epochs, _fmt_time(elapsed), eta, train_loss,
                val["loss"], val["accuracy"], val["mcc"], lr, " | " + gpu_status(self.device, gpu) if gpu else "",
                " *" if improved else "",
            )
            self._save("last.pt")  # holds the best weights too: a resumed run restores them
            if improved:
                self._save("best.pt")
            self._callback("on_epoch_end", row)
        if self.early_stopping.should_stop:
            log.info(
                "Early stopping: %s did not improve for %d epochs (best %.4f at epoch %d)",
                self.early_stopping.monitor, self.early_stopping.patience,
                self.early_stopping.best, self.early_stopping.best_epoch,
            )
        self.raw_model.load_state_dict(self.best_state)
        if self.early_stopping.best is not None:
            log.info("Restored best weights from epoch %d", self.early_stopping.best_epoch)
        self._callback("on_fit_end")
        return self.history

    @contextmanager
    def _explain_oom(self) -> Iterator[None]:
        """Turn CUDA's out-of-memory error into one that names the settings to change."""
        try:
            yield
        except torch.OutOfMemoryError as e:
            raise torch.OutOfMemoryError(
                f"GPU out of memory in epoch {self.epoch + 1} with dataset.batch_size={self.batch_size}, "
                f"trainer.accumulate_grad_batches={self.accumulate}, trainer.precision={self.settings.precision}: lower "
                "dataset.batch_size and raise trainer.accumulate_grad_batches by the same factor (same effective "
                "batch), train in trainer.precision=bf16 (or 16), or, if evaluation ran out, lower "
                f"trainer.eval_batch_size (now {self.settings.eval_batch_size})"
            ) from e

    def _from_rank0(self, obj):
        """Rank 0's ``obj`` on every rank (as is without DDP): validation metrics, so that all ranks
        take the same early-stopping decisions even if their evaluations differed in the last bit."""
        if not self.ddp:
            return obj
        shared = [obj]
        dist.broadcast_object_list(shared, src=0)
        return shared[0]

    def _callback(self, hook: str, *args) -> None:
        if not self.is_main:  # trackers and plots: one per run, like the logs
            return
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # ---------------------------------------------------------------- evaluation
    def predict(self, data: MarketData, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`predict_logits` of the (unwrapped) model on ``split``."""
        return predict_logits(self.raw_model, data, split, self.settings.eval_batch_size, self.device)

    def evaluate(self, data: MarketData, split: str, per_horizon: bool = False) -> dict:
        """The run's ``score`` of the model on ``split``, one pass over it."""
        return self.score(*self.predict(data, split), data, split, self.criterion, per_horizon)

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),  # never DDP's "module."-prefixed names
            "best_model": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "early_stopping": self.early_stopping.state_dict(),
            "history": self.history,
            "rng": rng_state(),
            **self.checkpoint_extra,
        }

    def load_state_dict(self, state: dict) -> None:
        """Everything :meth:`state_dict` saved, so training continues as if never interrupted."""
        self.raw_model.load_state_dict(state["model"])
        self.best_state = state.get("best_model") or copy.deepcopy(state["model"])  # best.pt: itself
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])

    def resume(self, path: str | Path) -> Path:
        """Continue from a checkpoint, or a run dir's ``checkpoints/last.pt``; returns the file."""
        ckpt = find_checkpoint(path)
        state = read_checkpoint(ckpt, "trainer.resume")  # on the CPU: RNG states must stay there
        check_fits(self.raw_model, state["model"], ckpt, f"trainer.resume={path}")
        # Passing the same overrides again is the user's job; say which settings differ.
        old, new = flatten(state.get("config") or {}), flatten(self.checkpoint_extra.get("config") or {})
        changed = [k for k in new if k in old and old[k] != new[k] and k.split(".")[0] in ("model", "dataset", "seed")]
        if changed:
            log.warning("Resuming %s, trained with other values of %s", ckpt, ", ".join(changed))
        self.load_state_dict(state)
        log.info("Resumed from %s after epoch %d of %d", ckpt, self.epoch, self.epochs)
        return ckpt

    def _save(self, name: str) -> None:
        if self.checkpoint_dir is None or not self.is_main:
            return
        state = self.state_dict()
        if name == "best.pt":
            del state["best_model"]  # its own model is the best one
        atomic_save(state, self.checkpoint_dir / name)
