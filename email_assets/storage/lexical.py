"""The lexical index: one document per message (subject, sender, cleaned text), ranked by BM25.

Dense vectors miss what words find: a command line, an error string, a name, a sentence
quoted word for word. On the embedded default the index is SQLite FTS5 (porter stemming,
diacritics folded, BM25); on PostgreSQL a weighted tsvector with a GIN index and
`ts_rank`. Rows are written and deleted by the same step as the vectors, and the FTS side
follows the table inside each transaction (triggers, or a generated column), so re-runs,
expunges and retention leave it exact.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from email_assets.storage.database import engine_for
from email_assets.storage.tables import message_locations, search_documents

_QUERY_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 32  # enough for a pasted sentence; bounds the cost of an OR query
_IN_BATCH = 500


@dataclass(frozen=True)
class MessageFilter:
    """What a search may return; every field left None lets everything through."""

    account: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None  # inclusive: the whole day
    from_address: str | None = None
    folder: str | None = None
    has_attachment: bool | None = None
    flagged: bool | None = None  # \\Flagged on the server, in any folder holding the message
    seen: bool | None = None  # \\Seen in any folder; False: unread

    def since_ts(self) -> int | None:
        return int(dt.datetime.combine(self.since, dt.time(), dt.UTC).timestamp()) if self.since else None

    def until_ts(self) -> int | None:
        """Exclusive upper bound: midnight after `until`."""
        if not self.until:
            return None
        return int(dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp())


def query_words(text: str) -> list[str]:
    """The query as plain words, each once: FTS5 and tsquery syntax never reach the parser."""
    seen: dict[str, None] = {}
    for word in _QUERY_WORD.findall(text.lower()):
        seen.setdefault(word, None)
    return list(seen)[:MAX_QUERY_WORDS]


@dataclass(frozen=True)
class TermStatistics:
    """Document frequencies of a query's words and the words each candidate message holds."""

    documents: int  # messages in the index
    frequencies: dict[str, int]  # query word -> messages holding it (0: in none); stop words left out
    matched: dict[str, list[str]]  # message_key -> the query's words it holds, in query order

    def rarest_idf(self) -> float:
        """The IDF of a word held by a single message: the most a word can say here."""
        return math.log(1.0 + (self.documents - 0.5) / 1.5)

    def idf(self, word: str) -> float:
        """BM25's inverse document frequency (always > 0): near 0 for a word in every message,
        largest for a word in none, which is query content no message holds."""
        frequency = self.frequencies.get(word, 0)
        return math.log(1.0 + (self.documents - frequency + 0.5) / (frequency + 0.5))


class LexicalIndex:
    def __init__(self, database_url: str) -> None:
        self.engine = engine_for(database_url)

    def documents_in_partition(self, account: str, day: str) -> dict[str, str]:
        """message_key -> content hash of what is indexed for the partition."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(search_documents.c.message_key, search_documents.c.content_hash).where(
                    search_documents.c.account == account, search_documents.c.day == day
                )
            )
            return dict(rows.all())

    def replace(self, rows: list[dict[str, Any]]) -> None:
        """Index these documents, replacing any earlier version of the same message."""
        with self.engine.begin() as connection:
            for start in range(0, len(rows), _IN_BATCH):
                batch = rows[start : start + _IN_BATCH]
                keys = [row["message_key"] for row in batch]
                connection.execute(sa.delete(search_documents).where(search_documents.c.message_key.in_(keys)))
                connection.execute(sa.insert(search_documents), batch)

    def delete(self, message_keys: Iterable[str]) -> int:
        deleted = 0
        keys = sorted(message_keys)
        with self.engine.begin() as connection:
            for start in range(0, len(keys), _IN_BATCH):
                batch = keys[start : start + _IN_BATCH]
                statement = sa.delete(search_documents).where(search_documents.c.message_key.in_(batch))
                deleted += connection.execute(statement).rowcount or 0
        return deleted

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(search_documents)).scalar_one()

    def allowed_keys(self, where: MessageFilter) -> set[str]:
        """Every indexed message the filter lets through (for filters the vector store cannot apply)."""
        with self.engine.connect() as connection:
            query = sa.select(search_documents.c.message_key).where(*_conditions(where))
            return set(connection.execute(query).scalars())

    def search(self, text: str, limit: int, where: MessageFilter) -> list[tuple[str, float]]:
        """(message_key, score) best first, by BM25 over any of the words; higher is better."""
        words = query_words(text)
        if not words:
            return []
        if self.engine.dialect.name == "sqlite":
            return self._search_fts5(" OR ".join(f'"{word}"' for word in words), limit, where)
        return self._search_tsvector(sa.func.to_tsquery("english", " | ".join(words)), limit, where)

    def search_phrase(self, text: str, limit: int, where: MessageFilter) -> list[tuple[str, float]]:
        """Messages whose own text holds the query's words in its order: the strongest lexical
        evidence, and in a mailbox stripped of quotes it points at the one message that wrote them."""
        words = _QUERY_WORD.findall(text.lower())[:MAX_QUERY_WORDS]
        if len(words) < 2:
            return []
        if self.engine.dialect.name == "sqlite":
            return self._search_fts5('"' + " ".join(words) + '"', limit, where)
        return self._search_tsvector(sa.func.phraseto_tsquery("english", " ".join(words)), limit, where)

    def term_statistics(self, text: str, keys: Iterable[str]) -> TermStatistics:
        """How rare each query word is in the whole index, and which of them each of `keys` holds.

        BM25's sum over "any of the words" lets three common words outscore one rare one by
        rank alone; fusion needs to know what a word-side hit actually matched to weigh it.
        Document frequencies are counted over every indexed message (no filter): how
        informative a word is does not depend on the filter of one search."""
        words = query_words(text)
        keys = sorted(set(keys))
        frequencies: dict[str, int] = {}
        matched: dict[str, list[str]] = {key: [] for key in keys}
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(search_documents)).scalar_one()
            for word in words:
                if self._is_stop_word(connection, word):
                    continue
                condition = self._word_condition(word)
                frequencies[word] = connection.execute(
                    sa.select(sa.func.count()).select_from(self._word_source()).where(condition)
                ).scalar_one()
                if not frequencies[word]:
                    continue
                for start in range(0, len(keys), _IN_BATCH):
                    batch = keys[start : start + _IN_BATCH]
                    statement = (
                        sa.select(search_documents.c.message_key)
                        .select_from(self._word_source())
                        .where(condition, search_documents.c.message_key.in_(batch))
                    )
                    for key in connection.execute(statement).scalars():
                        matched[key].append(word)
        return TermStatistics(total, frequencies, matched)

    def _is_stop_word(self, connection: sa.Connection, word: str) -> bool:
        """PostgreSQL's english configuration drops stop words from the index: such a word is
        no evidence either way (FTS5 indexes every word, and its IDF says how common it is)."""
        if self.engine.dialect.name == "sqlite":
            return False
        return (
            connection.execute(sa.select(sa.func.numnode(sa.func.plainto_tsquery("english", word)))).scalar_one() == 0
        )

    def _word_source(self) -> Any:
        if self.engine.dialect.name == "sqlite":
            fts = sa.table("search_fts", sa.column("rowid"))
            return search_documents.join(fts, fts.c.rowid == search_documents.c.doc_id)
        return search_documents

    def _word_condition(self, word: str) -> Any:
        """One plain word, stemmed as the index stems it."""
        if self.engine.dialect.name == "sqlite":
            return sa.text("search_fts MATCH :word").bindparams(word=f'"{word}"')
        query = sa.func.plainto_tsquery("english", word)
        return sa.literal_column("search_documents.tsv").op("@@")(
            query.op("||")(sa.func.plainto_tsquery("simple", word))
        )

    def _search_fts5(self, match: str, limit: int, where: MessageFilter) -> list[tuple[str, float]]:
        fts = sa.table("search_fts", sa.column("rowid"))
        rank = sa.func.bm25(sa.literal_column("search_fts"), 3.0, 1.0, 1.0)  # subject x3; lower is better
        statement = (
            sa.select(search_documents.c.message_key, (-rank).label("score"))
            .select_from(search_documents.join(fts, fts.c.rowid == search_documents.c.doc_id))
            .where(sa.text("search_fts MATCH :match"), *_conditions(where))
            .order_by(rank)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [(key, float(score)) for key, score in connection.execute(statement, {"match": match})]

    def _search_tsvector(self, query: Any, limit: int, where: MessageFilter) -> list[tuple[str, float]]:
        vector = sa.literal_column("search_documents.tsv")
        score = sa.func.ts_rank(vector, query).label("score")
        statement = (
            sa.select(search_documents.c.message_key, score)
            .where(vector.op("@@")(query), *_conditions(where))
            .order_by(score.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [(key, float(value)) for key, value in connection.execute(statement)]


def has_flag(flag: str) -> sa.ColumnElement[bool]:
    """A stored location carries `flag` (flags are kept sorted and space-joined)."""
    padded = sa.literal(" ") + message_locations.c.flags + sa.literal(" ")
    return padded.contains(f" {flag} ", autoescape=True)


def _conditions(where: MessageFilter) -> list[Any]:
    table = search_documents
    conditions: list[Any] = []
    if where.account:
        conditions.append(table.c.account == where.account)
    if where.from_address:
        conditions.append(table.c.from_address == where.from_address.lower())
    if where.since:
        conditions.append(table.c.date_ts >= where.since_ts())
    if where.until:
        conditions.append(table.c.date_ts < where.until_ts())
    if where.has_attachment is not None:
        conditions.append(table.c.has_attachment.is_(where.has_attachment))
    for flag, wanted in (("\\Flagged", where.flagged), ("\\Seen", where.seen)):
        if wanted is not None:
            carried = sa.exists().where(message_locations.c.message_key == table.c.message_key, has_flag(flag))
            conditions.append(carried if wanted else ~carried)
    if where.folder:
        conditions.append(
            sa.exists().where(
                message_locations.c.message_key == table.c.message_key, message_locations.c.folder == where.folder
            )
        )
    return conditions
