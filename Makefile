# `make demo` and `make test` do all set-up on a fresh Debian machine.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench dev clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	scripts/install-system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: install
	$(PY) -m email_assets.demo.run

test: install
	$(VENV)/bin/ruff check email_assets email_assets_tests benchmarks
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks.run

dev: install
	mkdir -p .dagster_home && cp -n dagster.yaml .dagster_home/ || true
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(VENV)/bin/dagster dev

clean:
	rm -rf $(VENV) data .dagster_home
