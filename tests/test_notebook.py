"""The README's notebook section runs as written: ``lightquant.compose`` + ``lightquant.train``
outside a Hydra app, and the config-free data and model snippet."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT

MARKER = "<!-- tested by tests/test_notebook.py"


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(MARKER):]
    section = section[: section.index("\n### ")]  # up to the next heading
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_blocks():
    blocks = readme_blocks()
    assert len(blocks) == 2 and "lightquant.train(cfg)" in blocks[0] and "load_market_data" in blocks[1]


@pytest.mark.slow
@pytest.mark.parametrize("i", [0, 1])
def test_readme_notebook_block_runs_as_written(i, tmp_path):
    """In a fresh interpreter and an empty folder, as a new user's notebook would be."""
    code = readme_blocks()[i]
    env = {k: v for k, v in os.environ.items() if k != "LIGHTQUANT_ROOT"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if i == 0:
        words = proc.stdout.split()
        acc, majority = float(words[0]), float(words[-1])
        assert 0 <= acc <= 1 and 0 < majority <= 1
        (run,) = (tmp_path / "outputs" / "synthetic" / "alstm").iterdir()  # its own run dir, beside the notebook
        assert (run / "metrics.json").is_file() and (run / "train.log").read_text().count("epoch ") >= 2


def test_two_trainings_in_one_process_get_two_run_dirs(tmp_path, monkeypatch):
    import lightquant
    from lightquant.api import _runtime

    cfg = lightquant.compose("trainer.epochs=1")
    a, b = _runtime(cfg), _runtime(cfg)
    assert a.paths.output_dir != b.paths.output_dir and a.model_name == "lstm"


def test_a_config_without_its_hydra_part_is_a_clear_error():
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from lightquant.api import _runtime
    from lightquant.errors import ConfigError

    HydraConfig.instance().cfg = None  # no app, nothing composed
    with pytest.raises(ConfigError, match="return_hydra_config=True"):
        _runtime(OmegaConf.create({"model_name": "x"}))
