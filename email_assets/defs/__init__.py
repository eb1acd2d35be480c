"""Dagster wiring over the plain-Python pipeline.

Two features this layer relies on are marked preview/beta in Dagster 1.13 (pinned in
pyproject.toml, with end-to-end tests through the daemon): partitioned asset checks and
`backfill_policy`. Their notices would print on every code-location load and every run
and tell an operator nothing they can act on, so exactly those two messages are silenced.
"""

import warnings

import dagster as dg

warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
