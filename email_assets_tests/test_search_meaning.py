"""Search for meaning on real parts: Dovecot -> all four assets -> weighted fusion, `similar`,
`search --explain` and `show`, each checked against what the store holds."""

from __future__ import annotations

import json

import pytest

from email_assets import settings
from email_assets.cli import build_parser
from email_assets.defs.materialize import materialize_partitions
from email_assets.demo.sample_mailbox import generate_mailbox
from email_assets.message_view import resolve_message
from email_assets.ranking import RRF_K, DenseEvidence, WordEvidence, dense_weight, evidence_weight, fuse_evidence
from email_assets.search import (
    SNIPPET_CHARS,
    SearchContext,
    rank_messages,
    search_messages,
    similar_messages,
    snippet,
)
from email_assets.storage.lexical import MessageFilter
from email_assets_tests.conftest import add_account, message, run_cli, utc
from email_assets_tests.real_mail import fixture_files
from email_assets_tests.test_end_to_end import DAY

PHISHING = "Security incident: phishing attempt"
INVOICE = "Invoice for consulting services"
# The demo's paraphrase from issue 24: it shares only template words ("asked", "changes",
# "account") with the invoices and no word at all with the phishing reports.
PHISHING_PARAPHRASE = "someone pretended to be the salary company and asked people to change their account numbers"


def test_weak_word_matches_cannot_outrank_a_strong_dense_match() -> None:
    """The fusion itself: a message first on the word side by three common words only must
    not pass a message first on the dense side; one matching a rare word may."""
    rarest = 6.0  # the IDF of a word in one message of this imagined index
    common_only = evidence_weight([0.5, 0.6, 0.7], known_idf=1.8 + 6.0, rarest_idf=rarest)
    assert common_only < 0.05
    strong = DenseEvidence(rank=1, score=0.72, chunk_id="strong-chunk")
    weak = WordEvidence(rank=1, score=9.5, terms=("asked", "changes", "account"), weight=common_only)
    dense_second = DenseEvidence(rank=40, score=0.31, chunk_id="weak-chunk", weight=dense_weight(0.31, 0.72))
    fused = fuse_evidence([("meant", strong), ("worded", dense_second)], [("worded", weak)], [])
    assert [item.key for item in fused] == ["meant", "worded"]
    assert fused[0].score == 1 / (RRF_K + 1) and fused[1].parts["words"] == common_only / (RRF_K + 1)

    informed_weight = evidence_weight([6.0, 0.5], known_idf=1.8 + 6.0, rarest_idf=rarest)  # a word in one message
    assert informed_weight == 1.0
    informed = WordEvidence(rank=1, score=9.5, terms=("payroll", "asked"), weight=informed_weight)
    fused = fuse_evidence([("meant", strong), ("worded", dense_second)], [("worded", informed)], [])
    assert [item.key for item in fused] == ["worded", "meant"]  # real word evidence still wins
    # Plain RRF (every weight 1) is what let the common words win: the weights decide here.
    plain = fuse_evidence(
        [("meant", strong), ("worded", DenseEvidence(40, 0.31, "weak-chunk"))],
        [("worded", WordEvidence(1, 9.5, weak.terms, 1.0))],
        [],
    )
    assert plain[0].key == "worded"


def test_snippet_is_centred_on_the_matching_passage_and_cut_at_words() -> None:
    before = " ".join(f"lead{i}" for i in range(120))
    after = " ".join(f"tail{i}" for i in range(120))
    text = f"{before} the array refused to assemble after the reshape {after}"
    shown = snippet(text, "why will my array not assemble")
    assert shown.startswith("… ") and shown.endswith(" …") and "array refused to assemble" in shown
    assert len(shown) <= SNIPPET_CHARS + 4
    assert set(shown.strip("… ").split()) <= set(text.split())  # whole words only, none cut
    assert snippet("A short note.", "array") == "A short note."  # all of it: no ellipsis
    assert snippet(text, "nothing here matches").startswith("lead0 lead1")  # the chunk's opening


def test_search_help_explains_the_score_the_dates_and_the_ranking(capsys) -> None:
    with pytest.raises(SystemExit) as exit_status:
        build_parser().parse_args(["search", "--help"])
    assert exit_status.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the fused score the list is ordered by" in text and "--explain" in text
    assert "YYYY-MM-DD" in text and "both are inclusive" in text
    assert "reciprocal rank" in text and "rarer vocabulary" in text


def _store_demo_topics(mail_user, instance) -> None:
    """The demo mailbox's phishing and invoice messages (`make demo`'s generator) through the real assets."""
    sample = [m for m in generate_mailbox(today=DAY) if m.topic in {PHISHING, INVOICE}]
    assert sum(m.topic == PHISHING for m in sample) >= 20 and sum(m.topic == INVOICE for m in sample) >= 20
    mail_user.append([(m.raw, utc(DAY, 8)) for m in sample])
    assert add_account(mail_user, "demo", ["--folders", "INBOX"]) == 0
    assert materialize_partitions(instance, "demo", [DAY])[0].success


def test_demo_phishing_paraphrase_ranks_phishing_above_invoices(mail_user, instance, capsys) -> None:
    _store_demo_topics(mail_user, instance)
    hits = search_messages(PHISHING_PARAPHRASE, k=200)
    topics = ["phishing" if "phishing" in (hit["subject"] or "").lower() else "invoice" for hit in hits]
    phishing = topics.count("phishing")
    assert phishing >= 20 and topics.count("invoice") >= 20
    assert topics[:phishing] == ["phishing"] * phishing, topics  # every phishing report above every invoice

    # --explain: the figures printed are the ones the ranking summed and sorted by.
    context = SearchContext.from_settings()
    ranking = rank_messages(PHISHING_PARAPHRASE, MessageFilter(), context)
    explained = search_messages(PHISHING_PARAPHRASE, k=10, explain=True, context=context)
    assert [hit["message_key"] for hit in explained] == [item.key for item in ranking.fused[:10]]
    for position, (hit, item) in enumerate(zip(explained, ranking.fused, strict=False), start=1):
        why = hit["explain"]
        assert why["rank"] == hit["rank"] == position
        assert why["fused_score"] == hit["rank_score"] == round(item.score, 6)
        parts = [why[side]["part"] for side in ("dense", "words", "phrase") if why[side]]
        assert abs(sum(parts) - item.score) < 1e-5
        if why["dense"]:
            assert why["dense"]["part"] == round(why["dense"]["weight"] / (RRF_K + why["dense"]["rank"]), 6)
            assert why["dense"]["chunk_id"] == hit["chunk_id"]  # the chunk shown is the one that matched
        if why["words"]:
            assert why["words"]["part"] == round(why["words"]["weight"] / (RRF_K + why["words"]["rank"]), 6)
            assert set(why["words"]["terms"]) <= set(PHISHING_PARAPHRASE.split())
    scores = [hit["rank_score"] for hit in explained]
    assert scores == sorted(scores, reverse=True)

    capsys.readouterr()
    assert run_cli(["search", PHISHING_PARAPHRASE, "-k", "3", "--explain", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["explain"] for line in lines] == [hit["explain"] for hit in explained[:3]]
    assert run_cli(["search", PHISHING_PARAPHRASE, "-k", "3", "--explain"]) == 0
    out = capsys.readouterr().out
    first = explained[0]["explain"]
    assert out.startswith(f"#1  fused {first['fused_score']:.4f}  ")
    assert f"why #1: fused {first['fused_score']:.6f} = dense {first['dense']['part']:.6f}" in out
    assert f"dense: rank {first['dense']['rank']}, cosine {first['dense']['cosine']:.4f}" in out

    # No match: `no matches` on stderr, in text and in JSON alike.
    assert run_cli(["search", PHISHING_PARAPHRASE, "--from", "nobody@example.invalid", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "no matches\n"


def test_similar_on_real_mail(mail_user, instance, capsys) -> None:
    files = [path for path in fixture_files() if path.read_bytes()]
    mail_user.append([(path.read_bytes(), utc(DAY, 8)) for path in files])
    assert add_account(mail_user, "real") == 0
    assert materialize_partitions(instance, "real", [DAY])[0].success
    url = settings.database_url()
    # 00018 and 00021 are one linux-raid thread; 00003 and 00006 are other linux-raid threads.
    key = resolve_message(url, "<509c1c25-afd0-2a65-c5e9-cc0d980ebb3a@youngman.org.uk>")
    sibling = resolve_message(url, "KXX.44rdc.4OoMauRKn6c.1XtNMa@seznam.cz")
    others = {
        resolve_message(url, mid)
        for mid in (
            "eddcc94a-2cd4-6258-5614-88c4d1dbbca2@kernel.dk",
            "96d9e6d4-16e5-6bfe-fc5a-7d0dfbaeadf0@youngman.org.uk",
        )
    }
    apart = similar_messages(key, k=5)
    assert len(apart) == 5 and key not in {hit["message_key"] for hit in apart}
    assert sibling not in {hit["message_key"] for hit in apart}  # its own thread is left out
    assert apart[0]["message_key"] in others  # the nearest in meaning is another md/raid message
    assert [hit["score"] for hit in apart] == sorted((hit["score"] for hit in apart), reverse=True)
    together = similar_messages(key, k=5, same_thread=True)
    assert together[0]["message_key"] == sibling and key not in {hit["message_key"] for hit in together}

    capsys.readouterr()
    assert run_cli(["similar", key, "--json", "-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message_key"] for line in lines] == [hit["message_key"] for hit in apart[:3]]
    assert run_cli(["similar", "<509c1c25-afd0-2a65-c5e9-cc0d980ebb3a@youngman.org.uk>", "--same-thread"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("cosine ")
    assert run_cli(["similar", "<no-such-message@example.invalid>"]) == 2
    assert "no stored message has the key or Message-ID" in capsys.readouterr().err


HOSTILE_START = message(
    "Rebuild \x1b]0;pwned\x07 plan",
    "Start the rebuild on Monday.\x1b[2J\r\n\r\n-- \r\nAna\r\n",
    message_id="<rebuild-start@example.org>",
)
REPLY = message(
    "Re: Rebuild plan",
    "Monday works \u202eevil\u202c for me.\r\n\r\nOn Fri, Ana wrote:\r\n> Start the rebuild on Monday.\r\n",
    message_id="<rebuild-reply@example.org>",
    sender="Bruno <bruno@example.net>",
    extra_headers="In-Reply-To: <rebuild-start@example.org>\r\nReferences: <rebuild-start@example.org>\r\n",
)


def test_show_prints_cleaned_text_and_headers_escaped(mail_user, instance, capsys) -> None:
    mail_user.append([(REPLY, utc(DAY, 10)), (HOSTILE_START, utc(DAY, 9))])
    assert add_account(mail_user, "work", ["--folders", "INBOX"]) == 0
    assert materialize_partitions(instance, "work", [DAY])[0].success
    capsys.readouterr()
    assert run_cli(["show", "<rebuild-reply@example.org>"]) == 0
    out = capsys.readouterr().out
    assert "From: Bruno <bruno@example.net>\n" in out and "Subject: Re: Rebuild plan\n" in out
    assert "Monday works \\u202eevil\\u202c for me." in out and "\u202e" not in out
    assert "> Start the rebuild" not in out  # the cleaned text: the quote is cut

    assert run_cli(["show", "rebuild-reply@example.org", "--thread"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "Subject: Rebuild \\x1b]0;pwned\\x07 plan\n" in out
    assert out.index("Start the rebuild on Monday.\\x1b[2J") < out.index("Monday works")  # date order
    assert "-- \nAna" not in out  # the signature is cut

    assert run_cli(["show", "<rebuild-start@example.org>", "--thread", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [item["subject"] for item in shown] == ["Rebuild \x1b]0;pwned\x07 plan", "Re: Rebuild plan"]  # exact
    assert shown[0]["text"].startswith("Start the rebuild on Monday.\x1b[2J")
