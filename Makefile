# The README's two set-up commands are `make demo` and `make test`; both build .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: serve pg venv demo test test-slow bench bench-peer docs chromium lab export clean-venv

# (Re)build the environment when it is missing or settings.ini / setup.py / Makefile changed.
$(STAMP): settings.ini setup.py Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q nbdev==2.4.14 "fastcore>=1.12.3,<2" "execnb>=0.1.12,<0.2"
	$(BIN)/python -m pip install -q --no-deps recbole==1.2.1
	$(BIN)/python -m pip install -q -e ".[dev]" torch==2.13.0
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/interest-migration demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

# Everything, slow cells and the browser test of the rendered site included.
test-slow: $(STAMP) docs chromium
	$(BIN)/python -m pytest -q -n 2 --run-slow tests

bench: $(STAMP)
	$(BIN)/interest-migration bench all

# The peers, each in its own virtualenv: RecBole for `interest-migration bench sequence` (.venv-recbole; hours at
# RecBole's speed, so not in CI) and Microsoft Recommenders for `interest-migration bench metrics` (.venv-msr).
bench-peer: $(STAMP)
	$(PYTHON) tools/bench_peer_msr.py --setup-only
	$(PYTHON) tools/bench_peer_recbole.py --epochs 2

# The documentation site under _docs/: notebooks executed by nbdev's executor in forked children of one process that
# imported the libraries once (slow cells keep their committed output, marked as cached), processed by nbdev's
# processors as each finishes, rendered by Sphinx + MyST-NB, 2 processes (Furo theme, MathJax bundled offline).
# The generator (settings.ini's docs_requirements, the `docs` extra) is installed when missing.
# DOCS_FLAGS=--no-exec renders the committed outputs; DOCS_FLAGS=--slow runs the slow cells too.
DOCS_FLAGS ?=
docs: $(STAMP)
	@$(BIN)/python -c "import importlib as i; [i.import_module(m) for m in ('sphinx', 'myst_nb', 'furo', 'sphinx_copybutton', 'sphinx-mathjax-offline')]" 2>/dev/null || \
	  $(BIN)/python -m pip install -q -e ".[docs]" torch==2.13.0
	@start=$$(date +%s); $(BIN)/python tools/build_docs.py $(DOCS_FLAGS) && echo "make docs: $$(( $$(date +%s) - start ))s"

# Debian's Chromium, for the browser test of the site and the report.
chromium:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

# JupyterLab on the notebooks, bound to 127.0.0.1 (LAB_IP, LAB_PORT to change); --allow-root only as root; prints the URL.
lab: $(STAMP)
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q "jupyterlab>=4,<5"
	@$(BIN)/python tools/lab.py

export: $(STAMP)
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export && $(BIN)/python tools/make_readme.py

clean-venv:
	rm -rf $(VENV)

# The service on MovieLens-100K: trains and exports the model (and loads the log into a local SQLite store) when the
# models folder is missing, then serves on http://127.0.0.1:8000 (GET /health, /users/1/recommendations, /docs).
MODELS ?= models
DB ?= sqlite:///serve.db
serve: $(STAMP)
	@test -f $(MODELS)/manifest.json || $(BIN)/interest-migration export --data movielens --out $(MODELS) --db $(DB) --max-epochs 20
	$(BIN)/interest-migration serve --models $(MODELS) --db $(DB)

# PostgreSQL for the store's tests (tests/pg.py starts a throwaway server with initdb/pg_ctl): installs Debian's
# `postgresql` package where no initdb is found (PATH or /usr/lib/postgresql/*/bin), and does nothing where one is.
pg:
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "make pg: initdb present: $$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null && \
	  ls /usr/lib/postgresql/*/bin/initdb; fi
