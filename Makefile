# `make demo` and `make test` do all set-up on a fresh Debian machine.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: install install-python demo ui test test-fast lint bench reliability dev clean

install: $(VENV)/.installed

# System packages (root, apt) and then the Python side.
$(VENV)/.installed: $(VENV)/.python-installed
	scripts/install-system-packages.sh
	touch $@

# What the demo needs: Dovecot, not the browser, mbsync or Redis of the tests and benchmarks.
$(VENV)/.demo-installed: $(VENV)/.python-installed
	scripts/install-system-packages.sh demo
	touch $@

# The Python side alone: what `make test-fast` needs, no root.
install-python: $(VENV)/.python-installed

$(VENV)/.python-installed: pyproject.toml
	@echo "creating $(VENV) and installing the project (a few minutes on a fresh machine)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	@echo "installing torch 2.13.0 (CPU), only to export the local model to ONNX once"
	$(PY) -m pip install -q torch==2.13.0
	@echo "installing email_assets with its test extras"
	$(PY) -m pip install -q -e '.[test]'
	@echo "exporting all-MiniLM-L6-v2 to ONNX"
	HF_HUB_OFFLINE=1 $(PY) -m email_assets.local_model
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m email_assets.demo.run

# The Dagster UI on the demo's data (after `make demo`). Started from DAGSTER_HOME, so Dagster
# does not warn about the repository's own dagster.yaml; the warning filter hides its
# "dev_command is superseded" notice, which tells a newcomer nothing about this project.
DAGSTER_DEV := $(abspath $(PY)) -W "ignore:Function \`dev_command\` is superseded" -m dagster dev -w $(CURDIR)/workspace.yaml

ui: $(VENV)/.demo-installed
	@test -f data/demo/env.sh || { echo "run 'make demo' first"; exit 2; }
	. data/demo/env.sh && cd "$$DAGSTER_HOME" && $(DAGSTER_DEV)

test: install
	$(VENV)/bin/ruff check email_assets email_assets_tests benchmarks
	$(PY) -m pytest -q

# The tests that start no service (no Dovecot, PostgreSQL, Chroma server, daemon, browser or
# Celery workers; markers set in email_assets_tests/conftest.py by the fixtures a test uses):
# no root, no apt. Prints how many it runs and how many it leaves to `make test`.
FAST_TESTS := not dovecot and not postgres and not chroma_server and not daemon and not browser and not celery and not slow

test-fast: install-python
	$(VENV)/bin/ruff check email_assets email_assets_tests benchmarks
	$(PY) -m pytest -q -m "$(FAST_TESTS)"

bench: install
	$(PY) -m benchmarks.search_eval
	$(PY) -m benchmarks.hostile
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.backfill
	$(PY) -m benchmarks.sensor_tick
	$(PY) -m benchmarks.celery_scale

# Hostile mail, kills, concurrent runs and the daemon soak (SQLite and PostgreSQL), then
# their figures and the worst per-message time and memory over the hostile set and corpus.
RELIABILITY_TESTS := email_assets_tests/test_hostile_mail.py email_assets_tests/test_hostile_properties.py \
	email_assets_tests/test_hostile_pipeline.py email_assets_tests/test_kills_and_concurrency.py \
	email_assets_tests/test_soak.py email_assets_tests/test_hostile_server.py email_assets_tests/test_secrets_and_permissions.py

reliability: install
	rm -f .reliability.jsonl
	EMAIL_ASSETS_RELIABILITY_REPORT=$(CURDIR)/.reliability.jsonl $(PY) -m pytest -q $(RELIABILITY_TESTS)
	$(PY) -m benchmarks.reliability .reliability.jsonl
	$(PY) -m benchmarks.hostile

dev: $(VENV)/.demo-installed
	mkdir -p .dagster_home && cp -n dagster.yaml .dagster_home/ || true
	cd .dagster_home && DAGSTER_HOME=$(CURDIR)/.dagster_home $(DAGSTER_DEV)

clean:
	rm -rf $(VENV) data .dagster_home
