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

.PHONY: serve venv demo test test-slow bench bench-peer docs chromium lab export clean-venv

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

# The documentation site under _docs/ (notebooks executed, processed by nbdev, rendered by nbconvert).
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

# Debian's Chromium, for the browser test of the site and the report.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lab: $(STAMP)
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q "jupyterlab>=4,<5"
	$(BIN)/jupyter lab nbs

export: $(STAMP)
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export && $(BIN)/python tools/make_readme.py

clean-venv:
	rm -rf $(VENV)

# The service on MovieLens-100K: trains and exports the model (and loads the log into a local SQLite store) when the
# models folder is missing, then serves on http://127.0.0.1:8000 (GET /health, /users/1/recommendations, /docs).
MODELS ?= models
DB ?= sqlite:///serve.db
serve: $(STAMP)
	@test -f $(MODELS)/manifest.json || $(BIN)/interest-migration export --data movielens --out $(MODELS) --db $(DB) --epochs 20
	$(BIN)/interest-migration serve --models $(MODELS) --db $(DB)
