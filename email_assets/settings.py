"""Configuration from the environment, read once per process (the variables are listed in the README).

Plain Python so that the CLI, the Dagster resources and the tests share one reading of
the same variables; `dagster dev` also loads `.env` into the environment first.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from email_assets.errors import ConfigurationError, UserError

DEFAULT_START_DATE = "2024-01-01"
DEFAULT_RETENTION_DAYS = 30
DATA_DIR_VARIABLE = "EMAIL_ASSETS_DATA_DIR"
SQLITE_FILE = "email_assets.sqlite"  # the embedded database, in the data dir
PRIVATE_DIRECTORY = 0o700


def data_dir() -> Path:
    """Where embedded stores live: `EMAIL_ASSETS_DATA_DIR`, else the XDG data directory.

    Not the working directory: the CLI, `dagster dev` and run workers may start in
    different places and must all find the same stores.
    """
    configured = os.environ.get(DATA_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "email_assets"


def private_directory(path: Path, variable: str = DATA_DIR_VARIABLE) -> Path:
    """Create `path` readable by its owner only (0700), since it holds mail, and take group
    and other access away from one an earlier release made 0755. A path that cannot be a
    directory is one line naming `variable`, the setting that chose it."""
    try:
        path.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
        status = path.stat()
        if status.st_mode & 0o077 and status.st_uid == os.geteuid():
            path.chmod(stat.S_IMODE(status.st_mode) & PRIVATE_DIRECTORY)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigurationError(
            f"cannot use {path} as a directory ({reason}): set {variable} to a directory you can write"
        ) from None
    return path


def database_url() -> str:
    url = os.environ.get("EMAIL_ASSETS_DATABASE_URL")
    if url:
        return url
    path = private_directory(data_dir()) / SQLITE_FILE
    return f"sqlite:///{path}"


def require_store() -> None:
    """For commands that only read: the configured store must exist already.

    Opening it would create an empty one at a mistyped data dir (and answer "nothing" for
    ever) instead of saying that nothing is there. A server database is not created by
    opening it, so only an SQLite file is checked.
    """
    configured = os.environ.get("EMAIL_ASSETS_DATABASE_URL")
    if configured:
        try:
            url = sa.make_url(configured)
        except (sa.exc.ArgumentError, ValueError):  # a port that is not a number is a ValueError
            return  # opening it gives the one-line error about the URL
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return
        path, where = Path(url.database), " (EMAIL_ASSETS_DATABASE_URL)"
    else:
        named = DATA_DIR_VARIABLE if os.environ.get(DATA_DIR_VARIABLE) else f"default: {DATA_DIR_VARIABLE} unset"
        path, where = data_dir() / SQLITE_FILE, f": nothing was ever stored in the data dir {data_dir()} ({named})"
    if not path.is_file():
        raise UserError(
            f"no store at {path}{where}; set {DATA_DIR_VARIABLE} or EMAIL_ASSETS_DATABASE_URL "
            "to the store you filled, or add an account to start one"
        )


def chroma_location() -> str:
    location = os.environ.get("EMAIL_ASSETS_CHROMA")
    if location:
        return location
    return str(private_directory(data_dir()) / "chroma")


def embedder_spec() -> str:
    return os.environ.get("EMAIL_ASSETS_EMBEDDER", "local")


def retention_days(raw: str | None = None) -> int:
    """EMAIL_ASSETS_RETENTION_DAYS, or `raw` where a resource was configured with it."""
    if raw is None:
        raw = os.environ.get("EMAIL_ASSETS_RETENTION_DAYS", str(DEFAULT_RETENTION_DAYS))
    try:
        days = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"EMAIL_ASSETS_RETENTION_DAYS must be a whole number of days (0 keeps all), got {raw!r}"
        ) from None
    if days < 0:
        raise ConfigurationError("EMAIL_ASSETS_RETENTION_DAYS must be 0 (keep all) or positive")
    return days


def sensor_interval_seconds() -> int:
    """EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS: how often the high-water sensor polls (default 60)."""
    raw = os.environ.get("EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS", "60")
    if not raw.isdigit() or int(raw) < 5:
        raise ConfigurationError(f"EMAIL_ASSETS_SENSOR_INTERVAL_SECONDS must be a whole number >= 5, got {raw!r}")
    return int(raw)


def sensor_concurrency() -> int:
    """EMAIL_ASSETS_SENSOR_CONCURRENCY: accounts the sensor polls at once (default 16)."""
    raw = os.environ.get("EMAIL_ASSETS_SENSOR_CONCURRENCY", "16")
    if not raw.isdigit() or not 1 <= int(raw) <= 256:
        raise ConfigurationError(f"EMAIL_ASSETS_SENSOR_CONCURRENCY must be a whole number from 1 to 256, got {raw!r}")
    return int(raw)


def flag_sweep_seconds() -> int:
    """EMAIL_ASSETS_FLAG_SWEEP_SECONDS: on a server without CONDSTORE, how often the sensor
    reads every flag of a folder to find flag changes (default 3600; 0: every tick)."""
    raw = os.environ.get("EMAIL_ASSETS_FLAG_SWEEP_SECONDS", "3600")
    if not raw.isdigit():
        raise ConfigurationError(f"EMAIL_ASSETS_FLAG_SWEEP_SECONDS must be a whole number of seconds, got {raw!r}")
    return int(raw)


def max_days_per_run() -> int:
    """EMAIL_ASSETS_MAX_DAYS_PER_RUN: the most account x day partitions one backfill run takes."""
    raw = os.environ.get("EMAIL_ASSETS_MAX_DAYS_PER_RUN", "31")
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"EMAIL_ASSETS_MAX_DAYS_PER_RUN must be a positive whole number, got {raw!r}")
    return int(raw)


def max_message_bytes() -> int:
    """EMAIL_ASSETS_MAX_MESSAGE_MB: the largest message a sync keeps (default 64); a larger
    one is read past, not held, and counted as a failure of its day."""
    raw = os.environ.get("EMAIL_ASSETS_MAX_MESSAGE_MB", "64")
    if not raw.isdigit() or not 1 <= int(raw) <= 2048:
        raise ConfigurationError(f"EMAIL_ASSETS_MAX_MESSAGE_MB must be a whole number from 1 to 2048, got {raw!r}")
    return int(raw) << 20


def keep_expunged(raw: str | None = None) -> bool:
    """EMAIL_ASSETS_KEEP_EXPUNGED=1 (or `raw`) keeps mail deleted on the server (default: mirror it)."""
    if raw is None:
        raw = os.environ.get("EMAIL_ASSETS_KEEP_EXPUNGED", "0")
    return raw.strip().lower() in {"1", "true", "yes"}


def start_date(today: dt.date | None = None) -> str:
    """The first daily partition: EMAIL_ASSETS_START_DATE, else the first day the retention
    window keeps, else (keep-all) DEFAULT_START_DATE.

    Every account gets every day from here on, so a start far before the data multiplies
    the partitions the UI, backfills and automation evaluate (a 30-day window is 31 per
    account, not 1,000+).
    """
    raw = os.environ.get("EMAIL_ASSETS_START_DATE")
    if raw:
        try:
            dt.date.fromisoformat(raw)
        except ValueError:
            raise ConfigurationError(f"EMAIL_ASSETS_START_DATE must be a date like 2024-01-01, got {raw!r}") from None
        return raw
    oldest = RetentionWindow(retention_days()).oldest_kept(today)
    return oldest.isoformat() if oldest else DEFAULT_START_DATE


@dataclass(frozen=True)
class RetentionWindow:
    """The days of mail every asset keeps; `days == 0` keeps everything."""

    days: int

    def oldest_kept(self, today: dt.date | None = None) -> dt.date | None:
        if self.days == 0:
            return None
        today = today or dt.datetime.now(dt.UTC).date()
        return today - dt.timedelta(days=self.days - 1)

    def keeps(self, day: dt.date, today: dt.date | None = None) -> bool:
        oldest = self.oldest_kept(today)
        return oldest is None or day >= oldest
