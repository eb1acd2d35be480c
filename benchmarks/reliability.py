"""`make reliability`: the figures the reliability suite recorded, one line per case and totals.

The suite (hostile mail through every asset, SIGKILLs at crash points, two runs of one
partition at once, the soak under the daemon; SQLite and PostgreSQL) appends one JSON line
per case to the report file; this prints them and their totals, then exits non-zero if
anything was lost, duplicated, leaked or crashed. Cases that measure time and memory (the
hostile-server ones) add their seconds and peak traced MB; the worst of each is printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIELDS = ("cases", "lost", "duplicated", "leaked", "crashed")
WORST = ("seconds", "peak_mb")  # the worst over the cases, not a total


def main(path: str) -> int:
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        print(f"no figures in {path}: did the suite run?")
        return 1
    print(f"{'case':<58} " + " ".join(f"{name:>10}" for name in (*FIELDS, *WORST)))
    totals = dict.fromkeys(FIELDS, 0)
    worst = dict.fromkeys(WORST, 0.0)
    for figures in lines:
        cells = []
        for name in FIELDS:
            value = figures.get(name)
            cells.append(f"{'-' if value is None else value:>10}")
            totals[name] += value or 0
        for name in WORST:
            value = figures.get(name)
            cells.append(f"{'-' if value is None else value:>10}")
            worst[name] = max(worst[name], value or 0.0)
        print(f"{figures['suite'][:58]:<58} " + " ".join(cells))
    print(
        f"{'total (worst seconds and peak MB)':<58} "
        + " ".join(f"{value:>10}" for value in (*totals.values(), *worst.values()))
    )
    print("('-': not at stake in that case; the hostile and soak cases grep logs and events for the password)")
    bad = totals["lost"] + totals["duplicated"] + totals["leaked"] + totals["crashed"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
