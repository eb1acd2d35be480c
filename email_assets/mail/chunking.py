"""Cleaned text -> overlapping chunks measured in the embedding model's own tokens.

Splitting by characters either overflows the model (which silently truncates) or wastes
its window; the tokenizer's offsets let us cut the original text at token boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CHUNKER_VERSION = "chunk-1"

TokenOffsets = Callable[[str], list[tuple[int, int]]]

_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def regex_token_offsets(text: str) -> list[tuple[int, int]]:
    """Word-and-punctuation offsets: a conservative stand-in when no tokenizer is local."""
    return [match.span() for match in _WORDISH.finditer(text)]


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    token_count: int


def chunk_text(text: str, token_offsets: TokenOffsets, max_tokens: int = 200, overlap: int = 32) -> list[Chunk]:
    """Windows of at most `max_tokens` tokens, each sharing `overlap` tokens with the last.

    Identical windows (a message that repeats itself) are kept once.
    """
    if max_tokens <= overlap:
        raise ValueError("max_tokens must exceed overlap")
    offsets = token_offsets(text)
    if not offsets:
        return []
    chunks: list[Chunk] = []
    seen: set[str] = set()
    start = 0
    while start < len(offsets):
        end = min(start + max_tokens, len(offsets))
        piece = text[offsets[start][0] : offsets[end - 1][1]].strip()
        if piece and piece not in seen:
            seen.add(piece)
            chunks.append(Chunk(len(chunks), piece, end - start))
        if end == len(offsets):
            break
        start = end - overlap
    return chunks
