# LightQuant — `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default; a GPU user overrides it, e.g.
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=
# make train's quick start (conf/experiment/quickstart.yaml); `make train QUICK=` trains the research defaults
QUICK ?= experiment=quickstart
# test workers (pytest-xdist; a module stays on one worker, so its fixtures are built once); 0 = in-process
PYTEST_JOBS ?= 2
PYTEST_XDIST = $(if $(filter 0,$(PYTEST_JOBS)),,-n $(PYTEST_JOBS) --dist loadfile)
# Optuna sweeps (conf/hparams_search/optuna.yaml). The default sqlite study makes every sweep
# resumable: rerun the same command and it adds N_TRIALS trials (4 slashes for an absolute path).
N_TRIALS ?= 20
WORKERS ?= 2
STORAGE ?= sqlite:///multirun/optuna.db
STUDY ?=
DIR ?=
SWANLOG ?= swanlog
PORT ?= 5092
NPROC ?= 2
SEED ?= 1
OUT ?= outputs/acl18/adv_lstm_two_stage/seed$(SEED)
CKPT ?= result/synthetic/model_saved/lstm.pth
DATE ?= latest

.DEFAULT_GOAL := help
.PHONY: help install train predict train-ddp paper-adv-alstm gpu-check test test-fast leaderboard sweep sweep-parallel report dashboard clean clean-cache bench bench-quick

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED) ## Create .venv and install LightQuant with its dependencies (torch pinned by TORCH_SPEC)

train: $(INSTALLED) ## Quick start: the LSTM on a small built-in market, ~2 min on 2 cores (QUICK= for the full defaults); overrides in ARGS="..."
	$(BIN)/python train.py $(QUICK) $(ARGS)

predict: $(INSTALLED) ## Ranked signals for the session after DATE (default: the data's last day) from CKPT (an export or run dir)
	$(BIN)/python predict.py ckpt=$(CKPT) date=$(DATE) $(ARGS)

train-ddp: $(INSTALLED) ## DDP over NPROC processes on this machine (torchrun; GPUs, or CPU with gloo); overrides in ARGS
	$(BIN)/torchrun --standalone --nproc_per_node=$(NPROC) train.py trainer=ddp $(ARGS)

# Adv-ALSTM as its authors ran it (conf/experiment/paper/adv_alstm_acl18.yaml): train ALSTM, then
# fine-tune it with the adversarial loss from its best weights; runs in OUT/stage1 and OUT/stage2.
paper-adv-alstm: $(INSTALLED) ## Adv-ALSTM's two-stage ACL18 recipe (ALSTM, then adversarial fine-tuning); SEED, OUT, ARGS
	$(BIN)/python train.py experiment=paper/alstm_acl18 seed=$(SEED) hydra.run.dir=$(OUT)/stage1 $(ARGS)
	$(BIN)/python train.py experiment=paper/adv_alstm_acl18 seed=$(SEED) trainer.init_from=$(OUT)/stage1 \
	  hydra.run.dir=$(OUT)/stage2 $(ARGS)

gpu-check: $(INSTALLED) ## On a CUDA machine: train a few models in fp32/bf16/fp16, check they agree, print throughput
	PYTHON=$(BIN)/python bash scripts/gpu_check.sh

test: $(INSTALLED) ## Run the test suite (real-data tests use LIGHTQUANT_DATA or ../shared/datasets)
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## Run the tests without the slow end-to-end ones
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_XDIST) $(PYTEST_ARGS)

bench: $(INSTALLED) ## Benchmarks (BENCHMARKS.md): engine, data path, precision, data prep, scaling, sweeps, quality, recipes, model speed, start-up; hours
	$(BIN)/python -m benchmarks.run $(ARGS)

bench-quick: $(INSTALLED) ## Shorter benchmarks (~30 min on 2 cores; quality: 1 seed x 5 epochs); ARGS="--sections 1,2" picks
	$(BIN)/python -m benchmarks.run --quick $(ARGS)

leaderboard: $(INSTALLED) ## Print result/<dataset>/leaderboard.csv grouped by model (mean ± std over seeds); ARGS="--runs"
	$(BIN)/python -m lightquant.evaluation.cli leaderboard $(ARGS)

sweep: $(INSTALLED) ## Optuna sweep of N_TRIALS trials (resumable: STORAGE, STUDY); overrides in ARGS="model=alstm"
	$(BIN)/python train.py hparams_search=optuna hydra.sweeper.n_trials=$(N_TRIALS) \
	  hydra.sweeper.storage=$(STORAGE) $(if $(STUDY),hydra.sweeper.study_name=$(STUDY)) $(ARGS)

# Parallel trials through Hydra's joblib launcher: one sweep asks Optuna for WORKERS trials at a time
# and runs them in WORKERS processes; one sweep dir, one report. Only the sweeping process writes the
# study, so the sqlite default is safe (several machines on one study: a PostgreSQL STORAGE).
sweep-parallel: $(INSTALLED) ## Optuna sweep of N_TRIALS trials, WORKERS at a time (joblib launcher), one sweep dir and report
	$(BIN)/python train.py hparams_search=optuna hydra/launcher=joblib hydra.launcher.n_jobs=$(WORKERS) \
	  hydra.sweeper.n_trials=$(N_TRIALS) hydra.sweeper.storage=$(STORAGE) $(if $(STUDY),hydra.sweeper.study_name=$(STUDY)) $(ARGS)

report: $(INSTALLED) ## Rewrite the report (leaderboard, best run, seed summary, plots) of DIR=multirun/<time>
	@test -n "$(DIR)" || { echo "usage: make report DIR=multirun/<time> [ARGS='--objective val/loss']"; exit 2; }
	$(BIN)/python -m lightquant.sweeps $(DIR) $(ARGS)

dashboard: $(INSTALLED) ## Local SwanLab dashboard of the runs tracked with tracker.mode=local in SWANLOG=swanlog (installs the dashboard extra if missing)
	@$(BIN)/python -c "import swanboard" 2>/dev/null || $(BIN)/pip install --quiet -e '.[dashboard]'
	$(BIN)/python -m swanlab watch $(SWANLOG) --port $(PORT)

clean-cache: ## Remove the processed-data cache
	rm -rf .cache

clean: clean-cache ## Remove caches, run outputs and exported models (keeps .venv)
	rm -rf outputs multirun/*/ result .pytest_cache
