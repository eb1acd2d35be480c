"""`email-assets`: keys, accounts, search, status, backfills and trace from the shell.

Every user mistake ends in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa

from email_assets import settings
from email_assets.account_access import endpoint_of, login_secret
from email_assets.credentials import SecretBox, generate_key
from email_assets.embedding import embedder_from_spec
from email_assets.errors import UserError
from email_assets.mail.imap_connect import DEFAULT_PORTS, SECURITY_MODES, connect
from email_assets.storage.accounts import ACCOUNT_NAME, Account, AccountStore, validate_account_name
from email_assets.terminal import has_control, json_line, safe_text

PROGRAM = "email-assets"
MAX_RESULTS = 1000  # -k: more than a terminal can show, small enough to bound the query's cost
MAX_FOLDERS_SHOWN = 8  # in the error naming a folder the server does not have
SQLITE_FILE = "email_assets.sqlite"  # settings.database_url()'s file in the data dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage + message; keep one line
        raise UserError(message)


def _parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _positive(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:  # isdigit() alone takes "²"
        raise argparse.ArgumentTypeError(f"must be a positive whole number: {value!r}")
    return int(value)


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """A bounded count: an unbounded -k or port reaches a library as an overflow traceback."""

    def parse(value: str) -> int:
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}: {value!r}")
        return int(value)

    return parse


def _one_line(value: str) -> str:
    """A filter, host or login: empty would silently drop the filter, CR/LF would fake a line
    (or an IMAP command) and neither is ever part of a real value."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out instead)")
    if has_control(value):
        raise argparse.ArgumentTypeError(f"must be one line without control characters: {safe_text(repr(value))}")
    return value


def _query(value: str) -> str:
    """The search text: an empty one would rank every message the same and return arbitrary hits."""
    if not value.strip():
        raise argparse.ArgumentTypeError("the search text is empty: say what to look for")
    return value


def _account_name(value: str) -> str:
    """The slug of a new account; `fullmatch`, as `$` would also accept `work\\n`."""
    if not ACCOUNT_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{safe_text(repr(value))} is not a slug: use lowercase letters, digits, '-' and '_' (max 64)"
        )
    return value


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
    add.add_argument("name", type=_account_name, help="slug used as the partition key, e.g. work")
    add.add_argument("--host", required=True, type=_one_line)
    add.add_argument("--port", type=_whole_number(1, 65535))
    add.add_argument("--username", required=True, type=_one_line)
    login = add.add_mutually_exclusive_group(required=True)
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (or app password) from the first line of stdin; prompted without echo on a terminal",
    )
    login.add_argument(
        "--oauth2-token-env", metavar="NAME", type=_one_line, help="XOAUTH2 with a bearer token from this variable"
    )
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
    search.add_argument("text", type=_query)
    search.add_argument("--account", type=_one_line)
    search.add_argument("--since", type=_parse_day)
    search.add_argument("--until", type=_parse_day)
    search.add_argument("--from", dest="sender", type=_one_line, help="sender address")
    search.add_argument("--folder", type=_one_line, help="only messages stored in this folder, e.g. INBOX or Sent")
    search.add_argument("--has-attachment", action="store_true", help="only messages with an attachment")
    search.add_argument("--flagged", action="store_true", help="only messages flagged (starred) on the server")
    search.add_argument("--unread", action="store_true", help="only messages not yet seen on the server")
    search.add_argument(
        "-k",
        type=_whole_number(1, MAX_RESULTS),
        default=5,
        help=f"how many messages (or chunks with --chunks), at most {MAX_RESULTS}",
    )
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
    """Log in; the folders the account will sync, each named one checked to exist on the server."""
    async with connect(endpoint_of(account, timeout=20), account.username, secret, account.mechanism) as session:
        if not account.folders:
            return await session.default_folders()
        existing = [name for name, _attributes in await session.list_folders()]
    _require_folders(account, existing)
    return account.folders


def _require_folders(account: Account, existing: list[str]) -> None:
    """A mistyped --folders name would sync nothing for ever after a "login verified"."""

    def same(name: str) -> str:  # INBOX is case-insensitive (RFC 3501 5.1), every other name exact
        return "INBOX" if name.upper() == "INBOX" else name

    there = {same(name) for name in existing}
    missing = [folder for folder in account.folders if same(folder) not in there]
    if not missing:
        return
    shown = ", ".join(existing[:MAX_FOLDERS_SHOWN]) + (", ..." if len(existing) > MAX_FOLDERS_SHOWN else "")
    which = ", ".join(repr(folder) for folder in missing)
    raise UserError(
        f"folder {which} not found on {account.host}:{account.port} (folders there: {shown or 'none'}): "
        "fix --folders or leave it out to sync all but Junk and Trash"
    )


def _what_was_verified(found: list[str] | None, named: bool) -> str:
    if found is None:
        return "login not verified (--no-verify), folders not checked"
    if named:
        return f"login verified; folders found on the server: {', '.join(found)}"
    return f"login verified; folders to sync (all but Junk and Trash): {', '.join(found)}"


def _read_password() -> str:
    """The password: prompted without echo on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _is_local(host: str) -> bool:
    """Loopback only: a LAN address is still a network the password should not cross in clear."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _folder_names(raw: str | None) -> list[str]:
    """--folders as names; one that is empty or holds a control character is refused."""
    if raw is None:
        return []
    folders = [folder.strip() for folder in raw.split(",") if folder.strip()]
    if not folders:
        raise UserError("--folders names no folder: leave it out to sync all but Junk and Trash")
    for folder in folders:
        if has_control(folder):
            raise UserError(f"--folders: folder {folder!r} holds a control character")
    return folders


def cmd_keys(args: argparse.Namespace) -> None:
    if args.action == "generate":
        print(generate_key())
        return
    count = AccountStore(settings.database_url()).rotate_secrets(SecretBox.from_environment())
    print(f"re-encrypted {count} account secret(s) with the first key")


def _add_account(args: argparse.Namespace) -> None:
    """`accounts add`: every check (name, key, folders, password, login) before the store is opened."""
    validate_account_name(args.name)
    box = SecretBox.from_environment()
    token_source = None
    if args.oauth2_token_env:
        token_source = f"env:{args.oauth2_token_env}"
    elif args.oauth2_token_command:
        token_source = f"command:{args.oauth2_token_command}"
    folders = _folder_names(args.folders)
    password = "" if token_source else _read_password()
    if not password and not token_source:
        raise UserError(
            'no password given: type it at the prompt or pipe it in, e.g. `printf %s "$PW" | email-assets ...`'
        )
    if args.security == "plain" and not _is_local(args.host):
        secret = "OAuth2 token" if token_source else "password"
        print(
            f"warning: --security plain: the {secret} of {safe_text(args.username)} will cross the network "
            f"to {safe_text(args.host)} unencrypted; use ssl or starttls unless the server offers neither",
            file=sys.stderr,
        )
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
    AccountStore(settings.database_url()).add(account)
    note = _register_partition(account.name, add=True)
    print(
        safe_text(
            f"added account {account.name} ({account.username} on {account.host}:{account.port}); "
            + _what_was_verified(found, named=bool(folders))
        )
    )
    if note:
        print(note, file=sys.stderr)


def cmd_accounts(args: argparse.Namespace) -> None:
    if args.action == "add":
        _add_account(args)
        return
    store = AccountStore(settings.database_url())
    if args.action == "list":
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
            login = f"{row['username']}@{row['host']}:{row['port']}"
            print("\t".join(safe_text(field) for field in (row["name"], login, row["security"], health)))
    elif args.action == "test":
        account = store.get(args.name)
        folders = asyncio.run(_check_login(account, login_secret(account, SecretBox.from_environment())))
        print(safe_text(f"{account.name}: login ok, folders: {', '.join(folders)}"))
    elif args.action == "remove":
        store.remove(args.name)
        note = _register_partition(args.name, add=False)
        print(f"removed account {args.name}")
        if note:
            print(note, file=sys.stderr)


def _print_hit(hit: dict, indent: str = "") -> None:
    """Two lines per hit; every field came from a sender or a server, so each is escaped."""
    date = hit["date"][:10] if hit["date"] else "?"
    sender, subject = hit["from"] or "?", hit["subject"] or "(no subject)"
    head = f"{hit['score']:.3f}  {date:10}  {sender}  {subject}  [{hit['chunk_id']}]"
    print(indent + safe_text(head))
    print(f"{indent}       {safe_text(' '.join(hit['text'].split())[:200])}")


def _require_store() -> None:
    """Read-only commands read an existing store: at a mistyped data dir they would create an
    empty one (and answer "nothing") instead of saying that nothing is there."""
    configured = os.environ.get("EMAIL_ASSETS_DATABASE_URL")
    if configured:
        try:
            url = sa.make_url(configured)
        except sa.exc.ArgumentError:
            return  # opening it gives the one-line error about the URL
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return  # a server database exists or fails to connect, either way it is not created here
        path, where = Path(url.database), " (EMAIL_ASSETS_DATABASE_URL)"
    else:
        data_dir = settings.data_dir()
        named = (
            "EMAIL_ASSETS_DATA_DIR"
            if os.environ.get("EMAIL_ASSETS_DATA_DIR")
            else "default: EMAIL_ASSETS_DATA_DIR unset"
        )
        path, where = data_dir / SQLITE_FILE, f": nothing was ever stored in the data dir {data_dir} ({named})"
    if not path.is_file():
        raise UserError(
            f"no store at {path}{where}; set EMAIL_ASSETS_DATA_DIR or EMAIL_ASSETS_DATABASE_URL "
            "to the store you filled, or add an account to start one"
        )


def cmd_search(args: argparse.Namespace) -> None:
    from email_assets.search import group_by_thread, search_chunks, search_messages
    from email_assets.status import read_status
    from email_assets.storage.lexical import MessageFilter

    if args.since and args.until and args.since > args.until:
        raise UserError(f"--since {args.since} is after --until {args.until}")
    if args.until == dt.date.max:  # the filter ends at the midnight after it, which has no date
        raise UserError(f"--until {args.until} is past the last day a search can end on: leave --until out")
    embedder_from_spec(settings.embedder_spec())  # a bad EMAIL_ASSETS_EMBEDDER is an error even on an empty store
    _require_store()
    store = read_status()
    if args.account and store.account(args.account) is None:
        known = ", ".join(account.name for account in store.accounts) or "none"
        raise UserError(f"no account named {args.account!r} in {store.database} (accounts: {known})")
    note = store.empty_store_note()
    if note:
        print(safe_text(note), file=sys.stderr)
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
                print(json_line(hit))
            else:
                _print_hit(hit, indent="  + " if position else "")
    if not hits and not args.json:
        print("no matches")


def cmd_status(args: argparse.Namespace) -> None:
    from email_assets.status import format_status, read_status

    _require_store()
    store = read_status()
    print(json.dumps(store.as_json()) if args.json else format_status(store))


def cmd_backfill(args: argparse.Namespace) -> None:
    from email_assets.defs.backfills import check_backfill_days, failure_summary, follow_backfill, launch_backfill

    until = args.until or dt.datetime.now(dt.UTC).date()
    check_backfill_days(args.since, until)  # before the instance is opened: nothing is created for a bad range
    if not os.environ.get("DAGSTER_HOME"):
        raise UserError("DAGSTER_HOME is not set: a backfill is recorded in the instance the daemon runs")
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        backfill_id = launch_backfill(instance, args.account, args.since, until)
        print(f"backfill {backfill_id}: {args.account} {args.since}..{until}, runs launched by dagster-daemon")
        print(f"  in the UI: /runs/b/{backfill_id}")
        if args.wait:
            final = follow_backfill(
                instance,
                backfill_id,
                lambda progress: print(progress.describe(), flush=True),
                note=lambda line: print(line, file=sys.stderr, flush=True),
            )
            if final.status not in {"COMPLETED_SUCCESS", "COMPLETED"}:
                raise UserError(failure_summary(instance, final))


def cmd_trace(args: argparse.Namespace) -> None:
    from email_assets.trace import format_trace, trace_chunk

    _require_store()
    lineage = trace_chunk(args.chunk_id)
    print(json_line(lineage, indent=2) if args.json else format_trace(lineage))


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
        print(f"{PROGRAM}: error: {safe_text(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
