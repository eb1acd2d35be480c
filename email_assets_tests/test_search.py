"""Hybrid search on real parts: Dovecot -> all four assets -> FTS5 + Chroma -> fused, one hit per message."""

from __future__ import annotations

import json

import sqlalchemy as sa

from email_assets import settings
from email_assets.defs.materialize import materialize_partitions
from email_assets.search import group_by_thread, search_chunks, search_messages
from email_assets.storage.database import engine_for
from email_assets.storage.lexical import LexicalIndex, MessageFilter
from email_assets.storage.tables import chunks, search_documents
from email_assets_tests.conftest import add_account, message, run_cli, utc
from email_assets_tests.test_end_to_end import DAY

KERNEL_LOG = message(
    "Array will not assemble",
    "After the reshape the array refused to start. The kernel said:\r\n\r\n"
    "md/raid:md127: not clean -- starting background reconstruction\r\n\r\n"
    "The member that dropped out is serial WCC4N7KJ2X9P. Any idea what to try next?",
    sender="Jaromir <jaromir@example.cz>",
)
_PROCEDURE = [
    "Replacing a failed disk starts with marking it failed with mdadm --fail and removing it.",
    "Then power down if the controller has no hot swap, and swap the drive in the same bay.",
    "Partition the new drive exactly like its siblings, sgdisk can copy the table.",
    "Add it back with mdadm --add and watch /proc/mdstat while the rebuild runs.",
    "A rebuild of a four terabyte member takes most of a day on spinning disks.",
    "Keep the old drive until the rebuild is complete and a scrub has passed.",
]
PROCEDURE = message(
    "Disk replacement procedure",
    "\r\n\r\n".join(f"{sentence} " + "This paragraph keeps going with more detail. " * 12 for sentence in _PROCEDURE),
    message_id="<procedure@example.org>",
)
FOLLOW_UP = message(
    "Re: Disk replacement procedure",
    "Does the same rebuild procedure apply to a RAID10 with a failed disk?",
    message_id="<follow-up@example.org>",
    sender="Bruno <bruno@example.net>",
    extra_headers="In-Reply-To: <procedure@example.org>\r\nReferences: <procedure@example.org>\r\n",
)
INVOICE = (
    b"From: Billing <billing@example.com>\r\nTo: demo@example.test\r\nSubject: Invoice 2026-11\r\n"
    b"Message-ID: <invoice@example.com>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    b"Your invoice for the rebuild consulting is attached.\r\n--b\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="invoice.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    b"JVBERi0xLjQK\r\n--b--\r\n"
)
HUGE_SUBJECT = message("S" * 1_000_000, "A short body about the rebuild.", message_id="<huge@example.org>")


def _materialize(mail_user, instance) -> None:
    mail_user.append(
        [(KERNEL_LOG, utc(DAY, 8)), (PROCEDURE, utc(DAY, 9)), (FOLLOW_UP, utc(DAY, 10)), (HUGE_SUBJECT, utc(DAY, 12))]
    )
    mail_user.append([(INVOICE, utc(DAY, 11))], folder="Archive")
    assert add_account(mail_user, "work", ["--folders", "INBOX,Archive"]) == 0
    assert materialize_partitions(instance, "work", [DAY])[0].success


def test_hybrid_search_one_hit_per_message_threads_and_filters(mail_user, instance, capsys) -> None:
    _materialize(mail_user, instance)
    with engine_for(settings.database_url()).connect() as connection:
        procedure_chunks = connection.execute(
            sa.select(sa.func.count()).select_from(chunks).where(chunks.c.text.contains("Disk replacement procedure"))
        ).scalar_one()
    assert procedure_chunks >= 3  # a long message: several chunks, each opening with its context line

    # Words win where meaning has nothing to hold on to: a drive's serial number.
    [first, *_] = search_messages("which disk was WCC4N7KJ2X9P", k=3)
    assert first["subject"] == "Array will not assemble"

    # One hit per message, though the procedure has many chunks; --chunks lists them.
    results = search_messages("how do I replace a failed disk and rebuild the array", k=5)
    keys = [result["message_key"] for result in results]
    assert len(keys) == len(set(keys)) == 5
    assert results[0]["subject"] in {"Disk replacement procedure", "Re: Disk replacement procedure"}
    raw_chunks = search_chunks("how do I replace a failed disk and rebuild the array", k=5)
    assert [hit["subject"] for hit in raw_chunks].count("Disk replacement procedure") >= 2
    assert all(not hit["text"].startswith("Disk replacement procedure |") for hit in raw_chunks)  # body only

    # The thread is grouped under its best message.
    grouped = group_by_thread(results)
    thread = next(group for group in grouped if group[0]["thread_id"] == "procedure@example.org")
    assert {hit["subject"] for hit in thread} == {"Disk replacement procedure", "Re: Disk replacement procedure"}

    # Filters: folder and attachment come from the tables, sender from both sides.
    archive = search_messages("rebuild", k=5, where=MessageFilter(folder="Archive"))
    assert [hit["subject"] for hit in archive] == ["Invoice 2026-11"] and archive[0]["folders"] == ["Archive"]
    attached = search_messages("rebuild", k=5, where=MessageFilter(has_attachment=True))
    assert [hit["subject"] for hit in attached] == ["Invoice 2026-11"] and attached[0]["attachments"] == 1
    bruno = search_messages("rebuild", k=5, where=MessageFilter(from_address="BRUNO@example.net"))
    assert [hit["subject"] for hit in bruno] == ["Re: Disk replacement procedure"]

    # The CLI: one JSON line per message, grouped; --chunks one per chunk.
    capsys.readouterr()
    assert run_cli(["search", "replace a failed disk", "--json", "-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and len({line["message_key"] for line in lines}) == 3
    assert {"chunk_id", "score", "account", "message_id", "subject", "from", "date", "text"} <= set(lines[0])
    assert run_cli(["search", "replace a failed disk", "--chunks", "--json", "-k", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert run_cli(["search", "invoice", "--folder", "Archive", "--has-attachment"]) == 0
    assert "Invoice 2026-11" in capsys.readouterr().out


def test_a_huge_subject_cannot_multiply_chunks_or_metadata(mail_user, instance) -> None:
    _materialize(mail_user, instance)
    with engine_for(settings.database_url()).connect() as connection:
        huge = connection.execute(sa.select(chunks).where(chunks.c.text.contains("A short body"))).mappings().all()
        documents = connection.execute(sa.select(search_documents.c.subject)).scalars().all()
    assert len(huge) == 1 and len(huge[0]["text"]) < 300
    assert max(len(subject) for subject in documents) <= 300
    [hit] = [hit for hit in search_chunks("a short body about the rebuild", k=5) if "A short body" in hit["text"]]
    assert len(hit["subject"]) <= 300


def test_lexical_index_is_exact_under_re_runs(mail_user, instance) -> None:
    _materialize(mail_user, instance)
    index = LexicalIndex(settings.database_url())
    before = index.count()
    assert before == 5
    assert materialize_partitions(instance, "work", [DAY])[0].success
    assert index.count() == before  # nothing indexed twice
    found = index.search("sgdisk", 10, MessageFilter())
    assert len(found) == 1
    assert index.search("", 10, MessageFilter()) == [] and index.search('"*) OR NEAR(', 10, MessageFilter()) == []


def test_vector_search_is_exact_at_mailbox_sizes(tmp_path) -> None:
    """Random 384-d vectors are where HNSW loses most; up to EXACT_SEARCH_MAX the ranking is exact."""
    import numpy as np

    from email_assets.storage.vectors import VectorStore

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(3000, 384)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"chunk{i}" for i in range(len(matrix))]
    store = VectorStore(str(tmp_path / "chroma"), "local:test")
    metadatas = [{"account": "a" if i % 2 else "b", "message_key": f"m{i}"} for i in range(len(ids))]
    store.upsert(ids, matrix.tolist(), [f"text {i}" for i in range(len(ids))], metadatas)
    for _ in range(5):
        query = rng.normal(size=384).astype(np.float32)
        query /= np.linalg.norm(query)
        hits = store.query(query.tolist(), 20, {"account": "a"})
        expected = [i for i in np.argsort(-(matrix @ query)) if i % 2][:20]
        assert [hit["chunk_id"] for hit in hits] == [ids[i] for i in expected]
        assert hits[0]["text"] == f"text {expected[0]}" and hits[0]["metadata"]["message_key"] == f"m{expected[0]}"
        assert abs((1 - hits[0]["distance"]) - float(matrix[expected[0]] @ query)) < 1e-5
