"""Beyond one process on existing engines: Hydra launchers for parallel trials (joblib, submitit),
Optuna studies on PostgreSQL shared by several sweeps, study identity, and torchrun across two nodes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import closing
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hydra.core.hydra_config import HydraConfig
from optuna.trial import TrialState

import lightquant
from lightquant.launch import study_key

from .conftest import ROOT, TINY
from .test_scale import DDP_COMMON, assert_trained_alike, one_process
from .test_sweep import sweep


def sweeper(*overrides: str):
    """The composed sweeper (and launcher) config of `python train.py hparams_search=optuna <overrides>`."""
    cfg = lightquant.compose("hparams_search=optuna", *TINY, *overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg.hydra


def study_name(*overrides: str) -> str:
    return str(sweeper(*overrides).sweeper.study_name)


def test_the_default_study_name_says_what_its_trials_share():
    base = study_name()
    assert base.startswith("synthetic_lstm_") and len(base.rsplit("_", 1)[1]) == 8
    assert study_name() == base  # the same command: the same study, so a rerun resumes it
    changed = {study_name(o) for o in ("use_news=true", "optimized_metric=val/loss", "trainer.epochs=3",
                                      "hydra.sweeper.direction=minimize", "hparams_search=acl18_alstm")}
    assert len(changed) == 5 and base not in changed  # use_news, objective, settings, space: new studies
    space = {"trainer.lr": "tag(log, interval(1e-5, 1e-3))"}
    key = lambda params: study_key("d", "m", False, "val/mcc", "maximize", params, [])  # noqa: E731
    assert key(space) != key({**space, "model.hidden_size": "choice(8, 16)"}) != key({"trainer.lr": "interval(0, 1)"})
    # where files go, how many trials to add, where the study is kept: the same study
    assert study_name("paths.cache_dir=/elsewhere", "hydra.sweeper.n_trials=50",
                      "hydra.sweeper.storage=sqlite:///x.db", "trainer.num_threads=1") == base
    assert study_name("hydra.sweeper.study_name=mine") == "mine"


def test_trials_at_once_follow_the_launcher():
    assert sweeper().sweeper.n_jobs == 1  # the basic launcher runs a batch one trial after another
    assert sweeper("hydra/launcher=joblib", "hydra.launcher.n_jobs=3").sweeper.n_jobs == 3
    assert sweeper("hydra/launcher=joblib").sweeper.n_jobs == os.cpu_count()  # joblib's -1: every core


def test_the_slurm_example_composes_into_submitit():
    launcher = sweeper("hydra/launcher=slurm", "hydra.launcher.partition=short").launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_task, launcher.timeout_min) == ("short", 1, 240)


def _log_span(run: Path) -> tuple[datetime, datetime]:
    """First and last time stamp of a run's train.log."""
    stamps = [datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f") for line in
              (run / "train.log").read_text().splitlines() if line.startswith("[20")]
    return stamps[0], stamps[-1]


@pytest.mark.slow
def test_joblib_launcher_runs_two_trials_at_a_time_into_one_sweep_dir(tmp_path):
    db = tmp_path / "optuna.db"
    out = tmp_path / "sweep"
    proc = sweep(tmp_path, out, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_trials=4",
                 f"hydra.sweeper.storage=sqlite:///{db}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in log and "a new study" in log
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 4 and set(board["status"]) == {"ok"} and (out / "report.md").is_file()
    for a, b in ((0, 1), (2, 3)):  # each batch's two trials ran at the same time, in two processes
        (start_a, end_a), (start_b, end_b) = _log_span(out / str(a)), _log_span(out / str(b))
        assert start_b < end_a and start_a < end_b
    (summary,) = optuna.study.get_all_study_summaries(f"sqlite:///{db}")
    assert summary.n_trials == 4


@pytest.mark.slow
def test_submitit_local_launcher_runs_trials_as_subprocesses(tmp_path):
    out = tmp_path / "sweep"
    proc = sweep(tmp_path, out, "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 2 and set(board["status"]) == {"ok"} and (out / "report.md").is_file()
    assert list((out / ".submitit").iterdir())  # submitit's own job files, inside the sweep dir


@pytest.mark.slow
def test_sweeps_differing_in_use_news_keep_separate_studies_and_a_rerun_resumes(tmp_path):
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    ov = ["hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={db}"]
    for i, extra in enumerate(([], ["use_news=true"], [])):
        proc = sweep(tmp_path, tmp_path / f"sweep{i}", *ov, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming it, 1 trial(s) so far" in proc.stdout  # the third sweep reran the first's command
    studies = {s.study_name: s.n_trials for s in optuna.study.get_all_study_summaries(db)}
    assert sorted(studies.values()) == [1, 2] and all(n.startswith("synthetic_lstm_") for n in studies)


# ------------------------------------------------------------------ PostgreSQL
def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))  # Debian's layout, not on PATH
    return str(versions[-1]) if versions else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a free local port, in a temp dir; its URL."""
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver (pip install -e '.[postgres]') is not installed")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: apt install postgresql")
    # the server refuses to run as root: then it runs as `nobody`, in a folder that user owns
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    if as_user and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot start PostgreSQL as another user")
    root = Path(tempfile.mkdtemp(prefix="lq-pg-"))
    if as_user:
        shutil.chown(root, user="nobody")
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, check=True)  # noqa: E731
    try:
        run(initdb, "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        run(pg_ctl, "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "start",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(root / "data"), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_sweeps_share_one_study_on_postgresql_and_record_every_trial_once(tmp_path, postgres_url):
    """Two sweep processes at once on one PostgreSQL study (as two machines would), each with its own
    sampler seed: 2 + 2 trials, numbered once each, every one complete and found in a sweep dir."""
    common = ["hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.study_name=shared"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for i in (1, 2):
        cmd = [sys.executable, "train.py", "hparams_search=optuna", *[o for o in TINY if not o.startswith("model.hidden")],
               "trainer.epochs=1", f"hydra.sweep.dir={tmp_path / f'w{i}'}", f"paths.cache_dir={tmp_path / f'cache{i}'}",
               f"paths.result_dir={tmp_path / 'result'}", *common, f"hydra.sweeper.sampler.seed={i}"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-2000:] for log in logs)
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    boards = pd.concat([pd.read_csv(tmp_path / f"w{i}" / "leaderboard.csv") for i in (1, 2)])
    assert len(boards) == 4
    recorded = sorted(round(t.value, 10) for t in study.trials)
    assert sorted(boards["val/mcc"].round(10)) == recorded  # each trial's result once, in one sweep dir


# ------------------------------------------------------------------ two torchrun "nodes"
@pytest.mark.slow
def test_two_torchrun_nodes_match_one_process(cfg_factory, tmp_path):
    """Two torchrun agents (--nnodes=2, one process each, a c10d rendezvous on 127.0.0.1, gloo) train
    like one process with their summed batch, into one run dir."""
    single, single_weights = one_process(cfg_factory, tmp_path)
    cwd = tmp_path / "nodes"
    cwd.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    port = _free_port()
    agents = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
         f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes", str(ROOT / "train.py"), "trainer=ddp", *TINY,
         *DDP_COMMON, "dataset.batch_size=32", f"paths.cache_dir={tmp_path / 'cache'}",
         f"paths.result_dir={tmp_path / 'result'}"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [a.communicate(timeout=300)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], "\n".join(log[-3000:] for log in logs)

    run = cwd / "outputs" / "synthetic" / "lstm" / "two-nodes"  # named by the rendezvous id, on both nodes
    assert sorted(p.name for p in run.glob("*.log")) == ["train.log", "train.rank1.log"]
    assert "rank 0/2 (gloo)" in (run / "train.log").read_text()
    assert_trained_alike(run, single, single_weights)
