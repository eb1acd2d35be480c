"""`email-assets`: keys, accounts, search, status, backfills and trace from the shell.

Every user mistake ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence

from email_assets import settings
from email_assets.account_access import endpoint_of, login_secret
from email_assets.credentials import SecretBox, generate_key
from email_assets.embedding import embedder_from_spec
from email_assets.errors import UserError
from email_assets.mail.imap_connect import DEFAULT_PORTS, SECURITY_MODES, connect
from email_assets.storage.accounts import Account, AccountStore, validate_account_name

PROGRAM = "email-assets"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage + message; keep one line
        raise UserError(message)


def _parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number: {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROGRAM, description="A searchable, embedded, traceable copy of IMAP mailboxes.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    keys = commands.add_parser("keys", help="Fernet keys for account secrets").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    keys.add_parser("generate", help="print a new key for EMAIL_ASSETS_FERNET_KEYS")
    keys.add_parser("rotate", help="re-encrypt every stored secret with the first key")

    accounts = commands.add_parser("accounts", help="register and inspect IMAP accounts").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = accounts.add_parser("add", help="register an account (the password is read from stdin)")
    add.add_argument("name", help="slug used as the partition key, e.g. work")
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=_positive)
    add.add_argument("--username", required=True)
    login = add.add_mutually_exclusive_group(required=True)
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (or app password) from the first line of stdin",
    )
    login.add_argument("--oauth2-token-env", metavar="NAME", help="XOAUTH2 with a bearer token from this variable")
    login.add_argument(
        "--oauth2-token-command", metavar="CMD", help="XOAUTH2 with a bearer token printed by this command"
    )
    add.add_argument(
        "--security",
        choices=SECURITY_MODES,
        default="ssl",
        help="ssl (implicit TLS, default), starttls, or plain (unencrypted, only when asked)",
    )
    add.add_argument("--folders", help="comma-separated folders; default: all but Junk and Trash")
    add.add_argument("--max-connections", type=_positive, default=2)
    add.add_argument("--ca-file", help="PEM file of CAs to trust for this server's certificate")
    add.add_argument("--no-verify", action="store_true", help="store without checking the login")
    listing = accounts.add_parser("list", help="accounts with their health")
    listing.add_argument("--json", action="store_true")
    test = accounts.add_parser("test", help="check that an account can log in")
    test.add_argument("name")
    remove = accounts.add_parser("remove", help="forget an account (its stored mail stays until retention)")
    remove.add_argument("name")

    search = commands.add_parser("search", help="best matching messages (meaning and words, fused), grouped by thread")
    search.add_argument("text")
    search.add_argument("--account")
    search.add_argument("--since", type=_parse_day)
    search.add_argument("--until", type=_parse_day)
    search.add_argument("--from", dest="sender", help="sender address")
    search.add_argument("--folder", help="only messages stored in this folder, e.g. INBOX or Sent")
    search.add_argument("--has-attachment", action="store_true", help="only messages with an attachment")
    search.add_argument("--flagged", action="store_true", help="only messages flagged (starred) on the server")
    search.add_argument("--unread", action="store_true", help="only messages not yet seen on the server")
    search.add_argument("-k", type=_positive, default=5, help="how many messages (or chunks with --chunks)")
    search.add_argument("--chunks", action="store_true", help="the nearest chunks by meaning alone, one per line")
    search.add_argument("--json", action="store_true", help="one JSON object per line")

    status = commands.add_parser("status", help="which data dir, database and Chroma are read, and what they hold")
    status.add_argument("--json", action="store_true")

    backfill = commands.add_parser(
        "backfill", help="sync, parse, clean and embed a range of days of one account, run by the daemon"
    )
    backfill.add_argument("account")
    backfill.add_argument("--since", type=_parse_day, required=True, help="first day (UTC), YYYY-MM-DD")
    backfill.add_argument("--until", type=_parse_day, help="last day (UTC), inclusive; default: today")
    backfill.add_argument("--wait", action="store_true", help="follow its progress until it finishes")

    trace = commands.add_parser("trace", help="a chunk's lineage, raw bytes to vector")
    trace.add_argument("chunk_id")
    trace.add_argument("--json", action="store_true")
    return parser


def _register_partition(name: str, add: bool) -> str | None:
    """Add or delete the account's dynamic partition in the instance under DAGSTER_HOME."""
    if not os.environ.get("DAGSTER_HOME"):
        return "DAGSTER_HOME is not set: the sensor registers the partition on its next tick"
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        if add:
            instance.add_dynamic_partitions("accounts", [name])
        elif instance.has_dynamic_partition("accounts", name):
            instance.delete_dynamic_partition("accounts", name)
    return None


async def _check_login(account: Account, secret: str) -> list[str]:
    async with connect(endpoint_of(account, timeout=20), account.username, secret, account.mechanism) as session:
        return account.folders or await session.default_folders()


def cmd_keys(args: argparse.Namespace) -> None:
    if args.action == "generate":
        print(generate_key())
        return
    count = AccountStore(settings.database_url()).rotate_secrets(SecretBox.from_environment())
    print(f"re-encrypted {count} account secret(s) with the first key")


def cmd_accounts(args: argparse.Namespace) -> None:
    store = AccountStore(settings.database_url())
    if args.action == "add":
        validate_account_name(args.name)
        box = SecretBox.from_environment()
        token_source = None
        if args.oauth2_token_env:
            token_source = f"env:{args.oauth2_token_env}"
        elif args.oauth2_token_command:
            token_source = f"command:{args.oauth2_token_command}"
        password = "" if token_source else sys.stdin.readline().rstrip("\r\n")
        if not password and not token_source:
            raise UserError('no password on stdin: pipe it in, e.g. `printf %s "$PW" | email-assets accounts add ...`')
        folders = [folder.strip() for folder in (args.folders or "").split(",") if folder.strip()]
        account = Account(
            name=args.name,
            host=args.host,
            port=args.port or DEFAULT_PORTS[args.security],
            username=args.username,
            security=args.security,
            folders=folders,
            max_connections=args.max_connections,
            ca_file=os.path.abspath(args.ca_file) if args.ca_file else None,
            encrypted_secret=box.encrypt(password),
            mechanism="xoauth2" if token_source else "login",
            token_source=token_source,
        )
        if args.ca_file and not os.path.isfile(args.ca_file):
            raise UserError(f"--ca-file {args.ca_file!r} does not exist")
        found = None if args.no_verify else asyncio.run(_check_login(account, login_secret(account, box)))
        store.add(account)
        note = _register_partition(account.name, add=True)
        verified = f"login verified, folders: {', '.join(found)}" if found is not None else "login not verified"
        print(f"added account {account.name} ({account.username} on {account.host}:{account.port}); {verified}")
        if note:
            print(note, file=sys.stderr)
    elif args.action == "list":
        rows = [
            {
                "name": a.name,
                "host": a.host,
                "port": a.port,
                "username": a.username,
                "security": a.security,
                "folders": a.folders or "(all but Junk/Trash)",
                "max_connections": a.max_connections,
                "consecutive_failures": a.consecutive_failures,
                "last_error": a.last_error,
                "last_success_at": a.last_success_at.isoformat() if a.last_success_at else None,
            }
            for a in store.list()
        ]
        if args.json:
            for row in rows:
                print(json.dumps(row))
        elif not rows:
            print("no accounts: add one with `email-assets accounts add`")
        for row in rows if not args.json else []:
            health = (
                "ok"
                if not row["consecutive_failures"]
                else f"failing ({row['consecutive_failures']} in a row: {row['last_error']})"
            )
            print(f"{row['name']}\t{row['username']}@{row['host']}:{row['port']}\t{row['security']}\t{health}")
    elif args.action == "test":
        account = store.get(args.name)
        folders = asyncio.run(_check_login(account, login_secret(account, SecretBox.from_environment())))
        print(f"{account.name}: login ok, folders: {', '.join(folders)}")
    elif args.action == "remove":
        store.remove(args.name)
        note = _register_partition(args.name, add=False)
        print(f"removed account {args.name}")
        if note:
            print(note, file=sys.stderr)


def _print_hit(hit: dict, indent: str = "") -> None:
    date = hit["date"][:10] if hit["date"] else "?"
    print(
        f"{indent}{hit['score']:.3f}  {date:10}  {hit['from'] or '?'}  {hit['subject'] or '(no subject)'}  "
        f"[{hit['chunk_id']}]"
    )
    print(f"{indent}       {' '.join(hit['text'].split())[:200]}")


def cmd_search(args: argparse.Namespace) -> None:
    from email_assets.search import group_by_thread, search_chunks, search_messages
    from email_assets.status import read_status
    from email_assets.storage.lexical import MessageFilter

    if args.since and args.until and args.since > args.until:
        raise UserError("--since is after --until")
    embedder_from_spec(settings.embedder_spec())  # a bad EMAIL_ASSETS_EMBEDDER is an error even on an empty store
    store = read_status()
    if args.account and store.account(args.account) is None:
        known = ", ".join(account.name for account in store.accounts) or "none"
        raise UserError(f"no account named {args.account!r} in {store.database} (accounts: {known})")
    note = store.empty_store_note()
    if note:
        print(note, file=sys.stderr)
        hits = []
    else:
        where = MessageFilter(
            account=args.account,
            since=args.since,
            until=args.until,
            from_address=args.sender,
            folder=args.folder,
            has_attachment=True if args.has_attachment else None,
            flagged=True if args.flagged else None,
            seen=False if args.unread else None,
        )
        hits = (search_chunks if args.chunks else search_messages)(args.text, k=args.k, where=where)
    groups = [[hit] for hit in hits] if args.chunks else group_by_thread(hits)
    for group in groups:
        for position, hit in enumerate(group):
            if args.json:
                print(json.dumps(hit, ensure_ascii=False))
            else:
                _print_hit(hit, indent="  + " if position else "")
    if not hits and not args.json:
        print("no matches")


def cmd_status(args: argparse.Namespace) -> None:
    from email_assets.status import format_status, read_status

    store = read_status()
    print(json.dumps(store.as_json()) if args.json else format_status(store))


def cmd_backfill(args: argparse.Namespace) -> None:
    if not os.environ.get("DAGSTER_HOME"):
        raise UserError("DAGSTER_HOME is not set: a backfill is recorded in the instance the daemon runs")
    import dagster as dg

    from email_assets.defs.backfills import follow_backfill, launch_backfill

    until = args.until or dt.datetime.now(dt.UTC).date()
    with dg.DagsterInstance.get() as instance:
        backfill_id = launch_backfill(instance, args.account, args.since, until)
        print(f"backfill {backfill_id}: {args.account} {args.since}..{until}, runs launched by dagster-daemon")
        print(f"  in the UI: /runs/b/{backfill_id}")
        if args.wait:
            final = follow_backfill(instance, backfill_id, lambda progress: print(progress.describe(), flush=True))
            if final.status not in {"COMPLETED_SUCCESS", "COMPLETED"}:
                raise UserError(f"backfill {backfill_id} ended {final.status.lower()}")


def cmd_trace(args: argparse.Namespace) -> None:
    from email_assets.trace import format_trace, trace_chunk

    lineage = trace_chunk(args.chunk_id)
    print(json.dumps(lineage, default=str, ensure_ascii=False, indent=2) if args.json else format_trace(lineage))


HANDLERS = {
    "keys": cmd_keys,
    "accounts": cmd_accounts,
    "search": cmd_search,
    "status": cmd_status,
    "backfill": cmd_backfill,
    "trace": cmd_trace,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        HANDLERS[args.command](args)
    except UserError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
