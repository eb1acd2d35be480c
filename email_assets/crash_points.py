"""Named places where the reliability tests kill the process, to prove a run killed there loses nothing.

`EMAIL_ASSETS_CRASH_AT=name` (or `name:N`, the N-th time the point is reached) sends
SIGKILL to the process at that point: no cleanup, no `finally`, exactly what an OOM kill
or a pulled plug does. Unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def reached(name: str) -> None:
    wanted = os.environ.get("EMAIL_ASSETS_CRASH_AT")
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
