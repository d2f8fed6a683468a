# One entry point for users and CI. `make test` and `make demo` set everything up
# in .venv first (idempotent), so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup lint test demo bench clean

setup: $(STAMP)

# torch goes in first (on a CPU machine this picks the local CPU wheel and never resolves a
# CUDA build); everything else at the exact versions in constraints.txt, so two installs
# of the same checkout get the same packages.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# ruff, configured in pyproject.toml: lint rules, then formatting (checked, not applied).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/synctalk2d demo

bench: $(STAMP)
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/infer_unet.py
	$(PY) bench/infer.py

clean:
	rm -rf $(VENV) build *.egg-info
