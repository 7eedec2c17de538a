"""User errors reach the user as one line through the real entry points: no traceback, exit
status 2, the culprit (key, file) named. A bug still shows its traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import ROOT


def run(script: str, *args: str, tmp_path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, script, *args]
    if script == "train.py":
        cmd += [f"hydra.run.dir={tmp_path / 'run'}", f"paths.result_dir={tmp_path / 'result'}", "tracker=disabled"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "SWANLAB_MODE": "disabled", **(env or {})})


@pytest.fixture
def bad_csv_folder(tmp_path):
    folder = tmp_path / "prices"
    folder.mkdir()
    (folder / "AAA.csv").write_text("Date,Open,High,Low,Volume\n2020-01-02,1,1,1,5\n")
    return folder


CASES = {  # family: (script, overrides, words the message must contain)
    "config value": ("train.py", ["trainer.lr=-1"], ["trainer.lr=-1", "> 0"]),
    "config choice": ("train.py", ["trainer.loss=mse", "trainer.epochs=1"], ["trainer.loss='mse'", "hinge"]),
    "launch": ("train.py", ["trainer.device=cuda"], ["trainer.device=cuda", "not available"]),
    "checkpoint": ("train.py", ["trainer.init_from=/nonexistent/run"], ["trainer.init_from=/nonexistent/run"]),
    "export": ("evaluate.py", ["ckpt=/nonexistent/model.pth"], ["/nonexistent/model.pth"]),
    "tool choice": ("predict.py", ["ckpt=/nonexistent/model.pth", "device=gpu"], ["device='gpu'", "cuda"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(CASES))
def test_user_errors_print_one_line(family, tmp_path):
    script, args, words = CASES[family]
    proc = run(script, *args, tmp_path=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "HYDRA_FULL_ERROR" not in out, out
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and all(w in line[0] for w in words), out


@pytest.mark.slow
def test_bad_data_names_the_file_in_one_line(bad_csv_folder, tmp_path):
    proc = run("train.py", "dataset=csv", f"dataset.root={bad_csv_folder.parent}",
               f"dataset.price_dirs=[{bad_csv_folder}]", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "AAA.csv" in proc.stderr and "missing column(s) ['Close']" in proc.stderr


@pytest.mark.slow
def test_debug_switch_shows_the_traceback(tmp_path):
    proc = run("train.py", "trainer.lr=-1", tmp_path=tmp_path, env={"LIGHTQUANT_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "trainer.lr=-1" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "predict.py"])
def test_an_unwritable_output_folder_is_one_line(script, tmp_path):
    (tmp_path / "afile").write_text("")  # a file where the run dir's parent should be (root can write anywhere else)
    args = ["ckpt=/nonexistent/model.pth"] if script == "predict.py" else ["tracker=disabled"]
    proc = subprocess.run([sys.executable, script, *args, f"hydra.run.dir={tmp_path / 'afile' / 'run'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write the output folder" in proc.stderr and "hydra.run.dir=<folder>" in proc.stderr


@pytest.mark.slow
def test_warnings_are_one_log_line_without_the_library_source(tmp_path):
    """SCINet's padding note (seq_len 7 is not a multiple of 4), raised inside Hydra's instantiate:
    one log line naming it, not a stderr print quoting Hydra's source line."""
    proc = run("train.py", "debug=fast", "model=scinet", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "[py.warnings][WARNING] - UserWarning: SCINet: seq_len=7" in out
    assert "result = _target_(" not in out and "_instantiate2.py" not in out
