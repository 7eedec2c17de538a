"""The engine options the paper recipes need (loss, a penalty on named parameters, selection on
any validation metric, warm start from another run), the majority-class baseline in the
metrics, and the recipes of conf/experiment/paper/ themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lightquant.config_check import validate_config
from lightquant.data import load_market_data
from lightquant.data.synthetic import SyntheticSource
from lightquant.engine import EarlyStopping, seed_everything
from lightquant.engine.checkpoint import init_weights
from lightquant.evaluation.metrics import classification_metrics
from lightquant.losses import bce, get_criterion, hinge, masked_loss
from lightquant.models import ALSTM, LSTM, AdvLSTM
from lightquant.settings import EarlyStoppingSettings, PenaltySettings
from lightquant.training import train

from .conftest import CONF, cpu_trainer
from .fakes import random_batch

SPLITS = {"train_end": "2021-09-30", "val_end": "2021-11-30"}


@pytest.fixture(scope="module")
def data():
    src = SyntheticSource(n_stocks=5, end="2021-12-31", price_signal=0.3, news_signal=0.0)
    return load_market_data(src, features=["open", "high", "low", "close", "volume"], look_back_window=5, splits=SPLITS)


def lstm(**kw):
    seed_everything(0)
    return LSTM(input_size=5, hidden_size=8, layers=1, dropout=0.0, **kw)


def make_trainer(model, optimizer=None, **kw):
    opts = dict(epochs=2, batch_size=32, seed=1,
                early_stopping=EarlyStoppingSettings(monitor="val/mcc", mode="max", patience=5), progress=False)
    opts.update(kw)
    return cpu_trainer(model, optimizer or torch.optim.Adam(model.parameters(), lr=1e-3), None, **opts)


# ------------------------------------------------------------------ losses
def test_hinge_is_the_margin_loss_on_plus_minus_one_labels():
    logits, y = torch.tensor([2.0, -0.5, 0.3, -3.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert torch.allclose(hinge(logits, y), torch.tensor([0.0, 1.5, 1.3, 0.0]))
    assert torch.allclose(bce(logits, y), F.binary_cross_entropy_with_logits(logits, y, reduction="none"))
    mask = torch.tensor([True, True, False, False])
    assert masked_loss(hinge, logits, y, mask) == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"trainer.loss='mse'.*bce.*hinge"):
        get_criterion("mse")


def test_trainer_trains_and_scores_with_the_chosen_loss(data):
    finals, trainers = {}, {}
    for name in ("bce", "hinge"):
        tr = make_trainer(lstm(), loss=name, epochs=1)
        tr.fit(data)
        finals[name], trainers[name] = torch.cat([p.detach().flatten() for p in tr.model.parameters()]), tr
    assert not torch.allclose(finals["bce"], finals["hinge"])
    logits, y, mask = trainers["hinge"].predict(data, "val")
    assert trainers["hinge"].evaluate(data, "val")["loss"] == pytest.approx(float(hinge(logits, y).mean()), rel=1e-5)


@pytest.mark.parametrize("criterion", [bce, hinge])
def test_adversarial_term_uses_the_runs_loss(criterion):
    model = AdvLSTM(input_size=3, hidden_size=4, attention_size=4, layers=1, dropout=0.0, epsilon=0.0, adv_weight=0.5)
    batch = random_batch(6, 5, 3)
    logits = model.train()(batch)
    loss = criterion(logits, batch.y).mean()
    # epsilon 0: the perturbed latent is the clean one, so the term is adv_weight x the clean loss
    assert model.extra_loss(batch, loss, criterion).item() == pytest.approx(0.5 * loss.item(), rel=1e-6)


# ------------------------------------------------------------------ penalty
def test_penalty_acts_on_the_named_parameters_only(data):
    """One SGD step over the whole split: the penalty adds weight * w to fc's gradient, nothing elsewhere."""
    after = {}
    for weight in (0.0, 2.0):
        model = lstm()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        make_trainer(model, optimizer=opt, epochs=1, batch_size=100_000,
                     penalty=PenaltySettings(weight, ["fc.*"])).fit(data)
        after[weight] = {k: v.clone() for k, v in model.state_dict().items()}
    start = lstm().state_dict()
    for k in start:
        diff = after[2.0][k] - after[0.0][k]
        if k.startswith("fc."):  # -lr * weight * w0
            assert torch.allclose(diff, -0.1 * 2.0 * start[k], atol=1e-6), k
        else:
            assert torch.equal(after[2.0][k], after[0.0][k]), k


def test_penalty_names_are_checked(data):
    with pytest.raises(ValueError, match=r"head\.\*.*match no parameter.*fc\.weight"):
        make_trainer(lstm(), penalty=PenaltySettings(1.0, ["head.*"]))
    with pytest.raises(ValueError, match="needs trainer.penalty.params"):
        make_trainer(lstm(), penalty=PenaltySettings(1.0))
    with pytest.raises(ValueError, match="penalty.weight"):
        make_trainer(lstm(), penalty=PenaltySettings(-1.0, ["fc.*"]))


# ---------------------------------------------------------------- selection
def test_select_on_validation_accuracy_without_stopping(data):
    tr = make_trainer(lstm(), epochs=6, early_stopping=EarlyStoppingSettings(monitor="val/accuracy", mode="max", patience=None))
    tr.fit(data)
    acc = [row["val/accuracy"] for row in tr.history]
    assert len(acc) == 6  # never stopped early
    assert tr.early_stopping.best_epoch == int(np.argmax(acc)) + 1  # the first best on ties
    assert tr.evaluate(data, "val")["accuracy"] == pytest.approx(max(acc))  # its weights were restored


def test_monitor_epoch_keeps_the_last_epoch(data):
    tr = make_trainer(lstm(), epochs=3, early_stopping=EarlyStoppingSettings(monitor="epoch", mode="max", patience=None))
    tr.fit(data)
    assert tr.early_stopping.best_epoch == 3
    assert tr.evaluate(data, "val")["loss"] == pytest.approx(tr.history[-1]["val/loss"])


def test_patience_must_be_a_positive_integer_or_null():
    with pytest.raises(ValueError, match="or null"):
        EarlyStopping(patience=0)


# ---------------------------------------------------------------- warm start
def test_init_from_another_run_takes_its_best_weights(cfg_factory, tmp_path):
    cfg = cfg_factory(["model=alstm", "model.attention_size=8"])
    first = train(cfg)
    model = ALSTM(input_size=5, hidden_size=16, attention_size=8)
    source = init_weights(model, cfg.paths.output_dir)
    assert source.name == "best.pt"
    best = torch.load(source, weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    # through the config: a second run starting there with a vanishing lr scores like the first
    second = cfg_factory(["model=adv_lstm", "model.attention_size=8", f"trainer.init_from={cfg.paths.output_dir}",
                          "trainer.lr=1e-12", "trainer.epochs=1"])
    second.paths.output_dir = str(tmp_path / "second")
    assert train(second)["val"]["accuracy"] == pytest.approx(first["val"]["accuracy"])


def test_init_from_refuses_other_sizes_naming_the_keys(cfg_factory):
    cfg = cfg_factory(["model=alstm", "model.attention_size=8"])
    train(cfg)
    with pytest.raises(ValueError, match=r"do not fit this model.*other shapes.*mapping\.weight"):
        init_weights(ALSTM(input_size=5, hidden_size=4, attention_size=8), cfg.paths.output_dir)
    with pytest.raises(FileNotFoundError, match="trainer.init_from"):
        init_weights(ALSTM(input_size=5), Path(cfg.paths.output_dir) / "nothing")


# ------------------------------------------------------------------ models
def test_mapping_sizes():
    assert ALSTM(input_size=11, hidden_size=4, attention_size=4, mapping_size=11).mapping.out_features == 11
    assert ALSTM(input_size=11, hidden_size=4, attention_size=4).mapping.out_features == 4  # default: hidden_size
    m = LSTM(input_size=11, hidden_size=32, layers=1, mapping_size=11)
    assert m.mapping.out_features == 11 and m.rnn.input_size == 11
    assert LSTM(input_size=11).mapping is None
    assert m(random_batch(3, 10, 11)).shape == (3,)


@pytest.mark.parametrize("cls", [LSTM, ALSTM, AdvLSTM])
def test_tensorflow_init_is_glorot_with_zero_biases_and_the_forget_bias(cls):
    # what the Adv-ALSTM authors' TF1 code starts from: glorot_uniform kernels, zero biases and
    # BasicLSTMCell's forget_bias=1.0 (PyTorch's default: +-1/sqrt(hidden) everywhere)
    torch.manual_seed(0)
    m = cls(input_size=11, hidden_size=32, layers=1, mapping_size=11, init="tensorflow")
    h = 32
    assert torch.equal(m.rnn.bias_hh_l0, torch.zeros(4 * h))
    b = m.rnn.bias_ih_l0
    assert torch.equal(b[h : 2 * h], torch.ones(h)) and not b[:h].any() and not b[2 * h :].any()
    bound = (6 / (11 + h + 4 * h)) ** 0.5  # one (input + hidden, 4 hidden) kernel in TF
    for w in (m.rnn.weight_ih_l0, m.rnn.weight_hh_l0):
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert not m.fc.bias.any() and not m.mapping.bias.any()
    assert m.fc.weight.abs().max() <= (6 / sum(m.fc.weight.shape)) ** 0.5
    torch.manual_seed(0)
    default = cls(input_size=11, hidden_size=32, layers=1, mapping_size=11)
    assert default.rnn.bias_hh_l0.any()  # the option acts: PyTorch's own init differs
    assert m(random_batch(3, 5, 11)).shape == (3,)


def test_bad_init_fails_in_the_config_check(cfg_factory):
    cfg = cfg_factory(["model=alstm", "model.init=keras"])
    with pytest.raises(ValueError, match=r"model.init='keras'; choose one of \['torch', 'tensorflow'\]"):
        validate_config(cfg)


# ------------------------------------------------------------------ metrics
def test_metrics_carry_the_majority_class_and_a_binomial_test():
    y = np.array([1] * 60 + [0] * 40)
    m = classification_metrics(y, np.ones(100))  # all up: exactly the majority class
    assert m["majority_accuracy"] == pytest.approx(0.6) and m["accuracy"] == pytest.approx(0.6)
    assert m["p_vs_majority"] > 0.5
    good = classification_metrics(y, y.astype(float))
    assert good["p_vs_majority"] < 1e-10


# ------------------------------------------------------------------ recipes
RECIPES = sorted(p.stem for p in (CONF / "experiment" / "paper").glob("*.yaml") if not p.name.startswith("_"))


def test_every_recipe_cites_its_figure():
    assert {"lstm_acl18", "alstm_acl18", "adv_alstm_acl18", "stocknet_acl18", "han_acl18", "pen_acl18",
            "dtml_acl18"} <= set(RECIPES)
    for name in RECIPES:
        meta = OmegaConf.load(CONF / "experiment" / "paper" / f"{name}.yaml").recipe
        assert meta.published.accuracy > 50 and meta.source


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_and_passes_the_config_checks(cfg_factory, name):
    cfg = cfg_factory([f"experiment=paper/{name}"], tiny=False)
    validate_config(cfg)
    assert cfg.dataset.name in ("acl18", "acl18_stocknet")


def test_adv_alstm_recipe_is_the_alstm_recipe_plus_the_adversarial_terms(cfg_factory):
    a = OmegaConf.to_container(cfg_factory(["experiment=paper/alstm_acl18"], tiny=False), resolve=True)
    v = OmegaConf.to_container(cfg_factory(["experiment=paper/adv_alstm_acl18"], tiny=False), resolve=True)
    assert a["trainer"] == v["trainer"] and a["dataset"] == v["dataset"]
    assert a["trainer"]["loss"] == "hinge" and a["trainer"]["penalty"] == {"weight": 1.0, "params": ["fc.*"]}
    extra = {k: v["model"][k] for k in set(v["model"]) - set(a["model"])}
    assert extra == {"epsilon": 0.05, "adv_weight": 0.01, "perturbation_size": 0.0}
    assert a["model"]["mapping_size"] == 11 and a["model"]["hidden_size"] == 4
    assert a["model"]["init"] == v["model"]["init"] == "tensorflow"  # their TF1 code's initialisation
