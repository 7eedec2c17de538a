"""evaluate.py and predict.py check every enumerated value before the model or any data is read."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lightquant.config_check import validate_tool_config
from lightquant.errors import ConfigError

from .conftest import CONF, ROOT

CASES = [  # (tool, override, words of the message)
    ("evaluate", "split=valid", ["split='valid'", "'train', 'val', 'test'"]),
    ("evaluate", "device=gpu", ["device='gpu'", "'auto', 'cpu', 'cuda'"]),
    ("evaluate", "backtest.strategy=longshort", ["backtest.strategy='longshort'", "long_short"]),
    ("evaluate", "backtest.top_k=0", ["backtest.top_k=0", ">= 1"]),
    ("evaluate", "backtest.cost_bps=-1", ["backtest.cost_bps=-1", ">= 0"]),
    ("predict", "device=tpu", ["device='tpu'", "'auto', 'cpu', 'cuda'"]),
    ("predict", "date=2024-13-01", ["date='2024-13-01'", "YYYY-MM-DD, or latest"]),
    ("predict", "batch_size=0", ["batch_size=0", ">= 1"]),
    ("predict", "top_news=-1", ["top_news=-1", ">= 0"]),
]


def compose_tool(tool: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(tool, overrides=["ckpt=/nonexistent/model.pth", *overrides])


@pytest.mark.parametrize("tool,override,words", CASES, ids=[f"{t}:{o}" for t, o, _ in CASES])
def test_a_typo_is_refused_with_the_valid_values(tool, override, words):
    with pytest.raises(ConfigError) as e:  # the ckpt does not exist: the value is checked first
        validate_tool_config(compose_tool(tool, override))
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("tool", ["evaluate", "predict"])
def test_the_defaults_pass(tool):
    validate_tool_config(compose_tool(tool))


def test_the_enumerations_are_the_ones_the_code_acts_on():
    from lightquant import choices, losses
    from lightquant.engine import trainer

    assert tuple(trainer.PRECISIONS) == choices.PRECISIONS and tuple(losses.LOSSES) == choices.LOSSES


def test_the_config_checks_run_before_torch_or_pandas_is_imported():
    """The entry points check the config first: a typo fails in the seconds Hydra takes, not after torch loads."""
    code = ("import sys; import lightquant.config_check, lightquant.launch, lightquant.entry; "
            "heavy = {'torch', 'pandas', 'sklearn', 'scipy'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
