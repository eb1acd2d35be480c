"""Every real-world fixture goes through all four assets on Dovecot; none may crash a partition."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.storage.database import engine_for
from email_assets.storage.messages import MessageStore
from email_assets.storage.tables import chunks, cleaned_texts, parsed_emails, raw_messages
from email_assets_tests.conftest import add_account, utc
from email_assets_tests.real_mail import all_real_messages

DAY = dt.date(2026, 10, 5)


def test_every_real_message_reaches_every_asset(mail_user, instance) -> None:
    files = all_real_messages()
    # IMAP cannot store an empty message; the parser's handling of one is a unit test.
    payloads = {data for data in (path.read_bytes() for path in files) if data}
    appended = mail_user.append([(raw, utc(DAY, 8)) for raw in sorted(payloads)])
    assert appended == len(payloads)
    assert add_account(mail_user, "real") == 0
    result = materialize_partitions(instance, "real", [DAY])[0]
    assert result.success
    metadata = {
        event.event_specific_data.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in event.event_specific_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }
    assert metadata["raw_messages"]["fetched"] == len(payloads)
    # Fixtures that differ only in LF vs CRLF are served identically: one message, two UIDs.
    served = mail_user.served()
    assert len(served) == len(payloads)
    for asset in ("raw_messages", "parsed_emails", "cleaned_text", "email_embeddings"):
        assert metadata[asset]["messages"] == len(set(served)), asset
        assert metadata[asset]["failures"] == 0, asset
    with engine_for(settings.database_url()).connect() as connection:
        keys = connection.execute(sa.select(raw_messages.c.message_key)).scalars().all()
        stored = MessageStore(settings.database_url()).raw_bytes(keys)
        assert sorted(stored.values()) == sorted(set(served))  # exactly as served, each once
        defects = connection.execute(sa.select(sa.func.count()).where(parsed_emails.c.defects != "[]")).scalar_one()
        assert defects > 10  # the error fixtures are recorded as defects, not dropped
        texts = connection.execute(sa.select(sa.func.count()).where(cleaned_texts.c.text != "")).scalar_one()
        assert texts >= len(set(served)) * 0.85  # the rest really have no text: attachments only, no body
        assert connection.execute(sa.select(sa.func.count()).select_from(chunks)).scalar_one() >= texts
    checks = {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}
    assert checks["raw_bytes_intact"] and checks["all_messages_fetched"]
    assert checks["every_raw_message_parsed"] and checks["vectors_match_chunks"]
    assert checks["no_html_or_base64_left"] and checks["every_message_embedded"]
