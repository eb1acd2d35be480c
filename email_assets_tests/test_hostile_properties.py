"""Property-based: real messages mutated (headers, boundaries, charsets, nesting, truncation) and
generated hostile MIME never raise, keep their headers and stay bounded through parse, clean, chunk.

Hypothesis is seeded (derandomize) so CI sees the same examples every run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_assets.mail.chunking import chunk_text, context_line, regex_token_offsets
from email_assets.mail.cleaning import MAX_TEXT_CHARS, clean_email
from email_assets.mail.parsing import parse_message
from email_assets_tests.conftest import record_reliability
from email_assets_tests.real_mail import fixture_files

INTERNALDATE = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
REAL = [path.read_bytes() for path in fixture_files()]
PROPERTIES = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _split(raw: bytes) -> tuple[bytes, bytes]:
    match = _HEADER_END.search(raw)
    return (raw[: match.start()], raw[match.end() :]) if match else (raw, b"")


@st.composite
def mutated_real_mail(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(REAL))
    head, body = _split(raw)
    mutation = draw(st.sampled_from(["truncate", "charset", "boundary", "garbage", "header", "nest", "none"]))
    if mutation == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif mutation == "charset":
        name = draw(st.sampled_from([b"x-unknown", b"utf-16", b"iso-2022-jp", b'"utf-8', b"", b"\xff\xfe"]))
        head = re.sub(rb"(?i)charset=\"?[^\";\r\n]*\"?", lambda _match: b"charset=" + name, head)
    elif mutation == "boundary":
        boundary = b'boundary="' + draw(st.binary(max_size=80)) + b'"'
        # A function, not a template: drawn bytes such as b"\\1" must not read as a group reference.
        head = re.sub(rb'(?i)boundary="?[^";\r\n]*"?', lambda _match: boundary, head)
    elif mutation == "garbage":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=5000)) + body[at:]
    elif mutation == "header":
        name = draw(st.sampled_from([b"Subject", b"From", b"Date", b"Content-Type", b"To", b"References"]))
        value = draw(st.sampled_from([b"(" * 3000, b'"' + b";x" * 20000, b"=?utf-8?b?" + b"A" * 5000, b"\x00\xff"]))
        head = head + b"\r\n" + name + b": " + value
    elif mutation == "nest":
        depth = draw(st.integers(1, 300))
        wrapper = b"".join(
            b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i) for i in range(depth)
        )
        closing = b"".join(b"\r\n--n%d--" % i for i in reversed(range(depth)))
        body = wrapper + head + b"\r\n\r\n" + body + closing
        head = b"Subject: nested wrapper\r\nMIME-Version: 1.0"
    return head + b"\r\n\r\n" + body


@st.composite
def generated_hostile_mime(draw: st.DrawFn) -> bytes:
    subject = draw(st.text(max_size=2000))
    parts = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["text/plain", "text/html", "application/octet-stream", "message/rfc822", "multipart/alternative"]
                ),
                st.sampled_from(["7bit", "base64", "quoted-printable", "x-garbage"]),
                st.text(max_size=3000),
            ),
            max_size=6,
        )
    )
    lines = [
        f"Subject: {subject.replace(chr(10), ' ').replace(chr(13), ' ')}",
        'Content-Type: multipart/mixed; boundary="h"',
        "",
    ]
    for content_type, encoding, text in parts:
        lines += [
            "--h",
            f"Content-Type: {content_type}; charset=utf-8",
            f"Content-Transfer-Encoding: {encoding}",
            "",
            text,
        ]
    if draw(st.booleans()):
        lines.append("--h--")
    return "\r\n".join(lines).encode("utf-8", "surrogatepass")


_tried: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_examples() -> Iterator[None]:
    """Examples tried, for `make reliability`: an escaped exception fails the test itself."""
    yield
    record_reliability(
        "hostile MIME, generated and mutated (parse, clean, chunk)",
        cases=sum(_tried.values()),
        lost=None,  # no store here: a lost header or an escaped exception fails the example
        duplicated=None,
        leaked=None,
        crashed=_tried["failed"],  # examples that failed (hypothesis retries a failure while shrinking)
    )


def _assert_bounded(raw: bytes) -> None:
    _tried["examples"] += 1
    try:
        _check_bounded(raw)
    except BaseException:
        _tried["failed"] += 1
        raise


def _check_bounded(raw: bytes) -> None:
    parsed = parse_message(raw, INTERNALDATE)
    assert parsed.parse_error is None, parsed.parse_error  # no exception escaped to the catch-all
    row = parsed.as_row()
    head, _ = _split(raw)
    if re.search(rb"(?im)^subject:[ \t]*\S", head) and not re.search(rb"(?i)^subject:.*=\?", head, re.M):
        assert row["subject"], "a Subject header was lost"
    cleaned = clean_email(row["text_body"], row["html_body"])
    assert len(cleaned.text) <= MAX_TEXT_CHARS
    context = context_line(row["subject"], row["from_address"], None)
    assert len(context) <= 400
    chunks = chunk_text(cleaned.text, regex_token_offsets, 200, context)
    body_tokens = len(regex_token_offsets(cleaned.text))
    assert len(chunks) <= body_tokens // 16 + 1  # chunks grow with the text, never with the headers


@PROPERTIES
@given(mutated_real_mail())
def test_mutated_real_mail_is_parsed_cleaned_and_chunked_within_bounds(raw: bytes) -> None:
    _assert_bounded(raw)


@PROPERTIES
@given(generated_hostile_mime())
def test_generated_hostile_mime_is_parsed_cleaned_and_chunked_within_bounds(raw: bytes) -> None:
    _assert_bounded(raw)
