"""Raw RFC 822 bytes -> decoded fields, bodies, attachment metadata and defects.

Driven by the stdlib `email` package (compat32 parsing, headers decoded field by field). Real mail breaks every rule,
so each field is extracted on its own: a header that cannot be decoded becomes a defect
and a best-effort value, never an exception that loses the rest of the message.
"""

from __future__ import annotations

import datetime as dt
import email
import email.utils
import re
from dataclasses import dataclass, field, fields, is_dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

PARSER_VERSION = "parse-4"

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_MAX_NESTING = 50
# Charsets whose text is pure ASCII bytes on the wire and still needs decoding.
_SEVEN_BIT_ENCODINGS = ("iso-2022", "utf-7", "hz")


@dataclass
class Attachment:
    filename: str | None
    content_type: str
    size: int
    inline: bool


@dataclass
class ParsedEmail:
    message_id: str | None = None
    subject: str | None = None
    from_name: str | None = None
    from_address: str | None = None
    to_addresses: list[dict[str, str]] = field(default_factory=list)
    cc_addresses: list[dict[str, str]] = field(default_factory=list)
    date: dt.datetime | None = None
    date_source: str = "header"
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    thread_id: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    parse_error: str | None = None

    def as_row(self) -> dict[str, Any]:
        """Storable values: every string valid Unicode without NUL (PostgreSQL refuses both)."""
        return _storable(self)


def storable_text(text: str) -> str:
    """Undo surrogateescape (raw 8-bit bytes the email package could not decode) and drop NULs."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")


def _storable(value: Any) -> Any:
    """A copy made storable in one pass (`dataclasses.asdict` deep-copied everything first:
    a tenth of parsing time, for a copy this pass makes anyway)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if is_dataclass(value):
        return {item.name: _storable(getattr(value, item.name)) for item in fields(value)}
    return value


def normalize_message_id(value: str | None) -> str | None:
    """`<Abc@Example.COM>` -> `Abc@Example.COM`: brackets and whitespace are not identity."""
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    if match:
        return match.group(1)
    stripped = value.strip().strip("<>").strip()
    return stripped or None


def message_ids(value: str | None) -> list[str]:
    return _MESSAGE_ID.findall(value or "")


def decode_bytes(payload: bytes, declared: str | None, defects: list[str], where: str) -> str:
    """Decode a body, trusting the declared charset only as far as the bytes allow.

    Mail often declares us-ascii or iso-8859-1 while carrying UTF-8 or windows-1252, and
    sometimes names a charset Python does not know. Valid UTF-8 with non-ASCII bytes is
    UTF-8 whatever the label says; latin-1 labels are read as windows-1252, as browsers do.
    """
    charset = (declared or "us-ascii").strip().strip('"').lower()
    if payload.isascii() and not charset.startswith(_SEVEN_BIT_ENCODINGS):
        return payload.decode("ascii")
    if charset in {"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "utf-8", "utf8"}:
        try:
            text = payload.decode("utf-8")
            if charset not in {"utf-8", "utf8"}:
                defects.append(f"{where}: declared {charset} but is UTF-8")
            return text
        except UnicodeDecodeError:
            if charset in {"utf-8", "utf8"}:
                defects.append(f"{where}: declared utf-8 but is not valid UTF-8; read as windows-1252")
            return payload.decode("cp1252", errors="replace")
    try:
        return payload.decode(charset)
    except LookupError:
        defects.append(f"{where}: unknown charset {charset!r}")
    except UnicodeDecodeError:
        defects.append(f"{where}: bytes are not valid {charset}")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace")


def _raw_header(message: Message, name: str) -> str | None:
    """The first such header as received (8-bit bytes surrogate-escaped, not yet decoded).

    `Message.get` would wrap 8-bit values in a Header that replaces them with U+FFFD.
    """
    first = getattr(message, "_email_assets_raw", None)
    if first is None:
        first = {}
        for key, value in message.raw_items():
            first.setdefault(key.lower(), value)
        message._email_assets_raw = first  # type: ignore[attr-defined]
    value = first.get(name.lower())
    return value if value is None or isinstance(value, str) else str(value)


def decode_header_text(value: str, defects: list[str], name: str) -> str:
    """RFC 2047 words decoded; raw 8-bit bytes read as UTF-8, else windows-1252."""
    if _has_surrogates(value):
        data = value.encode("ascii", "surrogateescape")
        try:
            value = data.decode("utf-8")  # RFC 6532: raw UTF-8 headers are legitimate
        except UnicodeDecodeError:
            value = data.decode("cp1252", errors="replace")
            defects.append(f"{name}: undeclared 8-bit characters, read as windows-1252")
    if "=?" in value:
        try:
            value = str(make_header(decode_header(value)))
        except Exception as error:  # noqa: BLE001 - malformed encoded-words: keep the text as it is
            defects.append(f"{name}: undecodable encoded-word ({type(error).__name__})")
    return " ".join(value.split())


def _has_surrogates(value: str) -> bool:
    return not value.isascii() and any("\udc80" <= char <= "\udcff" for char in value)


def _header(message: Message, name: str, defects: list[str]) -> str | None:
    raw = _raw_header(message, name)
    return None if raw is None else decode_header_text(raw, defects, name)


def _addresses(message: Message, name: str, defects: list[str]) -> list[dict[str, str]]:
    """Split first, decode each display name after: an encoded name may contain commas."""
    raw = _raw_header(message, name)
    if raw is None:
        return []
    found = []
    for display, address in email.utils.getaddresses([raw]):
        if not (display or address):
            continue
        found.append(
            {
                "name": decode_header_text(display, defects, name) if display else "",
                "address": decode_header_text(address, defects, name) if address else "",
            }
        )
    return found


def _date(message: Message, internaldate: dt.datetime, defects: list[str]) -> tuple[dt.datetime, str]:
    raw = _raw_header(message, "Date")
    moment = None
    if raw is not None and raw.strip():
        try:
            moment = email.utils.parsedate_to_datetime(decode_header_text(raw, defects, "Date"))
        except (TypeError, ValueError, IndexError, OverflowError):
            moment = None
    if moment is None:
        if raw is not None:
            defects.append("Date: unparseable, using INTERNALDATE")
        return internaldate.astimezone(dt.UTC), "internaldate"
    if moment.tzinfo is None:
        defects.append("Date: no time zone, assumed UTC")
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC), "header"


def _payload_bytes(part: Message, defects: list[str], where: str) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception as error:  # noqa: BLE001 - broken transfer encodings
        defects.append(f"{where}: payload not decodable ({type(error).__name__})")
        raw = part.get_payload()
        return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    return payload or b""


_CONTROL_BYTES = bytes(range(0, 9)) + bytes(range(14, 32))


def _looks_binary(payload: bytes) -> bool:
    """NULs or a high share of control bytes: an Outlook .msg, an image, not text."""
    sample = payload[:4096]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    return len(sample) - len(sample.translate(None, _CONTROL_BYTES)) > len(sample) // 10


def _looks_like_html(text: str) -> bool:
    head = text[:2000].lower()
    return "<html" in head or "<body" in head or "<div" in head or "<p>" in head


def _walk(part: Message, parsed: ParsedEmail, forwarded: list[Message], depth: int = 0) -> None:
    """Collect inline text/plain (all of it) and the first inline text/html; list the rest.

    A multipart whose boundary never appears is kept as one text body rather than lost,
    and attached messages are remembered so that a message that only forwards another
    still has text.
    """
    if depth > _MAX_NESTING:
        parsed.defects.append("MIME nesting deeper than 50 levels; rest ignored")
        return
    content_type = part.get_content_type()
    where = f"part {content_type}"
    if depth:
        for defect in getattr(part, "defects", ()):
            parsed.defects.append(f"{where}: {type(defect).__name__}")
    if content_type == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            forwarded.append(inner)
        size = len(inner.as_bytes()) if isinstance(inner, Message) else 0
        parsed.attachments.append(Attachment(_filename(part, parsed), content_type, size, False))
        return
    if part.is_multipart() or content_type.startswith("multipart/"):
        children = part.get_payload()
        if isinstance(children, list):
            for child in children:
                _walk(child, parsed, forwarded, depth + 1)
            return
        text = children if isinstance(children, str) else ""
        parsed.defects.append(f"{where}: boundary not found, body kept as one text part")
        if _looks_like_html(text):
            parsed.html_body = parsed.html_body or text
        elif text.strip():
            parsed.text_body = (parsed.text_body + "\n\n" + text) if parsed.text_body else text
        return
    filename = _filename(part, parsed)
    disposition = (part.get_content_disposition() or "").lower()
    if content_type in {"text/plain", "text/html"} and disposition != "attachment":
        payload = _payload_bytes(part, parsed.defects, where)
        charset = (part.get_content_charset() or "").lower()
        if not charset.startswith(("utf-16", "utf-32")) and _looks_binary(payload):
            parsed.defects.append(f"{where}: binary data, not text ({len(payload)} bytes); kept out of the body")
            parsed.attachments.append(Attachment(filename, "application/octet-stream", len(payload), False))
            return
        text = decode_bytes(payload, charset or None, parsed.defects, where)
        if content_type == "text/plain":
            parsed.text_body = (parsed.text_body + "\n\n" + text) if parsed.text_body else text
            return
        if parsed.html_body is None:
            parsed.html_body = text
            return
    payload = _payload_bytes(part, parsed.defects, where)
    parsed.attachments.append(Attachment(filename, content_type, len(payload), disposition != "attachment"))


def _filename(part: Message, parsed: ParsedEmail) -> str | None:
    try:
        return part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        parsed.defects.append(f"part {part.get_content_type()}: filename not decodable")
        return None


def _adopt_forwarded(parsed: ParsedEmail, forwarded: list[Message]) -> None:
    """A message with no text of its own that attaches messages: their text is its content."""
    texts, htmls = [], []
    for inner_message in forwarded:
        inner = ParsedEmail()
        _walk(inner_message, inner, [], depth=1)
        header = f"[Forwarded message] Subject: {_header(inner_message, 'Subject', inner.defects) or ''}"
        if inner.text_body:
            texts.append(f"{header}\n\n{inner.text_body}")
        elif inner.html_body:
            htmls.append(inner.html_body)
    if texts:
        parsed.text_body = "\n\n".join(texts)
    elif htmls:
        parsed.html_body = htmls[0]


def parse_message(raw: bytes, internaldate: dt.datetime) -> ParsedEmail:
    """Never raises: a message that cannot be parsed at all comes back with `parse_error`."""
    parsed = ParsedEmail()
    try:
        # compat32: the structure walk costs a fraction of policy.default's, whose header
        # objects re-parse Content-Type on every call; headers are decoded above, by hand.
        message = email.message_from_bytes(raw)
        for defect in message.defects:
            parsed.defects.append(type(defect).__name__)
        parsed.message_id = normalize_message_id(_header(message, "Message-ID", parsed.defects))
        parsed.subject = _header(message, "Subject", parsed.defects)
        senders = _addresses(message, "From", parsed.defects)
        if senders:
            parsed.from_name = senders[0]["name"] or None
            parsed.from_address = senders[0]["address"] or None
        parsed.to_addresses = _addresses(message, "To", parsed.defects)
        parsed.cc_addresses = _addresses(message, "Cc", parsed.defects)
        parsed.date, parsed.date_source = _date(message, internaldate, parsed.defects)
        parsed.in_reply_to = normalize_message_id(_header(message, "In-Reply-To", parsed.defects))
        parsed.references = message_ids(_header(message, "References", parsed.defects))
        parsed.thread_id = (parsed.references[:1] or [parsed.in_reply_to or parsed.message_id])[0]
        forwarded: list[Message] = []
        _walk(message, parsed, forwarded)
        if parsed.text_body is None and parsed.html_body is None and forwarded:
            _adopt_forwarded(parsed, forwarded)
    except Exception as error:  # noqa: BLE001 - recorded per message, never a crashed partition
        parsed.parse_error = f"{type(error).__name__}: {str(error)[:200]}"
        if parsed.date is None:
            parsed.date, parsed.date_source = internaldate.astimezone(dt.UTC), "internaldate"
    return parsed
