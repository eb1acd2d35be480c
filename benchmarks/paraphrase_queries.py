"""Hand-written paraphrase queries over the linux-raid corpus (`benchmarks/data/`).

Each record in `data/paraphrase_queries.jsonl` is a query a person might type months later
to find one message again, written by reading that message (see `data/PARAPHRASE_QUERIES.md`).
Fields: `query`, `style` (question | problem | fact), `gold_message_id` (Message-ID, no angle
brackets), `gold_file` (the archive member name, the key `search_eval.py` ranks by),
`gold_thread` (the manifest's `thread_id`: the Message-ID of the thread's earliest message)
and `note` (what the gold message says, for a reviewer).

`python -m benchmarks.paraphrase_queries` runs `check()`: every gold exists in the corpus and
matches its file, the thread key agrees with the manifest and with the message's parent chain,
no query shares a run of 4 consecutive words with its gold (subject + every decoded text part),
no query repeats, at most 2 queries per thread; then counts by style. Standard library only.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import sys
import tarfile
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
QUERIES = DATA / "paraphrase_queries.jsonl"
ARCHIVE = DATA / "linux-raid.tar.xz"
STYLES = ("question", "problem", "fact")
RUN = 4  # no run of this many consecutive words may be shared with the gold message
MAX_PER_THREAD = 2
FIELDS = ("query", "style", "gold_message_id", "gold_file", "gold_thread", "note")
_TOKEN = re.compile(r"[a-z0-9]+")


def load(path: Path = QUERIES) -> list[dict]:
    """The query records, in file order."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def runs(words: list[str], n: int = RUN) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def message_text(raw: bytes) -> str:
    """Subject plus every text part (plain and HTML, decoded), as broad as possible so the
    overlap rule is strict: anything a reader or an indexer could see counts."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    texts = [str(message.get("Subject", ""))]
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        try:
            texts.append(part.get_content())
        except (LookupError, ValueError, AssertionError):
            texts.append(part.get_payload(decode=True).decode("utf-8", "replace"))
    return "\n".join(texts)


def load_corpus(files: set[str] | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """(manifest by file, text by file) read in place from the archive, as search_eval does;
    texts only for `files` when given."""
    manifest: dict[str, dict] = {}
    texts: dict[str, str] = {}
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            if not member.isfile():
                continue
            name = os.path.basename(member.name)
            if name == "manifest.jsonl":
                data = archive.extractfile(member).read().decode()
                manifest = {row["file"]: row for row in map(json.loads, data.splitlines())}
            elif name.endswith(".eml") and (files is None or name in files):
                texts[name] = message_text(archive.extractfile(member).read())
    return manifest, texts


def _size_bucket(chars: int) -> str:
    return "<1k" if chars < 1000 else "1-5k" if chars < 5000 else "5-20k" if chars < 20000 else ">=20k"


def check(path: Path = QUERIES) -> list[str]:
    """Verify the query file; print counts; return the problems (empty when clean)."""
    records = load(path)
    manifest, texts = load_corpus({r.get("gold_file", "") for r in records})
    by_id = {row["message_id"]: row for row in manifest.values()}
    problems: list[str] = []
    seen: dict[str, int] = {}
    per_thread: Counter[str] = Counter()
    for number, record in enumerate(records, start=1):
        where = f"line {number} ({record.get('query', '')[:50]!r})"
        missing = [field for field in FIELDS if not str(record.get(field, "")).strip()]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        if record["style"] not in STYLES:
            problems.append(f"{where}: style {record['style']!r} not in {STYLES}")
        key = " ".join(tokens(record["query"]))
        if key in seen:
            problems.append(f"{where}: duplicate of line {seen[key]}")
        seen.setdefault(key, number)
        row = by_id.get(record["gold_message_id"])
        if row is None:
            problems.append(f"{where}: gold Message-ID not in the corpus")
            continue
        if row["file"] != record["gold_file"]:
            problems.append(f"{where}: gold Message-ID is {row['file']}, not {record['gold_file']}")
        if row["thread_id"] != record["gold_thread"]:
            problems.append(f"{where}: gold_thread differs from the manifest's thread_id {row['thread_id']}")
        if record["gold_thread"] not in by_id or by_id[record["gold_thread"]]["thread_id"] != record["gold_thread"]:
            problems.append(f"{where}: gold_thread is not the root message of a corpus thread")
        # the parent chain (In-Reply-To / References, resolved in the manifest) stays in the thread
        step, hops = row, 0
        while step.get("parent_in_set") and hops < 500:
            step, hops = manifest[step["parent_in_set"]], hops + 1
            if step["thread_id"] != record["gold_thread"]:
                problems.append(f"{where}: ancestor {step['file']} is in another thread")
                break
        per_thread[record["gold_thread"]] += 1
        shared = runs(tokens(record["query"])) & runs(tokens(texts[row["file"]]))
        if shared:
            listed = "; ".join(" ".join(run) for run in sorted(shared))
            problems.append(f"{where}: shares {RUN}-word run(s) with the gold: {listed}")
    for thread, count in per_thread.items():
        if count > MAX_PER_THREAD:
            problems.append(f"thread {thread}: {count} queries (max {MAX_PER_THREAD})")
    lengths = [len(tokens(r["query"])) for r in records]
    styles = Counter(r.get("style") for r in records)
    golds = {r.get("gold_file") for r in records}
    print(f"{len(records)} queries, {len(per_thread)} threads, {len(golds)} gold messages")
    print("by style: " + ", ".join(f"{s} {styles[s]} ({styles[s] / max(1, len(records)):.0%})" for s in STYLES))
    print(
        f"query words: min {min(lengths, default=0)}, max {max(lengths, default=0)}, "
        f"short (<=6) {sum(n <= 6 for n in lengths)}, 8-20 {sum(8 <= n <= 20 for n in lengths)}"
    )
    gold_rows = [by_id[r["gold_message_id"]] for r in records if r.get("gold_message_id") in by_id]
    sizes = sorted(len(texts[row["file"]]) for row in gold_rows)
    if sizes:
        buckets = Counter(_size_bucket(n) for n in sizes)
        print(
            f"gold text chars: min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]}; "
            + ", ".join(f"{k} {buckets[k]}" for k in ("<1k", "1-5k", "5-20k", ">=20k"))
        )
    for problem in problems:
        print("PROBLEM", problem)
    print("check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return problems


if __name__ == "__main__":
    sys.exit(1 if check() else 0)
