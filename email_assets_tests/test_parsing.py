"""parsed_emails' core on real fixtures: decoded fields asserted, not just 'no exception'."""

from __future__ import annotations

import datetime as dt

import pytest

from email_assets.mail.parsing import decode_bytes, normalize_message_id, parse_message
from email_assets_tests.real_mail import CPYTHON_EMAIL_DATA, FIXTURES, all_real_messages

INTERNALDATE = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def parse(path) -> object:
    return parse_message(path.read_bytes(), INTERNALDATE)


@pytest.mark.parametrize(
    ("fixture", "subject", "sender", "text_start"),
    [
        ("mikel-mail/multi_charset/japanese.eml", "まみむめも", "raasdnil@gmail.com", "かきくえこ"),
        ("mikel-mail/multi_charset/japanese_iso_2022.eml", "まみむめも", "raasdnil@gmail.com", "すみません。"),
        ("mikel-mail/multi_charset/japanese_shift_jis.eml", "test", "xxxxxxx@docomo.ne.jp", "あいうえお"),
        ("mikel-mail/multi_charset/ks_c_5601-1987.eml", "test", "from@example.com", "스티해"),
        (
            "mikel-mail/error_emails/invalid_subject_characters.eml",
            "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro",
            "info@formacaofrenetik.info",
            "TEST",
        ),
        (
            "mikel-mail/error_emails/trademark_character_in_subject.eml",
            "GA.comô has a lead for you",
            "j@yahoo-example.com",
            "Body Text",
        ),
    ],
)
def test_decoded_subjects_senders_and_bodies(fixture: str, subject: str, sender: str, text_start: str) -> None:
    parsed = parse(FIXTURES / fixture)
    assert parsed.parse_error is None
    assert parsed.subject == subject
    assert parsed.from_address == sender
    assert parsed.text_body.lstrip().startswith(text_start)


def test_unparseable_date_falls_back_to_internaldate_and_says_so() -> None:
    parsed = parse(FIXTURES / "mikel-mail/error_emails/bad_date_header.eml")
    assert parsed.date == INTERNALDATE and parsed.date_source == "internaldate"
    assert "Date: unparseable, using INTERNALDATE" in parsed.defects


def test_boundary_less_multipart_keeps_its_text_and_records_the_defect() -> None:
    parsed = parse(FIXTURES / "mikel-mail/error_emails/content_transfer_encoding_text-html.eml")
    assert parsed.html_body or parsed.text_body
    raw = b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nplain words with no boundary\r\n"
    broken = parse_message(raw, INTERNALDATE)
    assert broken.text_body.strip() == "plain words with no boundary"
    assert any("boundary" in defect or "Boundary" in defect for defect in broken.defects)


def test_forward_only_message_takes_the_attached_message_text() -> None:
    parsed = parse(CPYTHON_EMAIL_DATA / "msg_46.txt")
    assert any(a.content_type == "message/rfc822" for a in parsed.attachments)
    assert parsed.text_body and parsed.text_body.startswith("[Forwarded message]")


def test_rfc2231_attachment_filename() -> None:
    raw = (
        b"Subject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    )
    parsed = parse_message(raw, INTERNALDATE)
    assert parsed.text_body.strip() == "see attached"
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.size, attachment.inline) == (
        "Rechnung März.pdf",
        "application/pdf",
        9,
        False,
    )


def test_threading_headers() -> None:
    raw = (
        b"Message-ID: < Abc@Example.COM >\r\nIn-Reply-To: <parent@x>\r\n"
        b"References: <root@x> <parent@x>\r\nSubject: Re: t\r\n\r\nbody\r\n"
    )
    parsed = parse_message(raw, INTERNALDATE)
    assert parsed.message_id == "Abc@Example.COM"
    assert parsed.in_reply_to == "parent@x"
    assert parsed.references == ["root@x", "parent@x"]
    assert parsed.thread_id == "root@x"


def test_mislabelled_charsets() -> None:
    defects: list[str] = []
    assert decode_bytes("café".encode(), "us-ascii", defects, "body") == "café"
    assert defects == ["body: declared us-ascii but is UTF-8"]
    assert decode_bytes("naïve – ok".encode("cp1252"), "iso-8859-1", [], "body") == "naïve – ok"
    unknown: list[str] = []
    assert decode_bytes("héllo".encode(), "x-no-such-charset", unknown, "body") == "héllo"
    assert unknown == ["body: unknown charset 'x-no-such-charset'"]


def test_empty_and_garbage_input_is_a_row_not_an_exception() -> None:
    empty = parse_message(b"", INTERNALDATE)
    assert empty.parse_error is None and empty.subject is None and empty.date == INTERNALDATE
    garbage = parse_message(bytes(range(256)) * 50, INTERNALDATE)
    assert garbage.date == INTERNALDATE and garbage.parse_error is None
    assert garbage.text_body is None and any("binary data" in defect for defect in garbage.defects)
    eight_bit = parse_message(b"Subject: \xff\xfe caf\xe9\r\n\r\nna\xefve \xff body", INTERNALDATE).as_row()
    assert eight_bit["subject"] == "ÿþ café" and eight_bit["text_body"] == "naïve ÿ body"


def test_every_real_fixture_parses_to_storable_row() -> None:
    attachments = 0
    for path in all_real_messages():
        parsed = parse(path)
        row = parsed.as_row()
        assert row["parse_error"] is None, path
        # plain JSON-able dicts, field for field
        assert row["attachments"] == [vars(attachment) for attachment in parsed.attachments], path
        attachments += len(row["attachments"])
        for key in ("subject", "text_body", "html_body", "from_name"):
            if row[key] is not None:
                row[key].encode("utf-8")
                assert "\x00" not in row[key]
    assert attachments > 10  # the fixtures do carry attachments


def test_normalize_message_id() -> None:
    assert normalize_message_id("<a@b>") == "a@b"
    assert normalize_message_id("  a@b ") == "a@b"
    assert normalize_message_id("") is None


def test_bounce_keeps_the_report_text_and_the_returned_message() -> None:
    parsed = parse(FIXTURES / "mikel-mail/multipart_report_emails/multi_address_bounce1.eml")
    assert parsed.subject == "Undelivered Mail Returned to Sender"
    assert parsed.text_body.startswith("This is the mail system at host")
    assert "message/rfc822" in [a.content_type for a in parsed.attachments]


def test_text_part_with_nul_bytes_keeps_its_text() -> None:
    """A declared text/plain part that is valid UTF-8 apart from its NULs (one byte in
    eight here) is text with a defect, not binary: its words stay searchable."""
    words = "Überweisung der Rechnung 4711 bis Freitag, grüße aus Köln. ".encode() * 20
    padded = b"".join(words[start : start + 7] + b"\x00" for start in range(0, len(words), 7))
    raw = b"Subject: nul\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    parsed = parse_message(raw + padded, INTERNALDATE)
    row = parsed.as_row()
    assert row["text_body"].startswith("Überweisung der Rechnung 4711 bis Freitag, grüße aus Köln.")
    assert row["text_body"].strip() == words.decode().strip() and "\x00" not in row["text_body"]
    assert "part text/plain: NUL bytes removed from the text" in parsed.defects
    assert not parsed.attachments and not any("binary data" in defect for defect in parsed.defects)
    # NULs around bytes that are not UTF-8 are still binary
    binary = parse_message(raw + bytes([0, 0xFF, 0xFE, 0x41]) * 500, INTERNALDATE)
    assert binary.text_body is None and any("binary data, not text" in defect for defect in binary.defects)


def test_outlook_msg_file_is_a_defect_not_garbage_text() -> None:
    parsed = parse(FIXTURES / "mail-parser/mail_outlook_1")
    assert parsed.text_body is None and parsed.html_body is None
    assert any("binary data, not text" in defect for defect in parsed.defects)
    assert parsed.attachments[0].content_type == "application/octet-stream"


def test_utf16_body_is_text() -> None:
    raw = b"Subject: u16\r\nContent-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    raw += __import__("base64").b64encode("Grüße aus Köln".encode("utf-16"))
    assert parse_message(raw, INTERNALDATE).text_body == "Grüße aus Köln"


def test_deep_nesting_keeps_its_text_and_huge_parts_are_whole() -> None:
    depth = 80
    head = "".join(f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n' for i in range(depth))
    tail = "".join(f"--b{i}--\r\n" for i in reversed(range(depth + 1)))
    raw = (
        f'Subject: deep\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n{head}'
        f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n{tail}"
    ).encode()
    parsed = parse_message(raw, INTERNALDATE)
    assert parsed.parse_error is None and parsed.subject == "deep"
    assert parsed.text_body.strip() == "innermost"  # no depth cap drops the only text
    huge = b"Subject: huge\r\nContent-Type: text/plain\r\n\r\n" + b"word " * 4_000_000  # 20 MB
    assert len(parse_message(huge, INTERNALDATE).text_body) == 20_000_000


def test_rfc6532_raw_utf8_headers_are_not_defects() -> None:
    parsed = parse(FIXTURES / "mikel-mail/rfc6532/utf8_headers.eml")
    assert (parsed.subject, parsed.from_name, parsed.from_address) == (
        "Säying Hello",
        "Jöhn Doe",
        "jdöe@mächine.example",
    )
    assert parsed.to_addresses == [{"name": "Märy Smith", "address": "märy@exämple.net"}]
    assert parsed.defects == []
