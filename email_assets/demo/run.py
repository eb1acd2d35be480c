"""`make demo`: a throwaway Dovecot with a generated mailbox, synced end to end, then searched.

Everything lands under ./data/demo (embedded SQLite, embedded Chroma, a Dagster home),
so `DAGSTER_HOME=data/demo/dagster_home dagster dev` shows the runs afterwards.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEMO_DIR = Path("data/demo").resolve()
# Not in the data dir, nor under the clone: the data dir is private (0700), the clone may sit
# in a directory only its owner can enter (/root), and the mail server reads its mailboxes as
# an unprivileged user through a world-traversable path, short enough for its sockets (108 bytes).
MAIL_SERVER_DIR = Path(tempfile.gettempdir()) / f"email-assets-demo-mail-{os.getuid()}"
ACCOUNT = "demo"
DAYS = 14
QUERY = "why did the database failover not happen during the outage?"


def _prepare_environment() -> None:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    shutil.rmtree(MAIL_SERVER_DIR, ignore_errors=True)
    dagster_home = DEMO_DIR / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[2] / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["EMAIL_ASSETS_DATA_DIR"] = str(DEMO_DIR)
    os.environ.setdefault("EMAIL_ASSETS_RETENTION_DAYS", "30")
    os.environ.pop("EMAIL_ASSETS_DATABASE_URL", None)
    os.environ.pop("EMAIL_ASSETS_CHROMA", None)
    if not os.environ.get("EMAIL_ASSETS_FERNET_KEYS"):
        from email_assets.credentials import generate_key

        os.environ["EMAIL_ASSETS_FERNET_KEYS"] = generate_key()
    # Kept (owner-only) so `dagster dev` on the demo data can decrypt the demo account.
    key_file = DEMO_DIR / "fernet.key"
    key_file.write_text(os.environ["EMAIL_ASSETS_FERNET_KEYS"])
    key_file.chmod(0o600)
    _write_env_script(DEMO_DIR / "env.sh")


def _write_env_script(path: Path) -> None:
    """`source data/demo/env.sh`: the shell then reads the demo's stores, as `make ui` does.

    Without it the CLI would open the default data dir, an empty store, and every search
    would be an honest but useless "nothing".
    """
    venv_bin = Path(sys.executable).parent
    path.write_text(
        "# The demo's environment: `source data/demo/env.sh`, then `email-assets search ...` or `dagster dev`.\n"
        f"export DAGSTER_HOME={DEMO_DIR / 'dagster_home'}\n"
        f"export EMAIL_ASSETS_DATA_DIR={DEMO_DIR}\n"
        f'export EMAIL_ASSETS_FERNET_KEYS="$(cat {DEMO_DIR / "fernet.key"})"\n'
        "export EMAIL_ASSETS_RETENTION_DAYS=30\n"
        "export HF_HUB_OFFLINE=1\n"
        f'export PATH="{venv_bin}:$PATH"\n'
    )


def main() -> int:
    _prepare_environment()
    import dagster as dg

    from email_assets import cli
    from email_assets.defs.materialize import materialize_partitions
    from email_assets.demo.dovecot import make_server
    from email_assets.demo.sample_mailbox import generate_mailbox

    started = time.monotonic()
    mailbox = generate_mailbox(days=DAYS)
    with make_server({"demo": "demo-password-not-secret"}, root=MAIL_SERVER_DIR) as server:
        for folder in ("INBOX", "Sent"):
            server.append("demo", [(m.raw, m.internaldate) for m in mailbox if m.folder == folder], folder=folder)
        print(f"Dovecot on 127.0.0.1:{server.imaps_port} (TLS) with {len(mailbox)} messages over {DAYS} days")
        sys.stdin = io.StringIO("demo-password-not-secret\n")
        code = cli.main(
            [
                "accounts",
                "add",
                ACCOUNT,
                "--host",
                server.host,
                "--port",
                str(server.imaps_port),
                "--username",
                "demo",
                "--password-stdin",
                "--ca-file",
                str(server.ca_file),
            ]
        )
        sys.stdin = sys.__stdin__
        if code:
            return code
        today = dt.datetime.now(dt.UTC).date()
        days = [today - dt.timedelta(days=offset) for offset in range(DAYS - 1, -1, -1)]
        with dg.DagsterInstance.get() as instance:
            for day, result in zip(
                days, materialize_partitions(instance, ACCOUNT, days, log_level="WARNING"), strict=True
            ):
                counts = {}
                for event in result.get_asset_materialization_events():
                    materialization = event.event_specific_data.materialization
                    counts[materialization.asset_key.to_user_string()] = materialization.metadata
                raw = counts["raw_messages"]
                embeddings = counts["email_embeddings"]
                print(
                    f"  {ACCOUNT}|{day}: fetched {raw['fetched'].value} messages ({raw['bytes'].value} bytes), "
                    f"{embeddings['chunks'].value} chunks, {embeddings['embedded'].value} embedded"
                )
    print(f"\nAll four assets materialized for {DAYS} partitions in {time.monotonic() - started:.1f}s.")
    print(f'\n$ email-assets search "{QUERY}" -k 3')
    code = cli.main(["search", QUERY, "-k", "3"])
    print(
        "\nNext: `make ui` opens the Dagster UI on this data (http://127.0.0.1:3000);"
        " `source data/demo/env.sh` points email-assets at it."
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
