"""`make bench` (hostile): worst per-message parse + clean + chunk, in seconds and MB, hostile and real.

Each hostile message (`email_assets_tests/hostile_cases.py`) runs in a fresh process, so
its peak RSS above the process's own baseline is its memory cost; the real corpus (the
test fixtures, CPython's email test data and the 2,050 linux-raid messages) runs in one
process, timed per message. Target (issue 12): no message over 2 s or 500 MB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

TARGET_SECONDS = 2.0
TARGET_MB = 500
_MEASURE = """
import datetime as dt, json, resource, sys, time
from email_assets.embedding import LocalEmbedder
from email_assets.mail.chunking import chunk_text, context_line
from email_assets.mail.cleaning import clean_email
from email_assets.mail.parsing import parse_message
from email_assets_tests.hostile_cases import CASES
embedder = LocalEmbedder()
embedder.token_offsets("warm the tokenizer")
raw = CASES[sys.argv[1]]()
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
parsed = parse_message(raw, dt.datetime(2026, 11, 20, tzinfo=dt.UTC)).as_row()
cleaned = clean_email(parsed["text_body"], parsed["html_body"])
chunks = chunk_text(cleaned.text, embedder.token_offsets, embedder.max_tokens,
                    context_line(parsed["subject"], parsed["from_address"], None))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": len(raw), "seconds": seconds, "mb": (peak - baseline) / 1024, "chunks": len(chunks),
                  "parse_error": parsed["parse_error"]}))
"""


def measure_hostile(name: str) -> dict:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, name], capture_output=True, text=True, timeout=600, cwd=root
    )
    if result.returncode:
        return {
            "bytes": 0,
            "seconds": float("inf"),
            "mb": float("inf"),
            "chunks": 0,
            "parse_error": result.stderr[-200:],
        }
    return json.loads(result.stdout.strip().splitlines()[-1])


def real_messages() -> list[tuple[str, bytes]]:
    from email_assets_tests.real_mail import all_real_messages

    found = [(str(path.name), path.read_bytes()) for path in all_real_messages()]
    with tarfile.open(Path(__file__).resolve().parent / "data" / "linux-raid.tar.xz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".eml"):
                found.append((member.name, archive.extractfile(member).read()))
    return found


def measure_real() -> tuple[int, str, float, float]:
    import datetime as dt
    import resource

    from email_assets.embedding import LocalEmbedder
    from email_assets.mail.chunking import chunk_text, context_line
    from email_assets.mail.cleaning import clean_email
    from email_assets.mail.parsing import parse_message

    embedder = LocalEmbedder()
    messages = real_messages()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worst_name, worst = "", 0.0
    for name, raw in messages:
        started = time.perf_counter()
        parsed = parse_message(raw, dt.datetime(2026, 11, 20, tzinfo=dt.UTC)).as_row()
        cleaned = clean_email(parsed["text_body"], parsed["html_body"])
        chunk_text(
            cleaned.text, embedder.token_offsets, embedder.max_tokens, context_line(parsed["subject"], None, None)
        )
        seconds = time.perf_counter() - started
        if seconds > worst:
            worst_name, worst = name, seconds
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    return len(messages), worst_name, worst, peak_mb


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from email_assets_tests.hostile_cases import CASES

    print(f"hostile messages, each in a fresh process (target: <= {TARGET_SECONDS} s and <= {TARGET_MB} MB):")
    print(f"  {'case':48} {'bytes':>11} {'seconds':>8} {'MB':>7} {'chunks':>7}")
    worst_seconds = worst_mb = 0.0
    for name in CASES:
        figures = measure_hostile(name)
        worst_seconds, worst_mb = max(worst_seconds, figures["seconds"]), max(worst_mb, figures["mb"])
        note = f"  parse_error: {figures['parse_error']}" if figures["parse_error"] else ""
        print(
            f"  {name:48} {figures['bytes']:>11,} {figures['seconds']:>8.3f} {figures['mb']:>7.1f} "
            f"{figures['chunks']:>7}{note}"
        )
    count, worst_name, worst_real, real_mb = measure_real()
    print(f"real mail: {count} messages, worst {worst_real:.3f} s ({worst_name}), peak rise {real_mb:.1f} MB in all")
    met = max(worst_seconds, worst_real) <= TARGET_SECONDS and worst_mb <= TARGET_MB
    print(
        f"worst: {max(worst_seconds, worst_real):.3f} s, {worst_mb:.1f} MB per message: {'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
