"""Hostile messages anyone can write in a few lines, shared by the tests and `benchmarks/hostile.py`.

Each builder returns raw RFC 822 bytes; HTML cases put the HTML in a text/html body.
"""

from __future__ import annotations

from collections.abc import Callable


def unclosed_quote_parameters(semicolons: int = 500_000) -> bytes:
    header = 'text/plain; charset="utf-8' + ";a" * semicolons
    return f"Subject: params\r\nContent-Type: {header}\r\n\r\nthe body survives\r\n".encode()


def far_future_date() -> bytes:
    return b"Subject: far future\r\nDate: 31 Dec 9999 23:30 -0100\r\n\r\nstill here\r\n"


def nested_comments_from(depth: int = 1200) -> bytes:
    sender = "(" * depth + "x" + ")" * depth + " ana@example.org"
    return f"From: {sender}\r\nSubject: comments\r\nTo: bob@example.net\r\n\r\nbody text\r\n".encode()


def deep_multipart(depth: int) -> bytes:
    head = "".join(f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n' for i in range(depth))
    tail = "".join(f"--b{i}--\r\n" for i in reversed(range(depth + 1)))
    return (
        f'Subject: nested {depth}\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n{head}'
        f"--b{depth}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe only text, at the bottom\r\n{tail}"
    ).encode()


def nested_rfc822(depth: int = 500) -> bytes:
    raw = b"Subject: innermost\r\nContent-Type: text/plain\r\n\r\nthe forwarded words\r\n"
    for level in range(depth):
        raw = f"Subject: level {level}\r\nContent-Type: message/rfc822\r\n\r\n".encode() + raw
    return raw


def nul_in_text() -> bytes:
    return b"Subject: nul\r\nContent-Type: text/plain\r\n\r\nbefore\x00after, and the rest of the message\r\n"


def html_message(html: str, subject: str = "html") -> bytes:
    return f"Subject: {subject}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n".encode()


def data_uri_and_style() -> str:
    image = "data:image/png;base64," + "iVBORw0KGgo" * 150_000  # 1.6 MB of inline image
    style = "<style>" + "p{color:red}" * 20_000 + "</style>"
    return f'<html><head>{style}</head><body><img src="{image}"><p>The visible text.</p></body></html>'


def wide_table(rows: int = 50, columns: int = 40) -> str:
    cells = ("".join(f"<td>Cell{r}x{c}</td>" for c in range(columns)) for r in range(rows))
    return "<table>" + "".join(f"<tr>{row}</tr>" for row in cells) + "</table>"


def unclosed_paragraph_tags(count: int = 400_000) -> str:
    return "<p " * count


def huge_subject(size: int = 1_000_000) -> bytes:
    return f"Subject: {'S' * size}\r\n\r\nA short body about the rebuild.\r\n".encode()


CASES: dict[str, Callable[[], bytes]] = {
    "unclosed quote in Content-Type, 1 MB": unclosed_quote_parameters,
    "Date past datetime.max": far_future_date,
    "From with 1,200 nested comments": nested_comments_from,
    "multipart nested 60 deep": lambda: deep_multipart(60),
    "multipart nested 1,000 deep": lambda: deep_multipart(1000),
    "message/rfc822 nested 500 deep": nested_rfc822,
    "NUL in a text body": nul_in_text,
    "1.6 MB data: image and style before the text": lambda: html_message(data_uri_and_style()),
    "10 MB table": lambda: html_message(wide_table(5000, 60)),
    "1.2 MB of '<p' without '>'": lambda: html_message(unclosed_paragraph_tags()),
    "1 MB Subject": huge_subject,
    "20 MB text body": lambda: b"Subject: huge\r\nContent-Type: text/plain\r\n\r\n" + b"word " * 4_000_000,
}
