# One entry point for users and CI. `make test` and `make demo` set everything up
# in .venv first (idempotent), so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup browser redis lint test docs figures demo bench clean

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

# Debian's chromium for the web page's browser test (Playwright drives it; its own browser
# download needs the internet). Installed when missing and apt-get can run as root.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: /usr/bin/chromium is missing (apt-get install chromium); the browser test will be skipped"

# Debian's redis-server for the job queue's tests (each starts its own on a free loopback
# port). Installed when missing and apt-get can run as root.
redis:
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || \
	  echo "warning: redis-server is missing (apt-get install redis-server); the queue tests will be skipped"

test: $(STAMP) browser redis
	$(PY) -m pytest -q

# The documentation site (mkdocs.yml): the figures tables of the README and docs/ must match
# docs/figures/, then a strict build, so a broken link, a missing page or figures file fails.
docs: $(STAMP)
	$(PY) scripts/figures.py --check
	$(VENV)/bin/mkdocs build --strict

# After a bench has rewritten its docs/figures/*.json: the tables of the README and docs/ from them.
figures: $(STAMP)
	$(PY) scripts/figures.py

demo: $(STAMP)
	$(VENV)/bin/synctalk2d demo

bench: $(STAMP)
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/infer_unet.py
	$(PY) bench/infer.py

clean:
	rm -rf $(VENV) build *.egg-info
