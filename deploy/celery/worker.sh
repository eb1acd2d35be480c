#!/usr/bin/env bash
# Start one Celery worker host for email_assets runs (deploy/celery/README.md).
# Needs: the project installed (`make install` or `pip install '.[celery]'`), $DAGSTER_HOME
# holding deploy/celery/dagster.yaml, and the variables the README lists.
# EMAIL_ASSETS_WORKER_CONCURRENCY: runs at once on this host (default: one per 2 cores;
# embedding is CPU-bound and parse/clean already spread over the cores).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${DAGSTER_HOME:?set DAGSTER_HOME (a directory holding deploy/celery/dagster.yaml)}"
: "${EMAIL_ASSETS_CELERY_BROKER:?set EMAIL_ASSETS_CELERY_BROKER, e.g. redis://broker-host:6379/0}"
: "${EMAIL_ASSETS_CELERY_BACKEND:?set EMAIL_ASSETS_CELERY_BACKEND, e.g. redis://broker-host:6379/1}"
: "${EMAIL_ASSETS_DAGSTER_PG_URL:?set EMAIL_ASSETS_DAGSTER_PG_URL (Dagster storage on PostgreSQL)}"
cores="$(nproc)"
concurrency="${EMAIL_ASSETS_WORKER_CONCURRENCY:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}"
bin="${EMAIL_ASSETS_VENV_BIN:-$(dirname "$(command -v dagster-celery)")}"
export PATH="$bin:$PATH"  # dagster-celery starts `celery` from PATH
# --disable-prefetch: a busy worker does not reserve the next run while another idles
#   (Redis broker, Celery >= 5.7).
# --max-tasks-per-child=1: each run gets a fresh process, as with Dagster's default
#   launcher, so a run's memory (model, Chroma client) is handed back when it ends.
exec "$bin/dagster-celery" worker start -A dagster_celery.app -y "$here/worker.yaml" \
  --name email-assets --loglevel "${EMAIL_ASSETS_WORKER_LOGLEVEL:-INFO}" -- \
  --concurrency="$concurrency" --disable-prefetch --max-tasks-per-child=1 --without-gossip --without-mingle \
  "$@"
