"""Text from senders and servers, made safe to print on a terminal.

A subject, a sender, a folder name or a server's error line is written by someone else.
Printed raw, an ESC sequence can clear the screen or write the clipboard (OSC 52), a CR
or LF fakes a line of our output, and a bidi override (U+202E...) shows text reordered.
Every human-readable line the CLI prints goes through `safe_text`: such characters become
visible escapes (`\\x1b`, `\\u202e`) and the rest of the text stays as it was.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 (ESC among them), DEL, C1; the bidi embeddings, overrides and isolates of the
# "Trojan Source" advisory (CVE-2021-42574); the Unicode line and paragraph separators.
_BEYOND_C0 = "\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE_LINE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_UNSAFE_BLOCK = re.compile(f"[\x00-\x08\x0b-\x1f{_BEYOND_C0}]")  # TAB and LF stay
# JSON escapes C0 itself; these it would leave raw with ensure_ascii=False.
_UNSAFE_IN_JSON = re.compile(f"[{_BEYOND_C0}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: object, multiline: bool = False) -> str:
    """`value` as text with every control and bidi character shown as an escape.

    `multiline` keeps LF and TAB, for a body printed as lines under each other; a field
    printed inside one line (subject, sender, error) keeps neither, so it cannot fake one.
    """
    text = str(value)
    return (_UNSAFE_BLOCK if multiline else _UNSAFE_LINE).sub(_escape, text)


def has_control(text: str) -> bool:
    """Whether `text` holds a character `safe_text` would escape on one line."""
    return _UNSAFE_LINE.search(text) is not None


def json_line(value: Any, indent: int | None = None) -> str:
    """JSON that decodes to exactly `value`, with C1 and bidi characters as `\\uXXXX` escapes.

    They can only occur inside strings, where `\\uXXXX` is the same character to a JSON
    reader, so the data stays exact while the bytes on a terminal carry no control.
    """
    text = json.dumps(value, ensure_ascii=False, default=str, indent=indent)
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
