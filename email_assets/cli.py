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
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from email_assets import settings
from email_assets.account_access import endpoint_of, login_secret
from email_assets.credentials import SecretBox, generate_key
from email_assets.embedding import embedder_from_spec
from email_assets.errors import UserError
from email_assets.mail.imap_connect import DEFAULT_PORTS, SECURITY_MODES, connect
from email_assets.storage.accounts import ACCOUNT_NAME, Account, AccountStore, validate_account_name
from email_assets.terminal import has_control, json_line, safe_text

if TYPE_CHECKING:
    from email_assets.status import StoreStatus
    from email_assets.storage.lexical import MessageFilter

PROGRAM = "email-assets"
MAX_RESULTS = 1000  # -k: more than a terminal can show, small enough to bound the query's cost
MAX_FOLDERS_SHOWN = 8  # in the error naming a folder the server does not have


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
    seal = accounts.add_parser(
        "seal",
        help="bind the secret of an account stored by an earlier release to the server `accounts list` shows for it",
    )
    seal.add_argument("name")

    search = commands.add_parser(
        "search",
        help="best matching messages (meaning and words, fused), grouped by thread",
        description=SEARCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("text", type=_query)
    _add_filters(search)
    search.add_argument(
        "-k",
        type=_whole_number(1, MAX_RESULTS),
        default=5,
        help=f"how many messages (or chunks with --chunks), at most {MAX_RESULTS}",
    )
    search.add_argument("--chunks", action="store_true", help="the nearest chunks by meaning alone, one per line")
    search.add_argument(
        "--explain", action="store_true", help="for each hit, each side's rank, score and part of the fused score"
    )
    search.add_argument("--json", action="store_true", help="one JSON object per line")

    similar = commands.add_parser(
        "similar", help="messages nearest in meaning to a stored one (not its own thread unless --same-thread)"
    )
    similar.add_argument("message", type=_one_line, help="a Message-ID (with or without <>) or a message key")
    _add_filters(similar)
    similar.add_argument("-k", type=_whole_number(1, MAX_RESULTS), default=5, help="how many messages")
    similar.add_argument("--same-thread", action="store_true", help="include messages of its own thread")
    similar.add_argument("--json", action="store_true", help="one JSON object per line")

    show = commands.add_parser("show", help="a stored message's headers and cleaned text (or its whole thread)")
    show.add_argument("message", type=_one_line, help="a Message-ID (with or without <>) or a message key")
    show.add_argument("--account", type=_one_line, help="the account, when a Message-ID is in several")
    show.add_argument("--thread", action="store_true", help="every stored message of its thread, in date order")
    show.add_argument("--json", action="store_true", help="one JSON object per message")

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

    mcp = commands.add_parser("mcp", help="a read-only MCP server over this index: stdio, or --http HOST:PORT")
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="streamable HTTP at http://HOST:PORT/mcp instead of stdio; no authentication: keep it on 127.0.0.1",
    )
    return parser


SEARCH_DESCRIPTION = """\
Ranks messages, not chunks. Two sides each rank the messages: by meaning (the message's
chunk nearest to the query, cosine similarity of all-MiniLM-L6-v2 vectors) and by words
(BM25 over subject, sender and cleaned text). They are fused by reciprocal rank:
1/(60 + rank) from each side, each part scaled by how much that side knows. The dense
part by the hit's cosine relative to the best cosine of the query, squared; the word
part by how much of the query's rarer vocabulary the message holds (so shared common
words count for little). A message holding the query word for word as a phrase gets a
further full 1/(60 + rank).

Each hit prints its place, the fused score the list is ordered by ("fused"), the cosine
of its shown chunk ("cosine"), date, sender, subject and chunk id, then a snippet around
the query's words. --explain prints each side's rank, score and part of the fused score;
--json carries the same figures ("rank_score" is the fused score, "score" the cosine).

--since and --until take a UTC day as YYYY-MM-DD; both are inclusive (--until 2026-11-30
includes the whole of 30 November)."""


def _add_filters(command: argparse.ArgumentParser) -> None:
    """The filters `search` and `similar` share."""
    command.add_argument("--account", type=_one_line)
    command.add_argument("--since", type=_parse_day, help="first day, YYYY-MM-DD (UTC), inclusive")
    command.add_argument("--until", type=_parse_day, help="last day, YYYY-MM-DD (UTC), inclusive")
    command.add_argument("--from", dest="sender", type=_one_line, help="sender address")
    command.add_argument("--folder", type=_one_line, help="only messages stored in this folder, e.g. INBOX or Sent")
    command.add_argument("--has-attachment", action="store_true", help="only messages with an attachment")
    command.add_argument("--flagged", action="store_true", help="only messages flagged (starred) on the server")
    command.add_argument("--unread", action="store_true", help="only messages not yet seen on the server")


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


def _ca_certificate(path: str | None) -> str | None:
    """--ca-file's PEM text: stored with the account, so every host that syncs it can verify
    the server (a path would exist only on the host that added the account)."""
    if not path:
        return None
    try:
        pem = Path(path).read_text(encoding="ascii")
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError):  # SSLError before OSError: it is one
        raise UserError(f"--ca-file {path!r} holds no PEM certificate") from None
    except OSError as error:
        raise UserError(f"--ca-file {path!r}: {error.strerror or error}") from None
    return pem


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
        ca_certificate=_ca_certificate(args.ca_file),
        encrypted_secret=box.encrypt(password),
        mechanism="xoauth2" if token_source else "login",
        token_source=token_source,
    )
    found = None if args.no_verify else asyncio.run(_check_login(account, login_secret(account, box)))
    AccountStore(settings.database_url()).add(account, box)
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
    elif args.action == "seal":
        done = store.seal(args.name, SecretBox.from_environment())
        print(f"{args.name}: {'secret bound to its server' if done else 'already bound to its server'}")
    elif args.action == "remove":
        store.remove(args.name)
        note = _register_partition(args.name, add=False)
        print(f"removed account {args.name}")
        if note:
            print(note, file=sys.stderr)


def _print_hit(hit: dict, indent: str = "") -> None:
    """Two lines per hit (more with --explain); every field came from a sender or a server,
    so each is escaped. The first number is the rank, the second the fused score it is by."""
    date = hit["date"][:10] if hit["date"] else "?"
    sender, subject = hit["from"] or "?", hit["subject"] or "(no subject)"
    order = f"#{hit['rank']}  fused {hit['rank_score']:.4f}  " if "rank_score" in hit else ""
    head = f"{order}cosine {hit['score']:.3f}  {date:10}  {sender}  {subject}  [{hit['chunk_id']}]"
    print(indent + safe_text(head))
    text = hit.get("snippet") or " ".join(hit["text"].split())
    print(f"{indent}       {safe_text(text)}")
    if "explain" in hit:
        for line in _explain_lines(hit["explain"]):
            print(f"{indent}       {safe_text(line)}")


def _explain_lines(explain: dict) -> list[str]:
    """`--explain` as text: the same figures as the JSON, which are those the ranking summed."""
    dense, words, phrase = explain["dense"], explain["words"], explain["phrase"]
    lines = [
        f"why #{explain['rank']}: fused {explain['fused_score']:.6f} = "
        + " + ".join(
            f"{name} {part['part']:.6f}"
            for name, part in (("dense", dense), ("words", words), ("phrase", phrase))
            if part
        )
    ]
    lines.append(
        f"  dense: rank {dense['rank']}, cosine {dense['cosine']:.4f}, weight {dense['weight']:.3f},"
        f" chunk {dense['chunk_id']}"
        if dense
        else "  dense: not among the nearest chunks"
    )
    if words:
        terms = ", ".join(words["terms"]) or "none"
        lines.append(
            f"  words: rank {words['rank']}, bm25 {words['bm25']:.3f}, matched {terms}, weight {words['weight']:.3f}"
        )
    else:
        lines.append("  words: no match")
    lines.append(f"  phrase: rank {phrase['rank']}" if phrase else "  phrase: no match")
    return lines


def _message_filter(args: argparse.Namespace) -> MessageFilter:
    """The filters of `search` and `similar`, checked: a bad range is an error, not "no matches"."""
    from email_assets.storage.lexical import MessageFilter

    if args.since and args.until and args.since > args.until:
        raise UserError(f"--since {args.since} is after --until {args.until}")
    if args.until == dt.date.max:  # the filter ends at the midnight after it, which has no date
        raise UserError(f"--until {args.until} is past the last day a search can end on: leave --until out")
    return MessageFilter(
        account=args.account,
        since=args.since,
        until=args.until,
        from_address=args.sender,
        folder=args.folder,
        has_attachment=True if args.has_attachment else None,
        flagged=True if args.flagged else None,
        seen=False if args.unread else None,
    )


def _open_store(account: str | None) -> StoreStatus | None:
    """The store a read command reads, its account checked; None (with a note) when it is empty."""
    from email_assets.status import read_status

    embedder_from_spec(settings.embedder_spec())  # a bad EMAIL_ASSETS_EMBEDDER is an error even on an empty store
    settings.require_store()
    store = read_status()
    if account and store.account(account) is None:
        known = ", ".join(item.name for item in store.accounts) or "none"
        raise UserError(f"no account named {account!r} in {store.database} (accounts: {known})")
    note = store.empty_store_note()
    if note:
        print(safe_text(note), file=sys.stderr)
        return None
    return store


def _print_hits(hits: list[dict], as_json: bool, grouped: bool) -> None:
    """Hits as JSON lines or text; no hit is `no matches` on stderr either way."""
    from email_assets.search import group_by_thread

    groups = group_by_thread(hits) if grouped else [[hit] for hit in hits]
    for group in groups:
        for index, hit in enumerate(group):
            if as_json:
                print(json_line(hit))
            else:
                _print_hit(hit, indent="  + " if index else "")
    if not hits:
        print("no matches", file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> None:
    from email_assets.search import search_chunks, search_messages

    where = _message_filter(args)
    hits: list[dict] = []
    if _open_store(args.account) is not None:
        if args.chunks:
            hits = search_chunks(args.text, k=args.k, where=where)
        else:
            hits = search_messages(args.text, k=args.k, where=where, explain=args.explain)
    _print_hits(hits, args.json, grouped=not args.chunks)


def cmd_similar(args: argparse.Namespace) -> None:
    from email_assets.message_view import resolve_message
    from email_assets.search import similar_messages

    where = _message_filter(args)
    hits: list[dict] = []
    if _open_store(args.account) is not None:
        key = resolve_message(settings.database_url(), args.message, args.account)
        hits = similar_messages(key, k=args.k, where=where, same_thread=args.same_thread)
    _print_hits(hits, args.json, grouped=False)


def cmd_show(args: argparse.Namespace) -> None:
    from email_assets.message_view import load_messages, resolve_message, thread_keys

    if _open_store(args.account) is None:
        raise UserError(f"no stored message has the key or Message-ID {args.message!r}")
    url = settings.database_url()
    key = resolve_message(url, args.message, args.account)
    for number, message in enumerate(load_messages(url, thread_keys(url, key) if args.thread else [key])):
        if args.json:
            print(json_line(message.as_json()))
            continue
        if number:
            print()
        headers = [
            ("From", message.sender),
            ("To", ", ".join(message.to)),
            ("Cc", ", ".join(message.cc)),
            ("Date", message.date.isoformat() if message.date else "?"),
            ("Subject", message.subject or "(no subject)"),
            ("Message-ID", message.message_id or "?"),
            ("Key", f"{message.message_key} ({message.account}, {', '.join(message.folders) or 'no folder'})"),
        ]
        for name, value in headers:
            if value:
                print(f"{name}: {safe_text(value)}")
        print()
        print(safe_text(message.text.rstrip(), multiline=True))


def cmd_status(args: argparse.Namespace) -> None:
    from email_assets.status import format_status, read_status

    settings.require_store()
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

    settings.require_store()
    lineage = trace_chunk(args.chunk_id)
    print(json_line(lineage, indent=2) if args.json else format_trace(lineage))


def cmd_mcp(args: argparse.Namespace) -> None:
    from email_assets.mcp_server import serve  # pydantic and the SDK: only for this command

    serve(args.http)


HANDLERS = {
    "keys": cmd_keys,
    "accounts": cmd_accounts,
    "search": cmd_search,
    "similar": cmd_similar,
    "show": cmd_show,
    "status": cmd_status,
    "backfill": cmd_backfill,
    "trace": cmd_trace,
    "mcp": cmd_mcp,
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
