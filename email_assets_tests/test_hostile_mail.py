"""Hostile mail, each case a few lines anyone could send: bounded work, headers kept, text kept, cuts recorded.

A case that hung before its fix runs in a child process under a generous time limit: a
hang guard, not a speed target (speed is measured in benchmarks/).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import pytest

from email_assets.mail.cleaning import clean_email
from email_assets.mail.parsing import parse_message
from email_assets_tests import hostile_cases
from email_assets_tests.real_mail import FIXTURES

INTERNALDATE = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
HANG_GUARD_SECONDS = 60


def _within_guard(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=HANG_GUARD_SECONDS
    )


def test_unclosed_quote_in_content_type_parameters_is_bounded() -> None:
    """CPython gh-136063: quadratic parameter parsing; 200 KB took 93 s to parse before the cap."""
    result = _within_guard(
        """
        import datetime as dt
        from email_assets.mail.parsing import parse_message
        from email_assets_tests.hostile_cases import unclosed_quote_parameters
        parsed = parse_message(unclosed_quote_parameters(), dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
        print(parsed.subject, "|", parsed.text_body.strip(), "|", [d for d in parsed.defects if "cut" in d])
        """
    )
    assert result.returncode == 0, result.stderr
    subject, body, defects = result.stdout.strip().split(" | ")
    assert (subject, body) == ("params", "the body survives")
    assert "Content-Type: header of 1000040 bytes cut to 2046 before parsing" in defects


def test_date_beyond_datetime_max_falls_back_to_internaldate() -> None:
    parsed = parse_message(hostile_cases.far_future_date(), INTERNALDATE)
    assert parsed.parse_error is None and parsed.subject == "far future" and parsed.text_body.strip() == "still here"
    assert parsed.date == INTERNALDATE and parsed.date_source == "internaldate"
    assert "Date: out of range, using INTERNALDATE" in parsed.defects


def test_from_with_a_thousand_nested_comments_keeps_the_row() -> None:
    parsed = parse_message(hostile_cases.nested_comments_from(1200), INTERNALDATE)
    assert parsed.parse_error is None and parsed.subject == "comments" and parsed.text_body.strip() == "body text"
    assert parsed.from_address == "ana@example.org"
    assert "From: address list not parseable; addresses taken from its text" in parsed.defects
    assert parsed.to_addresses == [{"name": "", "address": "bob@example.net"}]


@pytest.mark.parametrize("depth", [60, 1000])
def test_deep_multipart_nesting_keeps_headers_and_the_text_at_the_bottom(depth: int) -> None:
    raw = hostile_cases.deep_multipart(depth)
    parsed = parse_message(raw, INTERNALDATE)
    assert parsed.parse_error is None and parsed.subject == f"nested {depth}"
    assert parsed.text_body.strip() == "the only text, at the bottom"


def test_message_rfc822_nested_500_deep_keeps_the_innermost_text() -> None:
    parsed = parse_message(hostile_cases.nested_rfc822(500), INTERNALDATE)
    assert parsed.parse_error is None and parsed.subject == "level 499"
    assert "the forwarded words" in (parsed.text_body or "")


def test_nul_in_a_text_body_is_stripped_not_fatal() -> None:
    parsed = parse_message(hostile_cases.nul_in_text(), INTERNALDATE)
    assert parsed.as_row()["text_body"].strip() == "beforeafter, and the rest of the message"
    assert "part text/plain: NUL bytes removed from the text" in parsed.defects
    assert not any("binary data" in defect for defect in parsed.defects)


def test_large_inline_data_image_and_style_before_the_text_do_not_hide_it() -> None:
    cleaned = clean_email(None, hostile_cases.data_uri_and_style())
    assert cleaned.text == "The visible text."
    assert cleaned.removed["html_data_uris"] == 1 and cleaned.removed["html_invisible_chars"] > 240_000
    unclosed = clean_email(None, "<p>Shown.</p><script>" + "x" * 2_000_000)
    assert unclosed.text == "Shown." and unclosed.removed["html_invisible_chars"] > 2_000_000


def test_table_cells_and_rows_stay_apart() -> None:
    cells = "".join(f"<td>Widget{i}</td><td>{i}.00</td>" for i in range(3))
    receipt = f"<table><tr><th>Item</th><th>Price</th></tr><tr>{cells}</tr><tr><td>Total</td><td>3.00</td></tr></table>"
    assert clean_email(None, receipt).text.split("\n") == [
        "Item Price",
        "Widget0 0.00 Widget1 1.00 Widget2 2.00",
        "Total 3.00",
    ]
    text = clean_email(None, hostile_cases.wide_table(50, 40)).text
    assert "Cell49x39" in text and "Cell0x0 Cell0x1" in text  # not glued, so not mistaken for base64


def test_leftover_check_is_linear_on_unclosed_tags() -> None:
    """`<p` with no `>` made the check's regex quadratic: 4-9 s per 100 KB message before."""
    result = _within_guard(
        """
        from email_assets.defs.checks import leftover_markup
        from email_assets_tests.hostile_cases import unclosed_paragraph_tags
        print(leftover_markup(unclosed_paragraph_tags()), leftover_markup("fine <p>tag</p>"))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_a_stray_line_inside_the_headers_does_not_turn_the_rest_into_body() -> None:
    """mikel/mail's raw_email_incorrect_header.eml (found by the property tests): Subject was lost."""
    parsed = parse_message(
        (FIXTURES / "mikel-mail/plain_emails/raw_email_incorrect_header.eml").read_bytes(), INTERNALDATE
    )
    assert parsed.subject == "Stop adware/spyware once and for all."
    assert parsed.message_id == "4D6AA7EB.6490534@xxx.xxx" and parsed.date_source == "header"
    assert "header block: 1 line(s) that are not headers dropped before parsing" in parsed.defects
    headless = parse_message(b"Subject: hi\r\nthis line is the body, not a header\r\n", INTERNALDATE)
    assert headless.subject == "hi" and "this line is the body" in (headless.text_body or "")


def test_unclosed_tags_cannot_stall_html_conversion() -> None:
    """1.2 MB of `<p ` with no `>`: html.parser under html2text ran for over ten minutes."""
    result = _within_guard(
        """
        from email_assets.mail.cleaning import clean_email
        from email_assets_tests.hostile_cases import unclosed_paragraph_tags
        cleaned = clean_email(None, "<p>Before.</p>" + unclosed_paragraph_tags() + "<b>after</b>")
        print(cleaned.text.startswith("Before."), "<p <p" in cleaned.text, "truncated_chars" in cleaned.removed,
              cleaned.removed["html_unclosed_tags"])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "400000"]
    assert clean_email(None, "<p>a < b and c > d</p><p>x</p>").text == "a < b and c > d\n\nx"
