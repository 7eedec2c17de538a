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

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast clean clean-cache

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED) ## Create .venv and install LightQuant with its dependencies (torch pinned by TORCH_SPEC)

train: $(INSTALLED) ## Train the default model (LSTM) on the built-in synthetic market; extra overrides in ARGS="..."
	$(BIN)/python train.py $(ARGS)

test: $(INSTALLED) ## Run the test suite (real-data tests use LIGHTQUANT_DATA or ../shared/datasets)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## Run the tests without the slow end-to-end ones
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean-cache: ## Remove the processed-data cache
	rm -rf .cache

clean: clean-cache ## Remove caches, run outputs and exported models (keeps .venv)
	rm -rf outputs multirun/*/ result .pytest_cache
