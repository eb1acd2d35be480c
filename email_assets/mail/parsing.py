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

PARSER_VERSION = "parse-5"

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_BARE_ADDRESS = re.compile(r"[\w.+'-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}")
_MAX_LISTED_ADDRESSES = 1000
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
    try:
        pairs = email.utils.getaddresses([raw])
    except (RecursionError, ValueError, IndexError):  # e.g. a thousand nested (comments)
        defects.append(f"{name}: address list not parseable; addresses taken from its text")
        pairs = [("", address) for address in _BARE_ADDRESS.findall(raw)[:_MAX_LISTED_ADDRESSES]]
    found = []
    for display, address in pairs:
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
    try:
        return moment.astimezone(dt.UTC), "header"
    except OverflowError:  # e.g. 31 Dec 9999 23:30 -0100: past datetime.max once in UTC
        defects.append("Date: out of range, using INTERNALDATE")
        return internaldate.astimezone(dt.UTC), "internaldate"


def _payload_bytes(part: Message, defects: list[str], where: str) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception as error:  # noqa: BLE001 - broken transfer encodings
        defects.append(f"{where}: payload not decodable ({type(error).__name__})")
        raw = part.get_payload()
        return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    return payload or b""


_CONTROL_BYTES = bytes(range(1, 9)) + bytes(range(14, 32))  # tab, LF, CR, FF are text; NUL is judged apart


def _looks_binary(payload: bytes) -> bool:
    """A high share of control bytes, or of NULs around bytes that are not UTF-8: an
    Outlook .msg, an image, not text.

    NULs alone do not make a part binary: a declared text part that is valid UTF-8 once
    its NULs are gone (a buggy mailer's padding, undeclared UTF-16 ASCII) is text with a
    defect, its NULs stripped (`storable_text`), so its words stay searchable.
    """
    sample = payload[:4096]
    if not sample:
        return False
    without_nul = sample.replace(b"\x00", b"")
    if len(without_nul) - len(without_nul.translate(None, _CONTROL_BYTES)) > len(sample) // 10:
        return True
    return len(sample) - len(without_nul) > len(sample) // 10 and not _is_utf8(without_nul)


def _is_utf8(sample: bytes) -> bool:
    """Valid UTF-8, allowing a sequence cut off at the end of the sample."""
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.reason == "unexpected end of data" and error.start >= len(sample) - 3
    return True


def _looks_like_html(text: str) -> bool:
    head = text[:2000].lower()
    return "<html" in head or "<body" in head or "<div" in head or "<p>" in head


def _walk(root: Message, parsed: ParsedEmail, forwarded: list[Message], nested: bool = False) -> None:
    """Collect inline text/plain (all of it) and the first inline text/html; list the rest.

    Iterative, in document order, with no depth limit: a message nested 60 levels deep
    whose only text is at the bottom still has that text. A multipart whose boundary
    never appears is kept as one text body rather than lost, and attached messages are
    remembered so that a message that only forwards another still has text.
    """
    stack: list[tuple[Message, bool]] = [(root, nested)]
    while stack:
        part, is_child = stack.pop()
        children = _visit(part, parsed, forwarded, is_child)
        stack.extend((child, True) for child in reversed(children))


def _visit(part: Message, parsed: ParsedEmail, forwarded: list[Message], is_child: bool) -> list[Message]:
    """Handle one part; returns the children still to visit."""
    content_type = part.get_content_type()
    where = f"part {content_type}"
    if is_child:
        for defect in getattr(part, "defects", ()):
            parsed.defects.append(f"{where}: {type(defect).__name__}")
    if content_type == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            forwarded.append(inner)
        parsed.attachments.append(Attachment(_filename(part, parsed), content_type, _size(inner), False))
        return []
    if part.is_multipart() or content_type.startswith("multipart/"):
        children = part.get_payload()
        if isinstance(children, list):
            return [child for child in children if isinstance(child, Message)]
        text = children if isinstance(children, str) else ""
        parsed.defects.append(f"{where}: boundary not found, body kept as one text part")
        if _looks_like_html(text):
            parsed.html_body = parsed.html_body or text
        elif text.strip():
            parsed.text_body = (parsed.text_body + "\n\n" + text) if parsed.text_body else text
        return []
    filename = _filename(part, parsed)
    disposition = (part.get_content_disposition() or "").lower()
    if content_type in {"text/plain", "text/html"} and disposition != "attachment":
        payload = _payload_bytes(part, parsed.defects, where)
        charset = (part.get_content_charset() or "").lower()
        if not charset.startswith(("utf-16", "utf-32")) and _looks_binary(payload):
            parsed.defects.append(f"{where}: binary data, not text ({len(payload)} bytes); kept out of the body")
            parsed.attachments.append(Attachment(filename, "application/octet-stream", len(payload), False))
            return []
        if b"\x00" in payload and not charset.startswith(("utf-16", "utf-32")):
            parsed.defects.append(f"{where}: NUL bytes removed from the text")
            payload = payload.replace(b"\x00", b"")  # before decoding: a NUL may split a UTF-8 sequence
        text = decode_bytes(payload, charset or None, parsed.defects, where)
        if content_type == "text/plain":
            parsed.text_body = (parsed.text_body + "\n\n" + text) if parsed.text_body else text
            return []
        if parsed.html_body is None:
            parsed.html_body = text
            return []
    payload = _payload_bytes(part, parsed.defects, where)
    parsed.attachments.append(Attachment(filename, content_type, len(payload), disposition != "attachment"))
    return []


def _size(message: Message | None) -> int:
    """Bytes of an attached message; the stdlib's generator recurses, so a chain nested
    hundreds deep has no size we can compute, which is not worth losing the message over."""
    if message is None:
        return 0
    try:
        return len(message.as_bytes())
    except (RecursionError, LookupError, ValueError, UnicodeError):
        return 0


def _filename(part: Message, parsed: ParsedEmail) -> str | None:
    try:
        return part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        parsed.defects.append(f"part {part.get_content_type()}: filename not decodable")
        return None


def _adopt_forwarded(parsed: ParsedEmail, forwarded: list[Message]) -> None:
    """A message with no text of its own that attaches messages: their text is its content.

    Followed down, level by level, while the attached messages have no text either (a
    forward of a forward of ...), with no depth limit.
    """
    level = forwarded
    while level:
        texts, htmls, deeper = [], [], []
        for inner_message in level:
            inner = ParsedEmail()
            _walk(inner_message, inner, deeper, nested=True)
            header = f"[Forwarded message] Subject: {_header(inner_message, 'Subject', inner.defects) or ''}"
            if inner.text_body:
                texts.append(f"{header}\n\n{inner.text_body}")
            elif inner.html_body:
                htmls.append(inner.html_body)
        if texts:
            parsed.text_body = "\n\n".join(texts)
            return
        if htmls:
            parsed.html_body = htmls[0]
            return
        level = deeper


# Content-Type / Content-Disposition fields are where the stdlib's parameter parsing is
# quadratic (an unclosed quote before many `;`, CPython gh-136063: 93 s for 200 KB), and
# the feed parser reads `boundary=` while it parses. No real header needs more than this.
MAX_PARAMETER_HEADER_BYTES = 2048
_PARAMETER_HEADER = re.compile(rb"^content-(?:type|disposition)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.I | re.M)


def _bounded_parameter_headers(raw: bytes, defects: list[str]) -> bytes:
    """A copy for parsing in which every Content-Type/-Disposition field is at most
    MAX_PARAMETER_HEADER_BYTES, cut after its last `;` that fits (the stored bytes keep all)."""
    pieces, position = [], 0
    for match in _PARAMETER_HEADER.finditer(raw):
        field_bytes = match.group(0)
        if len(field_bytes) <= MAX_PARAMETER_HEADER_BYTES:
            continue
        head = field_bytes[:MAX_PARAMETER_HEADER_BYTES]
        cut = head.rfind(b";")
        kept = head[:cut] if cut > 0 else head.split(b";", 1)[0]
        name = field_bytes.split(b":", 1)[0].decode("ascii", "replace")
        defects.append(f"{name}: header of {len(field_bytes)} bytes cut to {len(kept)} before parsing")
        pieces += [raw[position : match.start()], kept]
        position = match.end()
    return b"".join(pieces) + raw[position:] if pieces else raw


_HEADER_FIELD = re.compile(rb"^(?:[!-9;-~]+:|[ \t]|From )")


def _repaired_header_block(raw: bytes, defects: list[str]) -> bytes:
    """Drop stray non-header lines from inside the header block.

    The stdlib ends the headers at the first line that is not a header ("quite Delivered-To:
    ..." in a real spam sample), so every header after it, Subject included, became body.
    Only lines followed by real header lines are dropped: a message with no blank line
    between headers and body keeps its body.
    """
    match = _HEADER_END.search(raw)
    block = raw[: match.start()] if match else raw
    lines = block.split(b"\n")
    stray = [index for index, line in enumerate(lines) if line.strip(b"\r") and not _HEADER_FIELD.match(line)]
    if not stray or not any(_HEADER_FIELD.match(line) and line[:1] not in b" \t" for line in lines[stray[-1] + 1 :]):
        return raw
    defects.append(f"header block: {len(stray)} line(s) that are not headers dropped before parsing")
    dropped = set(stray)
    kept = b"\n".join(line for index, line in enumerate(lines) if index not in dropped)
    return kept + raw[len(block) :]


def _parse_tree(raw: bytes, defects: list[str]) -> tuple[Message, bool]:
    """The stdlib's tree, or, when its recursive parser runs out of stack (MIME or
    message/rfc822 nested many hundreds deep), the headers alone plus a flat tree of the
    leaf parts found by scanning for every declared boundary."""
    try:
        return email.message_from_bytes(raw), False
    except RecursionError:
        defects.append("MIME nested too deep for the stdlib parser; parts read by a flat boundary scan")
        return _flat_tree(raw), True


_BOUNDARY_PARAMETER = re.compile(rb'boundary\s*=\s*"?([^";\r\n]{1,200})', re.I)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _flat_tree(raw: bytes) -> Message:
    """One multipart/mixed message whose children are the leaf parts of `raw`, in order."""
    from email.parser import BytesHeaderParser

    match = _HEADER_END.search(raw)
    head, body = (raw[: match.end()], raw[match.end() :]) if match else (raw, b"")
    root = BytesHeaderParser().parsebytes(head)
    boundaries = {value.strip() for value in _BOUNDARY_PARAMETER.findall(raw)}
    delimiter = (
        re.compile(rb"^--(?:" + b"|".join(re.escape(b) for b in sorted(boundaries)) + rb")(?:--)?[ \t]*\r?$", re.M)
        if boundaries
        else None
    )
    segments = delimiter.split(body)[1:] if delimiter else [body]  # [0]: the preamble, not a part
    leaves: list[Message] = []
    for segment in segments:
        segment = segment.lstrip(b"\r\n")
        # A message/rfc822 part's body is a message: strip such header blocks one at a time.
        while True:
            header_block, _, rest = (
                segment.partition(b"\n\n") if b"\r\n\r\n" not in segment else (segment.partition(b"\r\n\r\n"))
            )
            if email.message_from_bytes(header_block).get_content_type() != "message/rfc822" or not rest:
                break
            segment = rest.lstrip(b"\r\n")
        leaf = email.message_from_bytes(segment)
        if segment.strip() and not leaf.get_content_type().startswith("multipart/"):
            leaves.append(leaf)
    root.set_payload(leaves)
    return root


def parse_message(raw: bytes, internaldate: dt.datetime) -> ParsedEmail:
    """Never raises: a message that cannot be parsed at all comes back with `parse_error`."""
    parsed = ParsedEmail()
    try:
        # compat32: the structure walk costs a fraction of policy.default's, whose header
        # objects re-parse Content-Type on every call; headers are decoded above, by hand.
        prepared = _repaired_header_block(_bounded_parameter_headers(raw, parsed.defects), parsed.defects)
        message, flat = _parse_tree(prepared, parsed.defects)
        if flat:
            del message["Content-Type"]
            message["Content-Type"] = "multipart/mixed"
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
