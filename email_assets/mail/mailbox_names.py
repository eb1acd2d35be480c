"""IMAP modified UTF-7 mailbox names (RFC 3501 5.1.3).

Folder names are stored and shown decoded ("Entwürfe") and encoded only on the wire
("Entw&APw-rfe"); the stdlib has no codec for this variant of UTF-7.
"""

from __future__ import annotations

import base64


def encode_mailbox_name(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_mailbox_name(name: str) -> str:
    out: list[str] = []
    position = 0
    while position < len(name):
        char = name[position]
        if char != "&":
            out.append(char)
            position += 1
            continue
        end = name.find("-", position)
        if end == -1:  # malformed: keep the rest as it is rather than lose the name
            out.append(name[position:])
            break
        chunk = name[position + 1 : end]
        if not chunk:
            out.append("&")
        else:
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                out.append(name[position : end + 1])
        position = end + 1
    return "".join(out)
