"""cleaned_text's core: written examples of each reply and signature style, exact outputs."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from email_assets.mail.cleaning import clean_email
from email_assets.mail.parsing import parse_message
from email_assets_tests.real_mail import FIXTURES

NEW = "Yes, Thursday works for me."


@pytest.mark.parametrize(
    "reply_header",
    [
        "On Tue, 17 Nov 2026 at 10:02, Bob Smith <bob@example.org> wrote:",  # Gmail
        "On 17 Nov 2026, at 10:02, Bob Smith <bob@example.org> wrote:",  # Apple Mail
        "On 11/17/26 10:02 AM, Bob Smith wrote:",  # Thunderbird
        "Le mar. 17 nov. 2026 à 10:02, Bob Smith <bob@example.org> a écrit :",
        "Am Di., 17. Nov. 2026 um 10:02 Uhr schrieb Bob Smith <bob@example.org>:",
        "El mar, 17 nov 2026 a las 10:02, Bob Smith (<bob@example.org>) escribió:",
        "-----Original Message-----",
    ],
)
def test_reply_headers_of_common_clients(reply_header: str) -> None:
    body = f"{NEW}\n\n{reply_header}\n> Can we meet Thursday?\n> Bob\n"
    cleaned = clean_email(body, None)
    assert cleaned.text == NEW
    assert cleaned.quoted_text.startswith(reply_header)
    assert "Can we meet Thursday?" in cleaned.quoted_text


@pytest.mark.parametrize(
    "block",
    [
        "From: Bob Smith <bob@example.org>\nSent: Tuesday, November 17, 2026 10:02 AM\nTo: Ana\nSubject: RE: meet",
        "________________________________\nFrom: Bob Smith <bob@example.org>\nSent: Tuesday, 17 November 2026 10:02\n",
        "De : Bob Smith <bob@example.org>\nEnvoyé : mardi 17 novembre 2026 10:02\nÀ : Ana",
        "Von: Bob Smith <bob@example.org>\nGesendet: Dienstag, 17. November 2026 10:02\nAn: Ana",
        "De: Bob Smith <bob@example.org>\nEnviado: martes, 17 de noviembre de 2026 10:02\nPara: Ana",
    ],
)
def test_outlook_reply_blocks(block: str) -> None:
    cleaned = clean_email(f"{NEW}\n\n{block}\n\nCan we meet Thursday?\n", None)
    assert cleaned.text == NEW
    assert "Can we meet Thursday?" in cleaned.quoted_text


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nAna Souza\nPlatform team",
        "Sent from my iPhone",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado desde mi Android",
    ],
)
def test_signatures(signature: str) -> None:
    cleaned = clean_email(f"{NEW}\n\n{signature}\n", None)
    assert cleaned.text == NEW
    assert cleaned.signature_text == signature


def test_interleaved_quotes_are_removed_and_kept_aside() -> None:
    cleaned = clean_email("> question one?\nanswer one\n> question two?\nanswer two\n", None)
    assert cleaned.text == "answer one\n\nanswer two"
    assert cleaned.quoted_text == "> question one?\n> question two?"


def test_forwarded_content_is_kept_and_marked() -> None:
    body = (
        "FYI\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.org>\n"
        "Subject: outage\n\nThe disk filled up.\n"
    )
    cleaned = clean_email(body, None)
    assert (
        cleaned.text
        == "FYI\n\n[Forwarded message]\nFrom: Bob <bob@example.org>\nSubject: outage\n\nThe disk filled up."
    )
    assert cleaned.quoted_text == ""


def test_html_becomes_text_without_style_script_or_tracking_pixels() -> None:
    html = (
        "<html><head><style>.x{color:red}</style><script>track()</script></head><body>"
        "<p>Hello&nbsp;<b>team</b>,</p><p>See <a href='https://t.example/?id=123'>the plan</a>.</p>"
        "<img src='https://t.example/pixel.gif' width=1 height=1></body></html>"
    )
    cleaned = clean_email(None, html)
    assert cleaned.source == "html"
    assert cleaned.text == "Hello team,\n\nSee the plan."


def test_plain_text_preferred_when_it_is_real() -> None:
    assert clean_email("plain version", "<p>html version</p>").text == "plain version"
    assert clean_email("   \n", "<p>html version</p>").text == "html version"
    assert clean_email(None, None).source == "none"


def test_base64_runs_removed() -> None:
    blob = base64.b64encode(bytes(range(256)) * 4).decode()
    lines = "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
    cleaned = clean_email(f"Report below.\n{lines}\nThanks", None)
    assert cleaned.text == "Report below.\n\nThanks" or cleaned.text == "Report below.\nThanks"
    assert cleaned.removed["base64_runs"] >= 1


def test_whitespace_normalized() -> None:
    assert clean_email("a   b  \n\n\n\n\nc\t\t d", None).text == "a b\n\nc d"


def test_huge_bodies_are_truncated_and_say_so() -> None:
    cleaned = clean_email("word " * 100_000, None)
    assert len(cleaned.text) <= 100_000
    assert cleaned.removed["truncated_chars"] == 400_000


OUTLOOK_HTML = (
    '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta name=Generator content="Microsoft Word 15">'
    "<!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings></xml><![endif]-->"
    "<style><!-- p.MsoNormal {margin:0cm;font-family:Calibri} --></style></head><body lang=EN-GB>"
    "<div class=WordSection1><p class=MsoNormal>Hi Ana,<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p>"
    "<p class=MsoNormal>The contract is signed.<o:p></o:p></p>"
    "<div style='border:none;border-top:solid #E1E1E1 1.0pt'><p class=MsoNormal><b>From:</b> Bob Smith "
    "&lt;bob@example.org&gt;<br><b>Sent:</b> Tuesday, November 17, 2026 10:02 AM<br><b>To:</b> Ana<br>"
    "<b>Subject:</b> contract<o:p></o:p></p></div><p class=MsoNormal>Is the contract signed?<o:p></o:p></p>"
    "</div></body></html>"
)


def test_outlook_desktop_html_without_office_markup_or_the_quoted_thread() -> None:
    cleaned = clean_email(None, OUTLOOK_HTML)
    assert cleaned.text == "Hi Ana,\n\nThe contract is signed."
    assert cleaned.quoted_text.startswith("From: Bob Smith <bob@example.org>")
    assert "Is the contract signed?" in cleaned.quoted_text


@pytest.mark.parametrize(
    "attribution",
    [
        "On Tue, 17 Nov 2026 at 10:02, Bob Smith <bob@example.org> wrote:",
        "On Mon, Jan 3, 2022 at 7:53 PM Bob Smith\n<bob@example.org> wrote:",  # wrapped by the client
        "Le mar. 17 nov. 2026 à 10:02, Bob Smith <bob@example.org> a écrit :",
        "Am Di., 17. Nov. 2026 um 10:02 Uhr schrieb Bob Smith <bob@example.org>:",
    ],
)
def test_bottom_posted_reply_keeps_the_text_below_the_quote(attribution: str) -> None:
    body = f"{attribution}\n> Can we meet Thursday?\n> Bob\n\n{NEW}\nI will book the room.\n"
    cleaned = clean_email(body, None)
    assert cleaned.text == f"{NEW}\nI will book the room."
    assert cleaned.quoted_text == f"{attribution}\n> Can we meet Thursday?\n> Bob"


def test_inline_reply_keeps_every_answer_in_order() -> None:
    body = (
        "Hi Bob,\n\nOn 11/17/26 10:02 AM, Bob Smith wrote:\n> Is the array degraded?\n\n"
        "Yes, one disk dropped out.\n\n> Did you replace it?\n>> (asked twice)\n\n"
        "Not yet, the new one arrives Friday.\n\n-- \nAna\n"
    )
    cleaned = clean_email(body, None)
    assert cleaned.text == "Hi Bob,\n\nYes, one disk dropped out.\n\nNot yet, the new one arrives Friday."
    assert "> Is the array degraded?" in cleaned.quoted_text and ">> (asked twice)" in cleaned.quoted_text
    assert cleaned.signature_text == "-- \nAna"


def test_text_after_an_attribution_whose_quote_was_trimmed_is_kept() -> None:
    """linux-raid 2024-08 (01876 in the archive): the quote deleted, the update written below."""
    body = "On 08/08/2024 18:12, John Garry wrote:\n\nUpdate for anyone interested:\n\nxfsprogs 5.3.0 is fine.\n"
    cleaned = clean_email(body, None)
    assert cleaned.text == "Update for anyone interested:\n\nxfsprogs 5.3.0 is fine."
    assert cleaned.quoted_text == "On 08/08/2024 18:12, John Garry wrote:"


def _clean_fixture(name: str) -> object:
    raw = (FIXTURES / "linux-raid" / name).read_bytes()
    parsed = parse_message(raw, dt.datetime(2022, 1, 10, tzinfo=dt.UTC))
    return clean_email(parsed.text_body, parsed.html_body)


def test_real_bottom_posted_reply() -> None:
    """Jens Axboe on linux-raid, 2022-01-03: a quote of Linus Torvalds, the answer below it."""
    cleaned = _clean_fixture("00003.eml")
    assert cleaned.text == "Thanks for adding me in, Song took care of it now. Will get sent out\nshortly."
    assert cleaned.quoted_text.startswith("On 1/3/22 11:53 AM, Linus Torvalds wrote:\n> [ Jens wasn't cc'd")
    assert cleaned.signature_text == "-- \nJens Axboe"


def test_real_top_posted_reply() -> None:
    cleaned = _clean_fixture("00006.eml")
    assert cleaned.text.startswith("Bear in mind raid superblock v0.9 is deprecated")
    assert cleaned.text.endswith("Cheers,\nWol")
    assert "Bruce Dubbs" not in cleaned.text and "mdadm -CR" in cleaned.quoted_text


@pytest.mark.parametrize(
    ("name", "answers"),
    [
        (
            "00018.eml",  # attribution first, then answers between the quoted paragraphs
            [
                "Okay, so read performance from the array is worse than you would expect",
                "The drives shouldn't need to reorder the operations",
                "Actually, you might find (counter-intuitive though it sounds) REDUCING",
                "What make/model are your drives? What does smartdrv say about them?",
                "The thing that worries me is your reference to repeated seeks.",
            ],
        ),
        (
            "00021.eml",  # no attribution at all: `>>` and `>` lines with answers between
            [
                "Nope, the drives are new and OK",
                "Yeah, I would expect that as well, but the reality was different.",
                "Nope, all units were Bytes.",
                "The assembled array can do over 700MB/s when I temporarilly freeze the sync,",
            ],
        ),
    ],
)
def test_real_inline_replies_keep_every_answer_in_order(name: str, answers: list[str]) -> None:
    cleaned = _clean_fixture(name)
    positions = [cleaned.text.find(answer) for answer in answers]
    assert -1 not in positions and positions == sorted(positions), positions
    assert not any(line.startswith(">") for line in cleaned.text.splitlines())
    assert "I haven't read the code" in cleaned.quoted_text and "I haven't read the code" not in cleaned.text
