"""What runs on several hosts share, tested without the hosts: the database's clock for
connection leases, PostgreSQL advisory locks for Chroma-server writers, refusing host-local
stores when runs may land anywhere, and the host tag each run records."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from email_assets.definitions import defs
from email_assets.defs.hosts import HOST_TAG
from email_assets.defs.partitions import partition_key
from email_assets.defs.resources import ChromaResource, MailStoreResource
from email_assets.errors import ConfigurationError
from email_assets.storage import connection_slots
from email_assets.storage.connection_slots import ConnectionSlots
from email_assets.storage.vectors import VectorStore
from email_assets.storage.writer_lock import ALL_PARTITIONS, vector_writer
from email_assets_tests.conftest import add_account, message, utc

CHROMA_SERVER = VectorStore("http://127.0.0.1:1", "model")  # the lock never talks to Chroma itself
CELERY_LAUNCHER = {
    "module": "dagster_celery.launcher",
    "class": "CeleryRunLauncher",
    "config": {"broker": "redis://127.0.0.1:6379/0", "backend": "redis://127.0.0.1:6379/0"},
}


@pytest.fixture
def tables_url(postgres_databases) -> str:
    server, tables_db, _ = postgres_databases
    return f"postgresql+psycopg://{server}/{tables_db}"


def test_leases_expire_by_the_database_clock_not_the_hosts(tables_url, monkeypatch) -> None:
    from email_assets.storage.database import engine_for
    from email_assets.storage.tables import metadata

    metadata.create_all(engine_for(tables_url))
    slots = ConnectionSlots(tables_url)
    assert slots.try_acquire("work", 1, "host-a") == 0

    class ClockAnHourAhead(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206 - datetime.now's own signature
            return dt.datetime.now(tz) + dt.timedelta(hours=1)

    monkeypatch.setattr(connection_slots.dt, "datetime", ClockAnHourAhead)
    # Host b's clock says host a's lease expired long ago; the database says it has 2 minutes left.
    assert slots.try_acquire("work", 1, "host-b") is None


def _holds(url: str, scope: str, held: threading.Event, release: threading.Event) -> threading.Thread:
    def hold() -> None:
        with vector_writer(CHROMA_SERVER, url, scope):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_chroma_server_writers_lock_per_partition_in_postgresql(tables_url) -> None:
    first_held, first_release = threading.Event(), threading.Event()
    first = _holds(tables_url, "work|2026-11-20", first_held, first_release)
    assert first_held.wait(10)

    same_held, same_release = threading.Event(), threading.Event()
    same = _holds(tables_url, "work|2026-11-20", same_held, same_release)
    other_held, other_release = threading.Event(), threading.Event()
    other = _holds(tables_url, "work|2026-11-21", other_held, other_release)
    purge_held, purge_release = threading.Event(), threading.Event()
    assert other_held.wait(10)  # another partition writes at the same time
    purge = _holds(tables_url, ALL_PARTITIONS, purge_held, purge_release)
    assert not same_held.wait(1.0) and not purge_held.is_set()  # the same partition and the purge wait

    first_release.set()
    assert same_held.wait(10)
    assert not purge_held.wait(0.5)  # still two partition writers
    same_release.set()
    other_release.set()
    assert purge_held.wait(10)
    purge_release.set()
    for thread in (first, same, other, purge):
        thread.join(10)


HOLDER = """
import sys, time
from email_assets.storage.vectors import VectorStore
from email_assets.storage.writer_lock import vector_writer
with vector_writer(VectorStore("http://127.0.0.1:1", "model"), sys.argv[1], "work|2026-11-20"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_writer_frees_its_partition_at_once(tables_url) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, tables_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)  # an OOM kill: no finally, no unlock
        holder.wait(10)
        held, release = threading.Event(), threading.Event()
        thread = _holds(tables_url, "work|2026-11-20", held, release)
        started = time.monotonic()
        assert held.wait(30), "the dead holder's lock was not freed with its connection"
        release.set()
        thread.join(10)
        print(f"lock taken over {time.monotonic() - started:.2f} s after the kill")
    finally:
        holder.kill()


def test_runs_that_may_land_on_any_host_refuse_host_local_stores(tables_url) -> None:
    with dg.instance_for_test(overrides={"run_launcher": CELERY_LAUNCHER}) as instance:
        context = dg.build_init_resource_context(instance=instance)
        for url in (None, "sqlite:////tmp/private.sqlite"):
            with pytest.raises(ConfigurationError, match="set EMAIL_ASSETS_DATABASE_URL on every host"):
                MailStoreResource(database_url=url).setup_for_execution(context)
        MailStoreResource(database_url=tables_url).setup_for_execution(context)
        for location in (None, "/var/lib/chroma"):
            with pytest.raises(ConfigurationError, match="set EMAIL_ASSETS_CHROMA on every host"):
                ChromaResource(location=location).setup_for_execution(context)
        ChromaResource(location="http://chroma:8000").setup_for_execution(context)


def test_a_run_under_a_distributed_launcher_fails_in_one_line_without_writing(project_env, tmp_path) -> None:
    with dg.instance_for_test(overrides={"run_launcher": CELERY_LAUNCHER}) as instance:
        instance.add_dynamic_partitions("accounts", ["work"])
        result = dg.materialize(
            [defs.get_assets_def("raw_messages")],
            instance=instance,
            partition_key=str(partition_key("work", dt.date(2026, 11, 20))),
            resources=defs.resources,
            raise_on_error=False,
        )
    assert not result.success
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE]
    assert "set EMAIL_ASSETS_DATABASE_URL on every host to a PostgreSQL URL" in str(failure.event_specific_data.error)
    assert not (project_env / "data").exists()  # no private SQLite store was made on this host


def test_every_run_records_the_host_that_executed_it(mail_user, instance) -> None:
    from email_assets.defs.materialize import materialize_partitions

    mail_user.append([(message("a", "a"), utc(dt.date(2026, 11, 20)))])
    assert add_account(mail_user, "work") == 0
    [result] = materialize_partitions(instance, "work", [dt.date(2026, 11, 20)])
    assert instance.get_run_by_id(result.run_id).tags[HOST_TAG] == socket.gethostname()


def test_the_ca_certificate_travels_with_the_account(mail_user, instance, tmp_path, capsys) -> None:
    """A worker host has no copy of the CA file given to `accounts add` on another host."""
    from email_assets import settings
    from email_assets.defs.materialize import materialize_partitions
    from email_assets.storage.accounts import AccountStore
    from email_assets.storage.messages import MessageStore
    from email_assets.storage.tables import raw_messages
    from email_assets_tests.conftest import run_cli

    day = dt.date(2026, 11, 20)
    mail_user.append([(message("a", "verified over TLS"), utc(day))])
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello")
    assert add_account(mail_user, "bad", ["--ca-file", str(not_pem)]) == 2  # the last --ca-file counts
    assert "holds no PEM certificate" in capsys.readouterr().err

    copied = tmp_path / "ca-on-the-adding-host.pem"
    copied.write_bytes(mail_user.server.ca_file.read_bytes())
    where = ["--host", mail_user.server.host, "--port", str(mail_user.server.imaps_port), "--username", mail_user.name]
    command = ["accounts", "add", "work", *where, "--password-stdin", "--ca-file", str(copied)]
    assert run_cli(command, stdin=mail_user.password + "\n") == 0
    copied.unlink()  # as on another host
    assert AccountStore(settings.database_url()).get("work").ca_certificate == mail_user.server.ca_file.read_text()
    [result] = materialize_partitions(instance, "work", [day])
    assert result.success
    assert MessageStore(settings.database_url()).count(raw_messages, "work", day.isoformat()) == 1
