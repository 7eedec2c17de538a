"""The builder reads what each model declares (``needs``): every model of conf/zoo.yaml builds, with its
data shaped and its sizes filled from that declaration alone."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lightquant.builder import build_data, build_model, model_needs

from .conftest import CONF

ZOO = list(OmegaConf.load(CONF / "zoo.yaml").models)


def test_the_zoo_lists_every_model_config():
    assert sorted(ZOO) == sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", ZOO)
def test_every_model_builds_from_its_declaration(cfg_factory, name):
    needs = model_needs(cfg_factory([f"model={name}"]))
    cfg = cfg_factory([f"model={name}", *(["use_news=true"] if needs.news else [])])
    data = build_data(cfg)
    model = build_model(cfg, data)
    assert data.layout == needs.layout and all(cfg.model[k] is not None for k in needs.from_data)
    batch = data.batch("train", torch.arange(2))
    assert model(batch).shape == batch.y.shape  # one logit per label: per stock-day, per horizon
