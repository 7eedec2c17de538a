"""Faulty checkpoints and exports: an empty, truncated or foreign file, or weights of another
architecture, give one clear error naming the file (and keys), never a raw EOFError or a
state-dict size mismatch."""

from __future__ import annotations

import pytest
import torch

from lightquant.engine.checkpoint import read_checkpoint
from lightquant.errors import CheckpointError, UserError
from lightquant.export import load_model
from lightquant.models import LSTM

from .conftest import cpu_trainer
from .test_entry_errors import run


def files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": LSTM(input_size=5, hidden_size=8).state_dict()}, good)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save(torch.zeros(3), foreign)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    return {"empty": empty, "truncated": truncated, "foreign": foreign, "text": text}


@pytest.mark.parametrize("kind", ["empty", "truncated", "foreign", "text"])
def test_unreadable_checkpoints_are_named(tmp_path, kind):
    path = files(tmp_path)[kind]
    with pytest.raises(CheckpointError, match=rf"trainer.resume: {path}"):
        read_checkpoint(path, "trainer.resume")
    with pytest.raises(UserError, match=str(path)):
        load_model(path)


def test_resume_with_other_sizes_names_the_keys(tmp_path):
    ckpt = tmp_path / "last.pt"
    small = LSTM(input_size=5, hidden_size=8, layers=1)
    torch.save({"model": small.state_dict()}, ckpt)
    big = LSTM(input_size=5, hidden_size=16, layers=1)
    tr = cpu_trainer(big, torch.optim.Adam(big.parameters()), None, epochs=1, batch_size=8, seed=0, progress=False)
    with pytest.raises(CheckpointError, match=r"trainer.resume=.*do not fit.*rnn.weight_hh_l0 \(32, 8\) vs \(64, 16\)"):
        tr.resume(ckpt)


@pytest.mark.slow
def test_empty_export_through_evaluate_is_one_line(tmp_path):
    path = files(tmp_path)["empty"]
    proc = run("evaluate.py", f"ckpt={path}", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: ckpt: {path} is empty" in proc.stderr
