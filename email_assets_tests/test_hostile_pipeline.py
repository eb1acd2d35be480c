"""Every hostile case and every real fixture message, through Dovecot and all four assets.

The unit tests bound each defect's function; this one checks what a user would see after
such mail arrived: the run succeeds, every message is stored once with its exact bytes,
every raw message has its parsed, cleaned and embedded rows (a bad one as a recorded
defect, not a missing row), the checks ran per partition, and the password is nowhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter

import dagster as dg
import sqlalchemy as sa

from email_assets import settings
from email_assets.defs.materialize import materialize_range
from email_assets.storage.database import engine_for
from email_assets.storage.tables import (
    cleaned_texts,
    message_locations,
    parsed_emails,
    raw_messages,
    search_documents,
)
from email_assets_tests.conftest import add_account, record_reliability, utc
from email_assets_tests.hostile_cases import CASES
from email_assets_tests.real_mail import fixture_files

SUBJECT = re.compile(rb"^Subject:[ \t]*[^\s]", re.M | re.I)
HOSTILE_DAY = dt.date(2026, 11, 10)
REAL_DAY = dt.date(2026, 11, 11)


def test_hostile_and_real_mail_end_in_every_asset_once(mail_user, instance, project_env, capfd) -> None:
    hostile = [build() for build in CASES.values()]
    # (A zero-byte fixture is left out: IMAP servers refuse to APPEND it.)
    real = sorted({raw for raw in (path.read_bytes() for path in fixture_files()) if raw})
    sent = hostile + real
    mail_user.append([(raw, utc(HOSTILE_DAY, n % 24)) for n, raw in enumerate(hostile)])
    mail_user.append([(raw, utc(REAL_DAY, n % 24)) for n, raw in enumerate(real)])
    assert add_account(mail_user, "work") == 0

    result = materialize_range(instance, "work", HOSTILE_DAY, REAL_DAY, raise_on_error=False)

    with engine_for(settings.database_url()).connect() as connection:
        stored = Counter(connection.execute(sa.select(raw_messages.c.sha256)).scalars())
        rows = {
            table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (parsed_emails, cleaned_texts)
        }
        subjects = dict(
            connection.execute(
                sa.select(raw_messages.c.sha256, parsed_emails.c.subject).join(
                    parsed_emails, parsed_emails.c.message_key == raw_messages.c.message_key
                )
            ).all()
        )
        locations = connection.execute(sa.select(sa.func.count()).select_from(message_locations)).scalar_one()
        with_text = connection.execute(
            sa.select(sa.func.count()).select_from(cleaned_texts).where(cleaned_texts.c.text != "")
        ).scalar_one()
        indexed = connection.execute(sa.select(sa.func.count()).select_from(search_documents)).scalar_one()
    # Dovecot serves bare-LF messages with CRLF: what must be stored is what the server sends.
    # Two fixtures that differ only in line endings are then the same bytes at two UIDs: one
    # stored message with two locations.
    on_server = mail_user.served()
    assert len(on_server) == len(sent)
    expected = Counter({hashlib.sha256(raw).hexdigest(): 1 for raw in on_server})
    event_text = "".join(str(record.event_log_entry) for record in instance.get_records_for_run(result.run_id).records)
    output = capfd.readouterr()
    leaked = sum(mail_user.password in text for text in (event_text, output.out, output.err))
    record_reliability(
        "hostile and real mail through all assets",
        cases=len(sent),
        lost=sum((expected - stored).values()) + max(0, len(on_server) - locations),
        duplicated=sum((stored - expected).values()),
        leaked=leaked,
        crashed=0 if result.success else 1,
    )
    assert result.success
    assert stored == expected
    assert locations == len(on_server)
    assert rows == {"parsed_emails": len(expected), "cleaned_texts": len(expected)}
    with_subject = {hashlib.sha256(raw).hexdigest() for raw in on_server if SUBJECT.search(raw.split(b"\r\n\r\n")[0])}
    assert len(with_subject) >= len(hostile)
    assert [key for key in with_subject if not subjects.get(key)] == []  # headers kept, hostile or not
    assert indexed == with_text >= len(real) * 0.9  # every message with text is searchable
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed and e.severity.value == "ERROR"]
    assert not [e.check_name for e in failed if e.blocking]
    assert {str(e.partition) for e in result.get_asset_check_evaluations()} == {
        f"work|{HOSTILE_DAY}",
        f"work|{REAL_DAY}",
    }
    assert leaked == 0
    materialized = instance.get_materialized_partitions(dg.AssetKey("email_embeddings"))
    assert {f"work|{HOSTILE_DAY}", f"work|{REAL_DAY}"} <= {str(key) for key in materialized}
