"""Parsed bodies -> retrieval-ready text, keeping what was removed for lineage.

A reply repeats the thread it answers; indexed as is, every old message would be found
once per reply. So quoted lines, attribution lines and signatures are cut (and kept in
their own fields), HTML becomes plain text, and encoded junk is dropped. Every word the
sender wrote stays, in order: above the quote (top-posting), between quoted lines
(inline replies) and below them (bottom-posting, the norm on technical lists). Only where
a client quotes without markers (Outlook's From:/Sent: block, "Original Message"
separators) does the rest of the body count as quoted. Forwarded content is new to this mailbox and is kept, marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import html2text

CLEANER_VERSION = "clean-5"
# Beyond this a body is a log dump or a data export, not a message to retrieve by meaning;
# the rest is counted in `removed`, and the raw bytes keep everything.
MAX_TEXT_CHARS = 100_000

# Attribution lines of the common clients in English, French, German, Spanish; a mail
# client may wrap one over two lines (Gmail: "On Mon, ... Linus Torvalds\n<a@b> wrote:").
_LINE = r"[^\n]"
_ATTRIBUTIONS = [
    rf"^On {_LINE}{{1,200}}(?:\n{_LINE}{{1,200}})?\bwrote:[ \t]*$",  # Gmail, Apple Mail, Thunderbird, mobile
    rf"^Le {_LINE}{{1,200}}(?:\n{_LINE}{{1,200}})?\ba écrit[ \t]?:[ \t]*$",
    rf"^Am {_LINE}{{1,200}}(?:\n{_LINE}{{1,200}})?\bschrieb {_LINE}{{0,200}}:[ \t]*$",
    rf"^El {_LINE}{{1,200}}(?:\n{_LINE}{{1,200}})?\bescribió:[ \t]*$",
]
_ATTRIBUTION = re.compile("|".join(_ATTRIBUTIONS), re.IGNORECASE | re.MULTILINE)
# Separators after which the original follows with no quote markers: the rest is quoted.
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(Original Message|Message d'origine|Ursprüngliche Nachricht|Mensaje original)\s*-{2,}\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# Outlook desktop/web: an underscore rule or nothing, then From:/Sent: (Von:/Gesendet:, De:/Envoyé:, De:/Enviado:).
_OUTLOOK_BLOCK = re.compile(
    r"^(?:_{10,}\s*\n)?\*?(From|De|Von) ?:\*?\s.+\n\*?(Sent|Envoyé|Gesendet|Enviado|Date) ?:\*?\s",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_MARKER = re.compile(
    r"^(-{3,}\s*Forwarded message\s*-{3,}|Begin forwarded message:|-{3,}\s*Message transféré\s*-{3,}"
    r"|-{3,}\s*Weitergeleitete Nachricht\s*-{3,}|-{3,}\s*Mensaje reenviado\s*-{3,})\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SENT_FROM = re.compile(
    r"^(Sent from my .{1,60}|Sent from (Outlook|Mail) for .{1,40}|Get Outlook for .{1,40}"
    r"|Envoyé de mon .{1,60}|Von meinem .{1,60} gesendet|Enviado desde mi .{1,60})\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_BASE64_RUN = re.compile(r"(?:[A-Za-z0-9+/]{60,}={0,2}\s*){2,}|[A-Za-z0-9+/]{200,}={0,2}")
_TAG = re.compile(r"<[a-zA-Z/!][^>]{0,500}>")


@dataclass
class CleanedText:
    source: str  # "text", "html" or "none"
    text: str
    quoted_text: str = ""
    signature_text: str = ""
    removed: dict[str, int] = field(default_factory=dict)


_CELL_END = re.compile(r"</t[dh]\s*>", re.I)
_ROW_END = re.compile(r"</tr\s*>", re.I)
_DATA_URI = re.compile(r"""(?i)\bdata:[a-z0-9.+/-]{0,100}(?:;[a-z0-9=.+-]{0,100}){0,5},[^"'\s>)]*""")
_INVISIBLE = ("style", "script", "head", "noscript", "template")
_INVISIBLE_BLOCK = re.compile(rf"(?i)<({'|'.join(_INVISIBLE)})\b")
_CLOSING_TAGS = {name: re.compile(rf"</{name}\s*>", re.I) for name in _INVISIBLE}
_COMMENT_START = "<!--"


def escape_unclosed_tags(html: str, removed: dict[str, int]) -> str:
    """Every `<` with no `>` before the next `<` becomes `&lt;`, in one linear pass.

    Python's html.parser (under html2text) looks for the end of each unclosed tag all the
    way to the end of the input: 1.2 MB of `<p ` without `>` ran for over ten minutes.
    """
    if "<" not in html:
        return html
    pieces: list[str] = []
    position = 0
    no_more = len(html)  # `>` positions are only ever searched forward, so the pass stays linear
    start = html.find("<")
    close = -1
    escaped = 0
    while start >= 0:
        following = html.find("<", start + 1)
        if close < start:
            found = html.find(">", start)
            close = no_more if found < 0 else found
        if close == no_more or (0 <= following < close):
            pieces += [html[position:start], "&lt;"]
            position = start + 1
            escaped += 1
        start = following
    if not escaped:
        return html
    removed["html_unclosed_tags"] = escaped
    pieces.append(html[position:])
    return "".join(pieces)


def reduce_html(html: str, removed: dict[str, int]) -> str:
    """Markup that never shows (style, script, head, comments, inline data: images) dropped
    in linear time, so that the size cap after it applies to what a reader would see.

    Each removal is counted in `removed`; an unclosed block runs to the end, as a browser
    would render it (not at all).
    """
    pieces: list[str] = []
    position = 0
    invisible = 0
    while True:
        block = _INVISIBLE_BLOCK.search(html, position)
        comment = html.find(_COMMENT_START, position)
        starts = [found for found in (block.start() if block else -1, comment) if found >= 0]
        if not starts:
            break
        start = min(starts)
        pieces.append(html[position:start])
        if comment == start:
            end = html.find("-->", start + 4)
            end = len(html) if end < 0 else end + 3
        else:
            closing = _CLOSING_TAGS[block.group(1).lower()].search(html, block.end())
            end = closing.end() if closing else len(html)
        invisible += end - start
        position = end
    pieces.append(html[position:])
    reduced = "".join(pieces)
    if invisible:
        removed["html_invisible_chars"] = invisible
    reduced, uris = _DATA_URI.subn("", reduced)
    if uris:
        removed["html_data_uris"] = uris
    return escape_unclosed_tags(reduced, removed)


_FEED_CHARS = 65_536


def html_to_text(html: str, max_chars: int | None = None) -> str:
    """Visible text of `html`; with `max_chars`, conversion stops once that much text exists
    (html2text is pure Python: a megabyte of markup whose text is cut anyway cost seconds)."""
    # Cells and rows apart: html2text with tables ignored glues "<td>Widget</td><td>Price</td>"
    # into "WidgetPrice", and a wide glued row then looks like base64 and is deleted.
    html = _ROW_END.sub("<br>", _CELL_END.sub(" \\g<0>", html)) if "</t" in html.lower() else html
    converter = html2text.HTML2Text(bodywidth=0)
    converter.ignore_images = True  # tracking pixels and inline images carry no text
    converter.ignore_links = True  # keep anchor text, drop URLs full of tracking tokens
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    if max_chars is None or len(html) <= _FEED_CHARS:
        return converter.handle(html)
    converter.start = True
    for start in range(0, len(html), _FEED_CHARS):
        converter.feed(html[start : start + _FEED_CHARS])
        if sum(map(len, converter.outtextlist)) > max_chars:
            break
    converter.feed("")
    return converter.optwrap(converter.finish())


# Literal words each pattern needs: a substring test is ~50x cheaper than a MULTILINE
# regex scan, and most mail contains none of them.
_ATTRIBUTION_WORDS = ("wrote:", "écrit", "schrieb", "escribió")
_ORIGINAL_WORDS = ("Original", "origine", "Ursprüngliche")
_OUTLOOK_WORDS = ("From", "De", "Von")
_FORWARD_WORDS = ("orward", "transféré", "Weitergeleitet", "reenviado")
_SENT_FROM_WORDS = ("Sent from", "Get Outlook", "Envoyé de", "Von meinem", "Enviado desde")
_BASE64_PROBE = re.compile(r"[A-Za-z0-9+/]{60}")


def _search(pattern: re.Pattern[str], text: str, words: tuple[str, ...]) -> re.Match[str] | None:
    return pattern.search(text) if any(word in text for word in words) else None


def _is_real_text(text: str | None) -> bool:
    return bool(text and text.strip())


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _cut_attributions(text: str, quoted_parts: list[str]) -> str:
    """Drop the attribution lines; what follows each stays unless it is itself quoted.

    Plain-text clients mark what they quote, and HTML quotes arrive as `>` lines through
    html2text, so unmarked text after "On ... wrote:" is the sender's: a reply whose quote
    was trimmed away, or text typed into the quote's first line.
    """

    def drop(match: re.Match[str]) -> str:
        quoted_parts.append(match.group(0))
        return ""

    return _ATTRIBUTION.sub(drop, text)


def _cut_quoted(text: str) -> tuple[str, str]:
    """Split `text` into (the sender's own text, what it quotes), forwarded sections excepted."""
    forward = _search(_FORWARD_MARKER, text, _FORWARD_WORDS)
    head, forwarded = (text[: forward.start()], text[forward.start() :]) if forward else (text, "")
    quoted_parts: list[str] = []
    unmarked = (_search(_ORIGINAL_MESSAGE, head, _ORIGINAL_WORDS), _search(_OUTLOOK_BLOCK, head, _OUTLOOK_WORDS))
    cut_points = [match.start() for match in unmarked if match]
    tail = ""
    if cut_points:
        cut = min(cut_points)
        head, tail = head[:cut], head[cut:]
    if any(word in head for word in _ATTRIBUTION_WORDS):
        head = _cut_attributions(head, quoted_parts)
    if ">" in head:
        kept_lines: list[str] = []
        for line in head.split("\n"):
            if not _is_quoted(line):
                kept_lines.append(line)
                continue
            quoted_parts.append(line)
            if kept_lines and kept_lines[-1].strip():  # text on either side of a quote: two paragraphs
                kept_lines.append("")
        head = "\n".join(kept_lines)
    if tail:
        quoted_parts.append(tail)
    if forwarded:
        marker = _FORWARD_MARKER.search(forwarded)
        forwarded = "[Forwarded message]" + forwarded[marker.end() :] if marker else forwarded
        head = head.rstrip() + "\n\n" + forwarded
    return head, "\n".join(part.strip("\n") for part in quoted_parts)


def _cut_signature(text: str) -> tuple[str, str]:
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line in ("-- ", "--") and index > 0:
            forwarded = next((i for i in range(index, len(lines)) if lines[i] == "[Forwarded message]"), None)
            end = forwarded if forwarded is not None else len(lines)
            signature = "\n".join(lines[index:end])
            return "\n".join(lines[:index] + lines[end:]), signature
    match = _search(_SENT_FROM, text, _SENT_FROM_WORDS)
    if match:
        return text[: match.start()] + text[match.end() :], match.group(0)
    return text, ""


def normalize_whitespace(text: str) -> str:
    """Runs of spaces and tabs become one space, lines are stripped, blank runs become one."""
    lines: list[str] = []
    blank = False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        words = line.split()
        if words:
            lines.append(" ".join(words))
            blank = False
        elif not blank and lines:
            lines.append("")
            blank = True
    return "\n".join(lines).strip()


def clean_email(text_body: str | None, html_body: str | None) -> CleanedText:
    if _is_real_text(text_body):
        source, text = "text", text_body or ""
    elif _is_real_text(html_body):
        source = "html"
    else:
        return CleanedText(source="none", text="")
    removed: dict[str, int] = {}
    if source == "html":
        html = reduce_html(html_body or "", removed)
        # Markup is mostly tags: 10x the text budget keeps the readable part of any real mail.
        if len(html) > 10 * MAX_TEXT_CHARS:
            removed["html_truncated_chars"] = len(html) - 10 * MAX_TEXT_CHARS
            html = html[: 10 * MAX_TEXT_CHARS]
        text = html_to_text(html, max_chars=MAX_TEXT_CHARS)
    if len(text) > MAX_TEXT_CHARS:
        removed["truncated_chars"] = len(text) - MAX_TEXT_CHARS
        text = text[:MAX_TEXT_CHARS]
    text = text.replace("\r\n", "\n")
    text, count = _BASE64_RUN.subn("", text) if _BASE64_PROBE.search(text) else (text, 0)
    if count:
        removed["base64_runs"] = count
    if source == "text":
        text, count = _TAG.subn("", text) if "</" in text else (text, 0)
        if count:
            removed["html_tags"] = count
    text, quoted = _cut_quoted(text)
    text, signature = _cut_signature(text)
    if quoted:
        removed["quoted_chars"] = len(quoted)
    if signature:
        removed["signature_chars"] = len(signature)
    return CleanedText(
        source=source,
        text=normalize_whitespace(text),
        quoted_text=quoted.strip(),
        signature_text=signature.strip(),
        removed=removed,
    )
