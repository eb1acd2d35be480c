"""Fusion that weighs evidence: each side's rank, scaled by what that side actually knows.

Plain reciprocal rank fusion gives the word side's first hit the same weight as the dense
side's first hit, whatever the words were, and a dense hit at half the best cosine nearly
the weight of the best. A paraphrase that shares only common words
("asked", "account", "changes") with the wrong messages then puts them on top. Here the
word side's contribution is scaled by how much of the query's informative vocabulary the
message holds and by how rare its rarest matched word is (IDF), so rare terms, names and
quoted sentences still count in full while a handful of everyday words counts for little. A
message holding the query as a phrase keeps its full extra list: a sentence quoted word
for word is the strongest evidence there is. Likewise a dense hit counts by its cosine
relative to the query's best one, so a far weaker match in meaning cannot ride on rank.

Pure functions over plain values, so the fusion can be tested directly and `--explain`
prints the very numbers the ranking was sorted by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RRF_K = 60  # the constant of Cormack et al.: damps the weight of the very first ranks
DENSE_WEIGHT = 1.0
WORD_WEIGHT = 1.0
PHRASE_WEIGHT = 1.0
# The share of the query's informative words (IDF mass) a message must match for its word
# rank to count in full; below, its contribution shrinks in proportion. Tuned on the
# paraphrase and known-item sets together (README, retrieval figures).
FULL_EVIDENCE_SHARE = 0.5
SPECIFICITY_POWER = 2.0
# A dense hit counts by its cosine relative to the query's best one, to this power: rank
# alone makes a chunk at half the best cosine worth nearly as much as the best.
DENSE_SHARPNESS = 2.0


@dataclass(frozen=True)
class DenseEvidence:
    """A message on the dense side: its rank, the cosine of its best chunk, and its weight."""

    rank: int
    score: float
    chunk_id: str
    weight: float = 1.0  # 0..1, the scale applied to this side's reciprocal rank


@dataclass(frozen=True)
class WordEvidence:
    """A message on the word side: BM25 rank and score, the query words it holds, their weight."""

    rank: int
    score: float
    terms: tuple[str, ...]
    weight: float  # 0..1, the scale applied to this side's reciprocal rank


@dataclass(frozen=True)
class Fused:
    """One message's fused score and each side's part of it (what `--explain` prints)."""

    key: str
    score: float
    dense: DenseEvidence | None = None
    words: WordEvidence | None = None
    phrase_rank: int | None = None
    parts: dict[str, float] = field(default_factory=dict)


def evidence_weight(
    matched: list[float], known_idf: float, rarest_idf: float, full_share: float = FULL_EVIDENCE_SHARE
) -> float:
    """How far a word-side hit counts, from the IDFs of the query words it holds (`matched`).

    Two things must both hold for full weight. Coverage: the hit holds at least
    `full_share` of the IDF mass of the query words the index knows (`known_idf`).
    Specificity: its rarest matched word is rare here, measured against `rarest_idf` (the
    IDF of a word in one message), squared so that everyday words fade fast. A serial
    number or a quoted sentence counts in full; "asked", "change" and "account" do not."""
    if not matched or known_idf <= 0 or rarest_idf <= 0:
        return 0.0
    coverage = min(1.0, sum(matched) / (full_share * known_idf))
    specificity = min(1.0, max(matched) / rarest_idf) ** SPECIFICITY_POWER
    return coverage * specificity


def dense_weight(cosine: float, best_cosine: float, sharpness: float = DENSE_SHARPNESS) -> float:
    """How far a dense hit counts: its cosine over the best cosine of the same query, raised
    to `sharpness`. Ranks 28 and 44 differ little under RRF even when their cosines are
    0.46 and 0.23; this keeps the gap a reader would see."""
    if best_cosine <= 0 or cosine <= 0:
        return 0.0
    return min(1.0, cosine / best_cosine) ** sharpness


def fuse_evidence(
    dense: list[tuple[str, DenseEvidence]],
    words: list[tuple[str, WordEvidence]],
    phrase: list[str],
    k: int = RRF_K,
) -> list[Fused]:
    """Weighted reciprocal rank fusion of the dense, word and phrase lists, best first.

    Each list holds (message key, evidence) in its own rank order; ties break by message
    key so the order is stable. Every part of a score is kept for `--explain`."""
    parts: dict[str, dict[str, float]] = {}
    for key, evidence in dense:
        parts.setdefault(key, {})["dense"] = DENSE_WEIGHT * evidence.weight / (k + evidence.rank)
    for key, evidence in words:
        parts.setdefault(key, {})["words"] = WORD_WEIGHT * evidence.weight / (k + evidence.rank)
    for rank, key in enumerate(phrase, start=1):
        parts.setdefault(key, {})["phrase"] = PHRASE_WEIGHT / (k + rank)
    dense_of, words_of = dict(dense), dict(words)
    phrase_of = {key: rank for rank, key in enumerate(phrase, start=1)}
    fused = [
        Fused(key, sum(shares.values()), dense_of.get(key), words_of.get(key), phrase_of.get(key), shares)
        for key, shares in parts.items()
    ]
    return sorted(fused, key=lambda item: (-item.score, item.key))
