"""Shared fixtures: the real config, shrunk to a tiny CPU run under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

# The models under test are tiny: one thread avoids oversubscription, which on a busy
# 2-core machine made small LSTM steps up to ~100x slower than single-threaded ones. Set before
# lightquant is imported, so it is the thread policy's cap in here; train.py children inherit it.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"

import lightquant  # noqa: E402
import lightquant.training  # noqa: E402, F401  (registers the lq.len resolver)
from lightquant.api import TINY_MARKET  # noqa: E402
from lightquant.engine import Trainer  # noqa: E402
from lightquant.evaluation.metrics import split_metrics  # noqa: E402
from lightquant.settings import TrainerSettings  # noqa: E402

# No experiment tracking in tests, train.py subprocesses included (they inherit it): conf/tracker
# reads its default mode from SWANLAB_MODE. Tracking tests choose a mode and a tmp log dir.
os.environ["SWANLAB_MODE"] = "disabled"

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# A small synthetic market: 8 stocks x 2 years, so a run takes a second or two.
TINY = [
    *TINY_MARKET,
    "model.hidden_size=16",
    "trainer.epochs=2",
    "trainer.device=cpu",
]


def cpu_trainer(model, optimizer, scheduler=None, *, batch_size: int = 32, seed: int = 1, **kw) -> Trainer:
    """A CPU Trainer scored as a run scores (split_metrics); ``kw``: TrainerSettings fields, then Trainer keywords."""
    fields = set(TrainerSettings.__dataclass_fields__)
    settings = TrainerSettings(**{k: v for k, v in kw.items() if k in fields})
    return Trainer(model, optimizer, scheduler, settings, device=torch.device("cpu"), batch_size=batch_size, seed=seed,
                   score=split_metrics, **{k: v for k, v in kw.items() if k not in fields})


def data_root() -> Path | None:
    """Folder holding the real datasets: $LIGHTQUANT_DATA, else ../shared/datasets beside the repo."""
    env = os.environ.get("LIGHTQUANT_DATA")
    for p in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "datasets"]:
        if p.is_dir():
            return p.resolve()
    return None


@pytest.fixture
def csmd50_root() -> Path:
    root = data_root()
    if root is None or not (root / "CSMD50").is_dir():
        pytest.skip("CSMD50 sample not found: set LIGHTQUANT_DATA to the folder holding CSMD50/ (CI has it)")
    return root / "CSMD50"


@pytest.fixture
def acl18_root() -> Path:
    root = data_root()
    if root is None or not (root / "acl18").is_dir():
        pytest.skip("ACL18 dataset not found: set LIGHTQUANT_DATA to the folder holding acl18/ (CI has it)")
    return root / "acl18"


def make_cfg(tmp_path: Path, overrides: list[str] = (), tiny: bool = True) -> DictConfig:
    """Compose conf/train.yaml like `python train.py <overrides>` would, outputs under tmp_path."""
    cfg = lightquant.compose(*(TINY if tiny else []), *overrides)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} resolves as in a real run
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        cfg.paths.result_dir = str(tmp_path / "result")
        del cfg.hydra
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda overrides=(), tiny=True: make_cfg(tmp_path, overrides, tiny)
