"""IMAP responses read by type (RFC 3501, 4731, 7162): pure functions over parsed lines.

A server may send any untagged response at any time (RFC 3501 5.5 and 7.4.1): `* 23
EXISTS`, `* 5 EXPUNGE`, `* 7 FETCH (FLAGS ...)` can arrive in the middle of a UID SEARCH.
So every reader here looks at a response's type first and takes data only from the
responses that carry it: UIDs from `SEARCH` or from the `ESEARCH` answering our tag,
folder names from `LIST` (atom, quoted string or literal), counters from the `STATUS` of
the folder asked about. Everything else is left alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name.encode(): number for number, name in enumerate(MONTH_NAMES, 1)}

_FETCH_ITEM = re.compile(
    rb"\b(UID|RFC822\.SIZE|X-GM-MSGID|X-GM-THRID) (\d+)"
    rb'|\bINTERNALDATE "([^"]+)"'
    rb"|\bFLAGS \(([^)]*)\)"
    rb"|\bMODSEQ \((\d+)\)"
    rb"|\b(EMAILID|THREADID) \(([A-Za-z0-9_-]+)\)"  # RFC 8474; THREADID NIL means none
)
_NUMBER_ITEMS = {b"UID": "uid", b"RFC822.SIZE": "size"}
_ID_ITEMS = {b"X-GM-MSGID": "server_id", b"X-GM-THRID": "thread_id", b"EMAILID": "server_id", b"THREADID": "thread_id"}
_STATUS_ITEM = re.compile(rb"\b(UIDVALIDITY|UIDNEXT|MESSAGES|HIGHESTMODSEQ) (\d+)")
_CODE = re.compile(rb"^OK \[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d+)\]")
_LITERAL_END = re.compile(rb"\{(\d+)\}$")
_SEQUENCE_SET = re.compile(rb"^[0-9:,]+$")


@dataclass(frozen=True)
class Untagged:
    """One untagged response: its text after `* ` (each literal's bytes left out, its
    `{n}` marker kept, the lines around it joined) and its literals in order."""

    text: bytes
    literals: tuple[bytes, ...] = ()

    @property
    def kind(self) -> str:
        """`SEARCH`, `LIST`, `STATUS`... or, for `* 23 EXISTS`, `EXISTS`."""
        first, _, rest = self.text.partition(b" ")
        if first.isdigit():
            first = rest.partition(b" ")[0]
        return first.decode("ascii", "replace").upper()

    @property
    def number(self) -> int | None:
        """The message number of `* 23 EXISTS` or `* 7 FETCH (...)`, else None."""
        first = self.text.partition(b" ")[0]
        return int(first) if first.isdigit() else None

    @property
    def rest(self) -> bytes:
        """The text after the kind (and after the number, where there is one)."""
        words = self.text.split(b" ", 2 if self.number is not None else 1)
        return words[-1] if len(words) > (2 if self.number is not None else 1) else b""


def of_kind(responses: Iterable[Untagged], kind: str) -> list[Untagged]:
    return [response for response in responses if response.kind == kind]


def parse_internaldate(value: bytes | str) -> dt.datetime:
    """IMAP date-time ("20-Nov-2026 10:00:00 +0000") as an aware UTC datetime.

    Hand-parsed: strptime costs ~6 us and runs twice per message in a sync.
    """
    text = value.encode("ascii") if isinstance(value, str) else value
    date_part, time_part, zone = text.strip().split(b" ")
    day, month, year = date_part.split(b"-")
    hour, minute, second = time_part.split(b":")
    offset = int(zone[1:3]) * 60 + int(zone[3:5])
    tz = dt.timezone(dt.timedelta(minutes=-offset if zone[:1] == b"-" else offset))
    moment = dt.datetime(
        int(year), _MONTHS[month.capitalize()], int(day), int(hour), int(minute), int(second), tzinfo=tz
    )
    return moment.astimezone(dt.UTC)


def imap_date(day: dt.date) -> str:
    """SEARCH date format; month names are fixed English, never locale-dependent."""
    return f"{day.day}-{MONTH_NAMES[day.month - 1]}-{day.year}"


def uid_set(uids: Iterable[int]) -> str:
    """Compact sequence set: 1,2,3,7,8 -> 1:3,7:8 (keeps long FETCH lines short)."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    ranges: list[str] = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        ranges.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = uid
    ranges.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(ranges)


def parse_uid_set(text: bytes) -> list[int]:
    """`1:3,7,9:8` -> [1, 2, 3, 7, 8, 9]: the sets ESEARCH and VANISHED answer with."""
    if not _SEQUENCE_SET.match(text):
        raise ValueError(f"not a UID set: {text[:80]!r}")
    uids: set[int] = set()
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        first, last = int(low), int(high or low)
        uids.update(range(min(first, last), max(first, last) + 1))
    return sorted(uids)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(value: bytes) -> bytes:
    if value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2:
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


def parse_fetch_response(text: bytes, body: bytes | None = None) -> dict[str, Any] | None:
    """The items of one FETCH response (its text, literal left out), in one regex pass.

    None for a response without a UID: an unsolicited FLAGS update, not an answer.
    """
    items: dict[str, Any] = {"body": body}
    for match in _FETCH_ITEM.finditer(text):
        name, number, date, flags, modseq, id_name, object_id = match.groups()
        if number is not None:
            if name in _ID_ITEMS:
                items[_ID_ITEMS[name]] = number.decode("ascii")
            else:
                items[_NUMBER_ITEMS[name]] = int(number)
        elif object_id is not None:
            items[_ID_ITEMS[id_name]] = object_id.decode("ascii")
        elif date is not None:
            items["internaldate"] = parse_internaldate(date)
        elif flags is not None:
            items["flags"] = tuple(flags.decode("ascii", "replace").split())
        elif modseq is not None:
            items["modseq"] = int(modseq)
    return items if "uid" in items else None


def search_uids(responses: Iterable[Untagged], tag: str | None = None) -> list[int]:
    """UIDs of a UID SEARCH: from `* SEARCH` lines, or from the `* ESEARCH (TAG "tag") UID
    ALL set` that answers `tag` (RFC 4731); never from any other response."""
    uids: set[int] = set()
    for response in responses:
        if response.kind == "SEARCH":
            words = response.rest.split()
            if b"(MODSEQ" in words:  # RFC 7162: "* SEARCH 2 5 (MODSEQ 917)"
                words = words[: words.index(b"(MODSEQ")]
            uids.update(int(word) for word in words if word.isdigit())
        elif response.kind == "ESEARCH":
            rest = response.rest
            correlator = re.match(rb'\(TAG "([^"]*)"\) ?', rest)
            if correlator is not None:
                if tag is not None and correlator.group(1).decode("ascii", "replace") != tag:
                    continue  # another command's answer
                rest = rest[correlator.end() :]
            words = rest.split()
            for name, value in zip(words, words[1:], strict=False):
                if name.upper() == b"ALL":
                    uids.update(parse_uid_set(value))
    return sorted(uids)


def list_entries(responses: Iterable[Untagged]) -> list[tuple[bytes, set[str]]]:
    """(wire name, attributes) of each `* LIST`: the name an atom, a quoted string or a literal."""
    entries = []
    for response in of_kind(responses, "LIST"):
        match = re.match(rb'^\(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (.+)$', response.rest, re.DOTALL)
        if match is None:
            continue
        attributes = set(match.group(1).decode("ascii", "replace").split())
        name = match.group(2)
        literal = _LITERAL_END.match(name)
        if literal is not None and response.literals:
            name = response.literals[0]
        entries.append((_unquote(name), attributes))
    return entries


def status_items(responses: Iterable[Untagged], wire_name: str) -> dict[str, int]:
    """Counters from the `* STATUS` of `wire_name` only: with NOTIFY (RFC 5465) a server
    may push other folders' STATUS while we wait."""
    items: dict[str, int] = {}
    expected = {wire_name.encode("utf-8"), quoted(wire_name).encode("utf-8")}
    for response in of_kind(responses, "STATUS"):
        rest = response.rest
        if response.literals and _LITERAL_END.search(rest.split(b" (", 1)[0]):
            name, counters = response.literals[0], rest.split(b"} ", 1)[-1]
            expected_match = name == wire_name.encode("utf-8")
        else:
            name, _, counters = rest.rpartition(b" (")
            expected_match = name in expected
        if expected_match:
            items.update({key.decode(): int(value) for key, value in _STATUS_ITEM.findall(counters)})
    return items


def selected_state(responses: Iterable[Untagged]) -> dict[str, int]:
    """EXISTS, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ from a SELECT or EXAMINE's answer."""
    state: dict[str, int] = {}
    for response in responses:
        if response.kind == "EXISTS" and response.number is not None:
            state["EXISTS"] = response.number
        elif (code := _CODE.match(response.text)) is not None:
            state[code.group(1).decode()] = int(code.group(2))
    return state


def vanished_uids(responses: Iterable[Untagged]) -> list[int]:
    """UIDs a QRESYNC server says are gone: `* VANISHED (EARLIER) 41,43:116` (RFC 7162 3.2.10)."""
    uids: set[int] = set()
    for response in of_kind(responses, "VANISHED"):
        rest = response.rest
        if rest.upper().startswith(b"(EARLIER) "):
            rest = rest[len(b"(EARLIER) ") :]
        uids.update(parse_uid_set(rest.strip()))
    return sorted(uids)


def fetched_flags(responses: Iterable[Untagged]) -> dict[int, tuple[str, ...]]:
    """UID -> flags of every `* n FETCH` that names its UID and FLAGS."""
    flags: dict[int, tuple[str, ...]] = {}
    for response in of_kind(responses, "FETCH"):
        item = parse_fetch_response(response.rest)
        if item is not None and "flags" in item:
            flags[item["uid"]] = item["flags"]
    return flags
