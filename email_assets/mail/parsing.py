"""Raw RFC 822 bytes -> decoded fields, bodies, attachment metadata and defects.

Driven by the stdlib `email` package with `policy.default`. Real mail breaks every rule,
so each field is extracted on its own: a header that cannot be decoded becomes a defect
and a best-effort value, never an exception that loses the rest of the message.
"""

from __future__ import annotations

import datetime as dt
import email
import email.utils
import re
from dataclasses import asdict, dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from typing import Any

PARSER_VERSION = "parse-1"

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_MAX_NESTING = 50


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
        row = asdict(self)
        row["attachments"] = [asdict(item) for item in self.attachments]
        return row


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
    if payload.isascii():
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


def _header(message: Message, name: str, defects: list[str]) -> str | None:
    """A header's decoded text; malformed encoded-words fall back to a lenient decode."""
    try:
        value = message.get(name)
    except Exception as error:  # noqa: BLE001 - the policy's header parser can raise anything
        defects.append(f"{name}: {type(error).__name__}")
        value = None
        raw = None
        for key, raw_value in message.raw_items():
            if key.lower() == name.lower():
                raw = raw_value
                break
        if raw is None:
            return None
        try:
            return str(make_header(decode_header(str(raw))))
        except Exception:  # noqa: BLE001
            return str(raw)
    if value is None:
        return None
    text = str(value)
    for defect in getattr(value, "defects", ()):
        defects.append(f"{name}: {type(defect).__name__}")
    return text.replace("\r", "").replace("\n", " ").strip()


def _addresses(message: Message, name: str, defects: list[str]) -> list[dict[str, str]]:
    try:
        header = message.get(name)
        if header is None:
            return []
        found = []
        for address in getattr(header, "addresses", ()):
            found.append({"name": address.display_name or "", "address": address.addr_spec or ""})
        if not found and str(header).strip():
            for display, addr in email.utils.getaddresses([str(header)]):
                found.append({"name": display, "address": addr})
        return found
    except Exception as error:  # noqa: BLE001
        defects.append(f"{name}: {type(error).__name__}")
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
        return [{"name": d, "address": a} for d, a in email.utils.getaddresses([str(raw)]) if a or d]


def _date(message: Message, internaldate: dt.datetime, defects: list[str]) -> tuple[dt.datetime, str]:
    try:
        header = message.get("date")
        moment = getattr(header, "datetime", None) if header is not None else None
    except Exception as error:  # noqa: BLE001
        defects.append(f"Date: {type(error).__name__}")
        moment = None
    if moment is None:
        if message.get("date") is not None:
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


def _walk(part: Message, parsed: ParsedEmail, depth: int = 0) -> None:
    """Pick the first inline text/plain and text/html bodies; list everything else."""
    if depth > _MAX_NESTING:
        parsed.defects.append("MIME nesting deeper than 50 levels; rest ignored")
        return
    content_type = part.get_content_type()
    where = f"part {content_type}"
    for defect in getattr(part, "defects", ()):
        parsed.defects.append(f"{where}: {type(defect).__name__}")
    if part.is_multipart() and content_type != "message/rfc822":
        children = part.get_payload()
        if isinstance(children, list):
            for child in children:
                _walk(child, parsed, depth + 1)
        return
    try:
        filename = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        parsed.defects.append(f"{where}: filename not decodable")
        filename = None
    disposition = (part.get_content_disposition() or "").lower()
    is_body_text = content_type in {"text/plain", "text/html"} and disposition != "attachment" and filename is None
    if is_body_text:
        attribute = "text_body" if content_type == "text/plain" else "html_body"
        if getattr(parsed, attribute) is None:
            payload = _payload_bytes(part, parsed.defects, where)
            setattr(parsed, attribute, decode_bytes(payload, part.get_content_charset(), parsed.defects, where))
            return
    if content_type == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        size = len(inner.as_bytes()) if isinstance(inner, Message) else 0
        parsed.attachments.append(Attachment(filename, content_type, size, disposition == "inline"))
        return
    payload = _payload_bytes(part, parsed.defects, where)
    parsed.attachments.append(Attachment(filename, content_type, len(payload), disposition != "attachment"))


def parse_message(raw: bytes, internaldate: dt.datetime) -> ParsedEmail:
    """Never raises: a message that cannot be parsed at all comes back with `parse_error`."""
    parsed = ParsedEmail()
    try:
        message: EmailMessage = email.message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
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
        _walk(message, parsed)
    except Exception as error:  # noqa: BLE001 - recorded per message, never a crashed partition
        parsed.parse_error = f"{type(error).__name__}: {str(error)[:200]}"
        if parsed.date is None:
            parsed.date, parsed.date_source = internaldate.astimezone(dt.UTC), "internaldate"
    return parsed
