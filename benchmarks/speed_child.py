"""One side of section 10's comparison with an earlier commit: training epochs of one model through
the engine of the source tree given by ``--root`` (this checkout, or an earlier commit unpacked
elsewhere), timed in this process, printed as one JSON line.

Standalone on purpose: it imports nothing from ``benchmarks`` (whose modules put this checkout's
``src`` first on the path), only the given tree's ``lightquant``, through the calls both trees have
(``build_data``, ``build_model`` from wherever the tree keeps them, the trainer config's optimizer, ``Trainer.train_epoch``).

    python benchmarks/speed_child.py --root /tmp/old --model scinet --items 2048 --reps 3 -- dataset=csmd50 ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", type=Path, required=True, help="a source tree holding src/ and conf/")
    p.add_argument("--model", required=True)
    p.add_argument("--items", type=int, default=2048, help="training samples per epoch (about)")
    p.add_argument("--reps", type=int, default=3, help="timed epochs after one warm-up epoch")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    sys.path.insert(0, str(a.root / "src"))

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import open_dict

    import lightquant
    from lightquant.engine import EarlyStopping, Trainer, seed_everything
    try:
        from lightquant.builder import build_data, build_model
        from lightquant.launch import register_resolvers
    except ImportError:  # a tree from before the builder module: lightquant.run held them (and registered ${lq:})
        from lightquant.run import build_data, build_model
    else:
        register_resolvers()

    assert Path(lightquant.__file__).is_relative_to(a.root / "src"), lightquant.__file__  # the tree asked for
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(a.root / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={a.model}", *a.overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
        cfg.paths.cache_dir = str(a.cache)
    seed_everything(0, deterministic=False)
    data = build_data(cfg)
    seed_everything(0, deterministic=False)
    model = build_model(cfg, data)
    tr = data.splits["train"]
    per_item = float(tr.mask.sum()) / len(tr) if data.layout == "date" else 1.0  # DTML: a date of stock-days
    n = min(len(tr), max(1, round(a.items / per_item)))
    cut = type(tr)(*(t[:n] if t is not None else None for t in (tr.end_row, tr.y, tr.ret, tr.mask, tr.day)))
    data.splits["train"] = cut
    samples = int(cut.mask.sum()) if data.layout == "date" else n
    # the tree's own optimizer settings (the default AdamW, fused where that tree says so) and clipping
    opt = instantiate(cfg.trainer.optimizer)(params=model.parameters())
    clip = cfg.trainer.gradient_clip_val
    try:
        from lightquant.evaluation.metrics import split_metrics
        from lightquant.settings import EarlyStoppingSettings, TrainerSettings
    except ImportError:  # a tree from before the settings object: the Trainer took its settings as keywords
        trainer = Trainer(model, opt, None, device=torch.device("cpu"), epochs=1000, batch_size=64, seed=0,
                          early_stopping=EarlyStopping(patience=None), gradient_clip_val=clip, progress=False)
    else:
        settings = TrainerSettings(epochs=1000, early_stopping=EarlyStoppingSettings(patience=None),
                                   gradient_clip_val=clip, progress=False)
        trainer = Trainer(model, opt, None, settings, device=torch.device("cpu"), batch_size=64, seed=0,
                          score=split_metrics)
    trainer.train_epoch(data)  # warm-up: allocations, kernel choice
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        trainer.train_epoch(data)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"model": a.model, "samples": samples, "epoch_s": times,
                      "samples_per_s": samples / statistics.median(times)}))


if __name__ == "__main__":
    main()
