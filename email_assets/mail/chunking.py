"""Cleaned text -> chunks that follow its paragraphs and sentences, measured in model tokens.

A chunk that ends mid-sentence embeds half a thought, and a chunk cut by characters
either overflows the model (which silently truncates) or wastes its window; so text is
packed paragraph by paragraph, a paragraph too long for one chunk sentence by sentence,
and only a sentence longer than the whole budget is cut at token boundaries. Each chunk
starts with a short context line (subject, sender, date) so that "the Lisbon offsite" is
found in the third paragraph of a message whose body never names it. Header text that
enters a chunk is capped, so no message can multiply its chunks by the size of a header.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CHUNKER_VERSION = "chunk-2"
CONTEXT_FIELD_CHARS = 160  # subject, sender: enough to carry the topic, never a 1 MB header

TokenOffsets = Callable[[str], list[tuple[int, int]]]

_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends at . ! ? (or their CJK forms) followed by space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n")


def regex_token_offsets(text: str) -> list[tuple[int, int]]:
    """Word-and-punctuation offsets: a conservative stand-in when no tokenizer is local."""
    return [match.span() for match in _WORDISH.finditer(text)]


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    token_count: int


def cap(value: str | None, limit: int = CONTEXT_FIELD_CHARS) -> str:
    """One line of at most `limit` characters, for headers that reach chunks or metadata."""
    if not value:
        return ""
    line = " ".join(value.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def context_line(subject: str | None, sender: str | None, date: str | None) -> str:
    parts = [cap(subject), cap(sender), (date or "")[:10]]
    return " | ".join(part for part in parts if part)


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> Iterator[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between matches of `pattern`."""
    position = start
    for match in pattern.finditer(text, start, end):
        if text[position : match.start()].strip():
            yield position, match.start()
        position = match.end()
    if text[position:end].strip():
        yield position, end


class _TokenCounter:
    """Token counts of any span of the text, from one tokenizer pass over all of it."""

    def __init__(self, text: str, token_offsets: TokenOffsets) -> None:
        self.offsets = token_offsets(text)
        self.starts = [start for start, _ in self.offsets]

    def first_token(self, position: int) -> int:
        return bisect.bisect_left(self.starts, position)

    def count(self, start: int, end: int) -> int:
        return self.first_token(end) - self.first_token(start)


def _units(text: str, counter: _TokenCounter, budget: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, starts_paragraph) pieces that each fit `budget` tokens."""
    for paragraph_start, paragraph_end in _spans(text, _PARAGRAPH_BREAK, 0, len(text)):
        if counter.count(paragraph_start, paragraph_end) <= budget:
            yield paragraph_start, paragraph_end, True
            continue
        first = True
        for start, end in _spans(text, _SENTENCE_END, paragraph_start, paragraph_end):
            tokens = counter.count(start, end)
            if tokens <= budget:
                yield start, end, first
            else:  # a sentence longer than a chunk: cut at token boundaries
                index = counter.first_token(start)
                last = counter.first_token(end)
                while index < last:
                    stop = min(index + budget, last)
                    yield counter.offsets[index][0], counter.offsets[stop - 1][1], first
                    index = stop
                    first = False
            first = False


def chunk_text(text: str, token_offsets: TokenOffsets, max_tokens: int = 200, context: str = "") -> list[Chunk]:
    """Greedy packing of paragraphs (or sentences) into chunks of at most `max_tokens` tokens.

    `context` (see `context_line`) opens every chunk and counts against its budget.
    Identical chunks (a message that repeats itself) are kept once.
    """
    context_tokens = len(token_offsets(context)) if context else 0
    budget = max(16, max_tokens - context_tokens)
    counter = _TokenCounter(text, token_offsets)
    if not counter.offsets:
        return []
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    current_tokens = 0
    for start, end, new_paragraph in _units(text, counter, budget):
        tokens = counter.count(start, end)
        if current and current_tokens + tokens > budget:
            pieces.append(("".join(current).strip(), current_tokens))
            current, current_tokens = [], 0
        if current:
            current.append("\n\n" if new_paragraph else " ")
        current.append(text[start:end].strip())
        current_tokens += tokens
    if current:
        pieces.append(("".join(current).strip(), current_tokens))
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for body, tokens in pieces:
        chunk = f"{context}\n{body}" if context else body
        if body and chunk not in seen:
            seen.add(chunk)
            chunks.append(Chunk(len(chunks), chunk, tokens + context_tokens))
    return chunks
