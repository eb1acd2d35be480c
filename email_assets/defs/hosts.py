"""Runs that may execute on another host: which stores they can use, and which host ran them.

With a run launcher that sends runs elsewhere (dagster-celery's `CeleryRunLauncher`,
Docker, Kubernetes), a run's process reads its configuration on the host that executes it.
A worker missing `EMAIL_ASSETS_DATABASE_URL` or `EMAIL_ASSETS_CHROMA` would quietly write
an SQLite file and a Chroma directory on its own disk: the run succeeds and nobody else
sees its data. Such runs refuse the local defaults instead, with one line naming the
variable. Each run also records the host that executed it as a run tag, so an operator
(and a test) can tell which worker did what.
"""

from __future__ import annotations

import socket

import dagster as dg

from email_assets.errors import ConfigurationError

HOST_TAG = "email_assets/host"
# Launchers whose runs execute on the host that launched them (the daemon's, or in-process).
SAME_HOST_LAUNCHERS = frozenset({"DefaultRunLauncher", "SyncInMemoryRunLauncher"})


def runs_elsewhere(instance: dg.DagsterInstance | None) -> bool:
    return instance is not None and type(instance.run_launcher).__name__ not in SAME_HOST_LAUNCHERS


def require_shared_database(instance: dg.DagsterInstance | None, url: str | None) -> None:
    if runs_elsewhere(instance) and (not url or url.startswith("sqlite")):
        raise _local_store(instance, "EMAIL_ASSETS_DATABASE_URL", "a PostgreSQL URL", "an SQLite file")


def require_shared_chroma(instance: dg.DagsterInstance | None, location: str | None) -> None:
    if runs_elsewhere(instance) and not (location or "").startswith(("http://", "https://")):
        raise _local_store(instance, "EMAIL_ASSETS_CHROMA", "a Chroma server (http://host:port)", "a local directory")


def _local_store(instance: dg.DagsterInstance | None, variable: str, shared: str, local: str) -> ConfigurationError:
    launcher = type(instance.run_launcher).__name__ if instance else "?"
    return ConfigurationError(
        f"runs execute on any host ({launcher}): set {variable} on every host to {shared}, not {local}"
    )


def record_host(context: dg.InitResourceContext) -> None:
    """Tag the run with the host executing it (once; every resource setup of the run may call it)."""
    instance, run_id = context.instance, context.run.run_id if context.run else None
    if instance is None or run_id is None:
        return
    run = instance.get_run_by_id(run_id)
    if run is not None and HOST_TAG not in run.tags:
        instance.add_run_tags(run_id, {HOST_TAG: socket.gethostname()})
