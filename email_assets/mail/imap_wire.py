"""IMAP responses read by type (RFC 3501, 4731, 7162): pure functions over parsed lines.

A server may send any untagged response at any time (RFC 3501 5.5 and 7.4.1): `* 23
EXISTS`, `* 5 EXPUNGE`, `* 7 FETCH (FLAGS ...)` can arrive in the middle of a UID SEARCH.
So every reader here looks at a response's type first and takes data only from the
responses that carry it: UIDs from `SEARCH` or from the `ESEARCH` answering our tag,
folder names from `LIST` (atom, quoted string or literal), counters from the `STATUS` of
the folder asked about. Everything else is left alone.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name.encode(): number for number, name in enumerate(MONTH_NAMES, 1)}
# RFC 3501 9: date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
_INTERNALDATE = re.compile(rb"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")

# Numbers are at most 20 digits (a 64-bit MODSEQ): a server's 5,000-digit "UID" is not a
# number Python should be asked to convert (ValueError past 4,300 digits).
_FETCH_ITEM = re.compile(
    rb"\b(UID|RFC822\.SIZE|X-GM-MSGID|X-GM-THRID) (\d{1,20})(?!\d)"
    rb'|\bINTERNALDATE "([^"]*)"'
    rb"|\bFLAGS \(([^)]*)\)"
    rb"|\bMODSEQ \((\d{1,20})\)"
    rb"|\b(EMAILID|THREADID) \(([A-Za-z0-9_-]+)\)"  # RFC 8474; THREADID NIL means none
)
_NUMBER_ITEMS = {b"UID": "uid", b"RFC822.SIZE": "size"}
_ID_ITEMS = {b"X-GM-MSGID": "server_id", b"X-GM-THRID": "thread_id", b"EMAILID": "server_id", b"THREADID": "thread_id"}
_STATUS_ITEM = re.compile(rb"\b(UIDVALIDITY|UIDNEXT|MESSAGES|HIGHESTMODSEQ) (\d{1,20})(?!\d)")
_CODE = re.compile(rb"^OK \[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d{1,20})\]")
_LITERAL_END = re.compile(rb"\{(\d+)\}$")
_SEQUENCE_SET = re.compile(rb"\d{1,10}(?::\d{1,10})?(?:,\d{1,10}(?::\d{1,10})?)*")
_SEQUENCE_PART = re.compile(rb"(\d+)(?::(\d+))?")
MAX_UID = 4294967295  # RFC 3501 2.3.1.1: a UID is a 32-bit nz-number
MAX_UID_SET_PARTS = 500_000  # ranges in one ESEARCH/VANISHED set before it is refused


class WireError(ValueError):
    """A server's answer that breaks the protocol or our bounds, in one line."""


@dataclass(frozen=True)
class WireLimits:
    """How much one server may make a client hold, and for how long (hostile-server bounds).

    A body literal over `max_message_bytes` is read past without being kept (the message
    is skipped and counted); any other limit crossed fails the command in one line.
    """

    max_message_bytes: int = 64 << 20  # one message's body literal in a FETCH
    max_literal_bytes: int = 1 << 20  # any other literal (a folder name in LIST or STATUS)
    max_line_bytes: int = 16 << 20  # one response line: a SEARCH of a million UIDs is ~8 MB
    max_reply_bytes: int = 64 << 20  # all a non-FETCH command's untagged responses together
    max_responses: int = 1_000_000  # untagged responses kept for one command
    seconds_per_message: float = 1.0  # a FETCH's overall deadline: its idle timeout, this per UID,
    min_bytes_per_second: int = 256 << 10  # and its bodies' announced bytes at this rate


DEFAULT_LIMITS = WireLimits()


@dataclass(frozen=True, slots=True)  # slots: a reply may hold up to a million of these
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
        return int(first) if first.isdigit() and len(first) <= 20 else None

    @property
    def rest(self) -> bytes:
        """The text after the kind (and after the number, where there is one)."""
        words = self.text.split(b" ", 2 if self.number is not None else 1)
        return words[-1] if len(words) > (2 if self.number is not None else 1) else b""


def of_kind(responses: Iterable[Untagged], kind: str) -> list[Untagged]:
    return [response for response in responses if response.kind == kind]


def parse_internaldate(value: bytes | str) -> dt.datetime:
    """IMAP date-time ("20-Nov-2026 10:00:00 +0000") as an aware UTC datetime.

    Hand-parsed: strptime costs ~6 us and runs twice per message in a sync. Anything a
    server may get wrong (a field missing, month "Foo", day 31-Feb, a year out of range)
    is a `ValueError`, which the caller turns into a per-message defect.
    """
    text = value.encode("ascii", "replace") if isinstance(value, str) else value
    match = _INTERNALDATE.fullmatch(text.strip())
    if match is None or match.group(2).capitalize() not in _MONTHS:
        raise ValueError(f"malformed INTERNALDATE {bytes(text[:64])!r}")
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    offset = int(zone_hours) * 60 + int(zone_minutes)
    try:
        tz = dt.timezone(dt.timedelta(minutes=-offset if sign == b"-" else offset))
        moment = dt.datetime(
            int(year), _MONTHS[month.capitalize()], int(day), int(hour), int(minute), int(second), tzinfo=tz
        )
        return moment.astimezone(dt.UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"malformed INTERNALDATE {bytes(text[:64])!r}: {error}") from None


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


@dataclass(frozen=True)
class UidRanges:
    """A UID set kept as sorted, disjoint, merged (first, last) ranges.

    ESEARCH and VANISHED answer in this compact form (RFC 4731 3.1, RFC 7162 3.2.10), and a
    one-line `1:4294967295` is four billion UIDs: expanded, ~400 GB. So a set stays ranges
    until a caller that knows how many UIDs can exist asks for them (`expand`).
    """

    ranges: tuple[tuple[int, int], ...] = ()

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        index = bisect.bisect_right(self.ranges, (uid, MAX_UID + 1)) - 1
        return index >= 0 and self.ranges[index][0] <= uid <= self.ranges[index][1]

    def __iter__(self) -> Iterator[int]:
        for first, last in self.ranges:
            yield from range(first, last + 1)

    def below(self, bound: int) -> UidRanges:
        """Only the UIDs under `bound` (a folder's UIDNEXT: no UID at or above it exists)."""
        return UidRanges(tuple((first, min(last, bound - 1)) for first, last in self.ranges if first < bound))

    def expand(self, most: int, what: str = "UID set") -> list[int]:
        """The UIDs, sorted; more than `most` (a folder's message count) is a protocol error."""
        count = len(self)
        if count > most:
            raise WireError(f"{what} names {count} UIDs, more than the {most} the folder can hold")
        return list(self)

    @classmethod
    def merged(cls, parts: Iterable[tuple[int, int]]) -> UidRanges:
        ranges: list[tuple[int, int]] = []
        for first, last in sorted(parts):
            if ranges and first <= ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], last))
            else:
                ranges.append((first, last))
        return cls(tuple(ranges))


def parse_uid_ranges(text: bytes) -> UidRanges:
    """`1:3,7,9:8` -> ranges (1, 3), (7, 9): the sets ESEARCH and VANISHED answer with,
    never expanded here. Numbers are RFC 3501 nz-numbers below 2^32; at most
    `MAX_UID_SET_PARTS` comma-separated parts."""
    if _SEQUENCE_SET.fullmatch(text) is None:
        raise WireError(f"not a UID set: {text[:80]!r}")
    if text.count(b",") >= MAX_UID_SET_PARTS:
        raise WireError(f"UID set of more than {MAX_UID_SET_PARTS} parts")
    parts = []
    for match in _SEQUENCE_PART.finditer(text):
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if not (0 < first <= MAX_UID and 0 < last <= MAX_UID):
            raise WireError(f"UID out of range in {text[:80]!r}")
        parts.append((min(first, last), max(first, last)))
    return UidRanges.merged(parts)


def parse_uid_set(text: bytes, most: int) -> list[int]:
    """`1:3,7,9:8` -> [1, 2, 3, 7, 8, 9], refused (`WireError`) past `most` UIDs."""
    return parse_uid_ranges(text).expand(most)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(value: bytes) -> bytes:
    if value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2:
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


def parse_fetch_response(text: bytes, body: bytes | None = None) -> dict[str, Any] | None:
    """The items of one FETCH response (its text, literal left out), in one regex pass.

    None for a response without a UID: an unsolicited FLAGS update, not an answer. A
    malformed INTERNALDATE does not raise: its text is under "internaldate_error", so the
    caller records a defect for that one message.
    """
    items: dict[str, Any] = {"body": body}
    for match in _FETCH_ITEM.finditer(text):
        name, number, date, flags, modseq, id_name, object_id = match.groups()
        if number is not None:
            if name in _ID_ITEMS:
                items[_ID_ITEMS[name]] = number.decode("ascii")
            elif name != b"UID" or 0 < int(number) <= MAX_UID:  # a UID past 2^32 names nothing
                items[_NUMBER_ITEMS[name]] = int(number)
        elif object_id is not None:
            items[_ID_ITEMS[id_name]] = object_id.decode("ascii")
        elif date is not None:
            try:
                items["internaldate"] = parse_internaldate(date)
            except ValueError:
                items["internaldate_error"] = date[:64].decode("ascii", "replace")
        elif flags is not None:
            items["flags"] = tuple(flags.decode("ascii", "replace").split())
        elif modseq is not None:
            items["modseq"] = int(modseq)
    return items if "uid" in items else None


def search_uids(responses: Iterable[Untagged], tag: str | None = None, *, most: int) -> list[int]:
    """UIDs of a UID SEARCH: from `* SEARCH` lines, or from the `* ESEARCH (TAG "tag") UID
    ALL set` that answers `tag` (RFC 4731); never from any other response. More than
    `most` UIDs (the folder's message count) is a `WireError`, found before expanding."""
    ranges: list[tuple[int, int]] = []
    for response in responses:
        if response.kind == "SEARCH":
            words = response.rest.split()
            if b"(MODSEQ" in words:  # RFC 7162: "* SEARCH 2 5 (MODSEQ 917)"
                words = words[: words.index(b"(MODSEQ")]
            numbers = (int(word) for word in words if word.isdigit() and len(word) <= 10)
            ranges.extend((uid, uid) for uid in numbers if 0 < uid <= MAX_UID)
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
                    ranges.extend(parse_uid_ranges(value).ranges)
    return UidRanges.merged(ranges).expand(most, "SEARCH answer")


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


def vanished_uids(responses: Iterable[Untagged], uidnext: int = MAX_UID + 1) -> UidRanges:
    """UIDs a QRESYNC server says are gone: `* VANISHED (EARLIER) 41,43:116` (RFC 7162 3.2.10).

    Kept as ranges: a server may name UIDs that never existed, so a set is no bigger than
    its text, only UIDs below the folder's `uidnext` are kept (no other can have been stored).
    """
    parts: list[tuple[int, int]] = []
    for response in of_kind(responses, "VANISHED"):
        rest = response.rest
        if rest.upper().startswith(b"(EARLIER) "):
            rest = rest[len(b"(EARLIER) ") :]
        parts.extend(parse_uid_ranges(rest.strip()).ranges)
    return UidRanges.merged(parts).below(uidnext)


def fetched_flags(responses: Iterable[Untagged]) -> dict[int, tuple[str, ...]]:
    """UID -> flags of every `* n FETCH` that names its UID and FLAGS."""
    flags: dict[int, tuple[str, ...]] = {}
    for response in of_kind(responses, "FETCH"):
        item = parse_fetch_response(response.rest)
        if item is not None and "flags" in item:
            flags[item["uid"]] = item["flags"]
    return flags
