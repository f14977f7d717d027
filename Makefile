# l2l-study: `make sweep` and `make test` work on a fresh clone; everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SPEC ?= quick
STUDY_DIR ?= runs/$(notdir $(basename $(SPEC)))
ARGS ?=
PYTEST_ARGS ?=
# test processes: each test file runs whole in one (its module fixtures run once); 1 = serial.
# Files go out in collection order (e2e, integration, then the many short unit files, which even
# out the end): xdist's default order, by test count, sent a 4-test file of 170 s out near the end
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup lint format test trial sweep report ui bench gpu-kit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'
	@echo "  variables: SPEC=quick|fashion|control|paper|paper-lite|path.toml  STUDY_DIR=runs/<spec>  ARGS='...'  FULL=1 (bench)  TEST_WORKERS=2|1|auto (test)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project (reruns only when pyproject.toml changes)

lint: $(STAMP) ## ruff: the formatter's check and the linter (CI runs it before the tests)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP) ## ruff: format the tree and apply the linter's safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) ## run the test suite, TEST_WORKERS=2 files at a time (fails when no test ran)
	$(PY) -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder,) $(PYTEST_ARGS)

trial: $(STAMP) ## one in-process trial: make trial ARGS="--model vgg11 --method greedy --epochs 5"
	$(PY) -m study trial $(ARGS)

sweep: $(STAMP) ## the study: make sweep [SPEC=paper] [ARGS="--set budget.max_trials=8"]; uses RAY_ADDRESS if set
	$(PY) -m study sweep --spec $(SPEC) --study-dir $(STUDY_DIR) $(ARGS)

report: $(STAMP) ## rebuild the report of a study: make report STUDY_DIR=runs/quick
	$(PY) -m study report --study-dir $(STUDY_DIR)

ui: $(STAMP) ## MLflow UI on 127.0.0.1:5000 over the study's store; prints the link to its runs table
	$(PY) -m study ui --study-dir $(STUDY_DIR)

bench: $(STAMP) ## method and harness cost as ratios (FULL=1 for larger models); results in benchmarks/results/
	$(PY) -m benchmarks.run $(if $(FULL),--full,)

gpu-kit: ## Ray, Optuna and MLflow wheels for an offline GPU machine (<= 64 MiB) -> build/gpu-kit
	python3 -m benchmarks.gpu_kit --out build/gpu-kit

clean: ## remove caches and run outputs (keeps .venv; rm -rf .venv to reinstall)
	rm -rf runs mlflow.db mlruns .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
