# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed first, so pip never pulls an unpinned (multi-GB CUDA) build; override for another build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-browser lab lab-fast lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check $(TORCH_SPEC)
	$(PIP) install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cmlearn demo

lint: $(STAMP)
	$(BIN)/ruff check cmlearn tests benchmarks scripts
	$(BIN)/lint-imports --no-cache  # the layer contract in pyproject.toml (docs/ARCHITECTURE.md)

test-unit: $(STAMP)
	CMLEARN_FAST=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg $(BIN)/pytest --nbval-lax -n 2 --dist loadfile \
		--durations=15 -q tests notebooks

test-browser: $(STAMP)
	bash tests/browser/setup.sh $(BIN)
	CMLEARN_FAST=1 OMP_NUM_THREADS=1 $(BIN)/pytest -q -p no:cacheprovider tests/browser --override-ini addopts=

test: lint test-unit test-browser

# JupyterLab on the course: `make lab` in full mode, `make lab-fast` in fast mode (CMLEARN_FAST=1).
LAB := JUPYTERLAB_SETTINGS_DIR=$(CURDIR)/.jupyter/lab/user-settings $(BIN)/jupyter lab --notebook-dir=notebooks

lab: $(STAMP)
	bash tests/browser/setup.sh $(BIN) --settings-only
	@echo "cmlearn: FULL mode. Notebooks 04 and 06 train for about 3 and 8 minutes on a CPU the first time (a progress"
	@echo "bar shows each run; runs are cached in notebooks/runs/ and loaded afterwards; 08, 10 and 11 load the runs the"
	@echo "course ships in data/pretrained/, retrain = True in a notebook trains them). For every notebook in a minute"
	@echo "or two, with smoke-sized runs (poor models, same code and checks): stop this (Ctrl-C) and run  make lab-fast"
	CMLEARN_FAST=0 $(LAB)

lab-fast: $(STAMP)
	bash tests/browser/setup.sh $(BIN) --settings-only
	@echo "cmlearn: FAST mode (CMLEARN_FAST=1): every notebook in a minute or two, smoke-sized runs. Full mode: make lab"
	CMLEARN_FAST=1 $(LAB)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
