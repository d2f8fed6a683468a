# One entry point for users and CI. `make test` and `make demo` set everything up
# in .venv first (idempotent), so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

# torch goes in first and is pinned by constraints.txt: on a CPU machine this picks
# the local CPU wheel and never resolves a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

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
