"""Every config group composes, and every model config instantiates and runs."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from lightquant.batch import Batch
from lightquant.models import ALSTM, LSTM, AdvLSTM

from .conftest import CONF

DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("[!_]*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_groups_are_the_expected_ones():
    assert {"synthetic", "csmd50", "csmd300", "acl18"} <= set(DATASETS)
    assert {"lstm", "bilstm", "alstm", "adv_lstm", "han", "stocknet", "pen"} <= set(MODELS)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("use_news", [False, True])
def test_compose_and_instantiate(cfg_factory, dataset, model, use_news):
    cfg = cfg_factory([f"dataset={dataset}", f"model={model}", f"use_news={use_news}"], tiny=False)
    assert cfg.model_name == model
    if "input_size" in cfg.model:
        assert cfg.model.input_size == len(cfg.dataset.features) == 5
    news_size = cfg.model.get("news_size", 0)
    assert news_size in (0, cfg.encoder.dim) and (news_size > 0 or not use_news)
    net = instantiate(cfg.model, **({"num_stocks": 10} if cfg.model.get("num_stocks", 0) is None else {}))
    B, T, K, E = 3, cfg.dataset.look_back_window, 4, cfg.encoder.dim
    lead = (B, 2) if getattr(net, "batch_layout", "stock") == "date" else (B,)  # date items: 2 stocks each
    z = torch.zeros(lead, dtype=torch.long)
    b = Batch(x=torch.randn(*lead, T, 5), y=torch.ones(lead), stock=z, date=z, row=z,
              y_hist=torch.ones(*lead, T - 1), market=torch.randn(B, T, 5),
              news=torch.randn(*lead, T, K, E), news_mask=torch.rand(*lead, T, K) > 0.5)
    horizons = cfg.model.get("pred_len", 1)
    assert net(b).shape == (lead + (horizons,) if horizons > 1 else lead)
    assert cfg.dataset.source._target_.startswith("lightquant.data.")
    optimizer = instantiate(cfg.trainer.optimizer)(params=net.parameters())
    assert optimizer.param_groups[0]["lr"] == cfg.trainer.lr
    assert optimizer.param_groups[0]["weight_decay"] == cfg.trainer.weight_decay
    instantiate(cfg.trainer.scheduler)(optimizer=optimizer)


def test_model_configs_pick_the_right_classes(cfg_factory):
    assert type(instantiate(cfg_factory(["model=lstm"]).model)) is LSTM
    bi = instantiate(cfg_factory(["model=bilstm"]).model)
    assert type(bi) is LSTM and bi.rnn.bidirectional
    assert type(instantiate(cfg_factory(["model=alstm"]).model)) is ALSTM
    adv = cfg_factory(["model=adv_lstm", "model.epsilon=0.05"]).model
    net = instantiate(adv)
    assert type(net) is AdvLSTM and net.epsilon == 0.05


def test_input_size_follows_features(cfg_factory):
    cfg = cfg_factory(["dataset.features=[close,volume,range]"])
    assert cfg.model.input_size == 3


def test_csmd_paths_derive_from_root(cfg_factory):
    cfg = cfg_factory(["dataset=csmd50", "dataset.root=/somewhere/CSMD50"], tiny=False)
    assert list(cfg.dataset.source.price_dirs) == ["/somewhere/CSMD50/price"]
    assert list(cfg.dataset.source.news_dirs) == ["/somewhere/CSMD50/news"]
    assert cfg.dataset.source.name == "csmd50"
    assert cfg.paths.model_save_dir.endswith("result/csmd50/model_saved")


def test_experiment_composes(cfg_factory):
    cfg = cfg_factory(["experiment=csmd50_alstm"], tiny=False)
    assert cfg.dataset.name == "csmd50" and cfg.model._target_.endswith("ALSTM")


def test_acl18_paper_experiment_keeps_the_chosen_model(cfg_factory):
    cfg = cfg_factory(["experiment=acl18_paper", "model=adv_lstm"], tiny=False)
    assert cfg.dataset.name == "acl18" and cfg.model._target_.endswith("AdvLSTM")
    assert cfg.model.input_size == 11 and cfg.dataset.batch_size == 1024 and cfg.trainer.lr == 1e-2


def test_acl18_alstm_search_replaces_the_default_space(cfg_factory):
    cfg = cfg_factory(["hparams_search=acl18_alstm", "experiment=acl18_paper", "model=adv_lstm"], tiny=False)
    from hydra.core.hydra_config import HydraConfig

    params = HydraConfig.get().sweeper.params  # make_cfg keeps the hydra node there, as in a run
    assert params["model.epsilon"].startswith("tag(log") and params["dataset.batch_size"] == "choice(256, 1024)"
    assert cfg.model.layers == 1 and cfg.model.attention_size == cfg.model.hidden_size
    assert cfg.optimized_metric == "val/mcc"
