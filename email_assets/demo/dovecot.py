"""A throwaway Dovecot IMAP server on 127.0.0.1, for the demo, the tests and the benchmarks.

Everything lives in one temporary directory (config, TLS certificate, passwd-file users,
Maildir), so nothing on the machine is touched. As root, Dovecot refuses to deliver mail
as uid 0, so mailboxes belong to `nobody` and the login/internal users are the
unprivileged ones the Debian package creates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT_BINARY = shutil.which("dovecot") or "/usr/sbin/dovecot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_self_signed_certificate(cert_path: Path, key_path: Path, address: str = "127.0.0.1") -> None:
    """A certificate for localhost and `address` that clients verify through `ca_file`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


CONFIG_TEMPLATE = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {mail_uid}
last_valid_uid = 0
mail_location = maildir:~/Maildir
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_max_userip_connections = 50
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users/%u
  default_fields = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
{extra}
"""


@dataclass
class DovecotServer:
    """A running Dovecot; `users` maps user name to password."""

    root: Path
    imap_port: int
    imaps_port: int
    users: dict[str, str]
    process: subprocess.Popen | None = None
    oauth2_port: int = 0
    # What the server advertises after login, if not Dovecot's own list: to stand in for
    # a server without CONDSTORE/QRESYNC (Dovecot's `imap_capability`).
    capabilities: str | None = None

    @property
    def oauth2_introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.oauth2_port}/introspect"

    @property
    def ca_file(self) -> Path:
        return self.root / "cert.pem"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def maildir(self, user: str) -> Path:
        return self.root / "home" / user / "Maildir"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(self, user: str) -> imaplib.IMAP4_SSL:
        """A stdlib client, for loading and changing mail in tests (not the code under test)."""
        client = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=self.ssl_context())
        client.login(user, self.users[user])
        return client

    def append(
        self,
        user: str,
        messages: Iterable[tuple[bytes, dt.datetime]],
        folder: str = "INBOX",
        flags: str = "",
    ) -> int:
        """APPEND each (bytes, INTERNALDATE) pair; returns how many were appended."""
        client = self.connect(user)
        count = 0
        try:
            if folder != "INBOX":
                client.create(folder)
            for raw, internaldate in messages:
                typ, data = client.append(folder, flags, imaplib.Time2Internaldate(internaldate), raw)
                if typ != "OK":
                    raise RuntimeError(f"APPEND failed: {data!r}")
                count += 1
        finally:
            client.logout()
        return count

    def add_user(self, user: str, password: str) -> None:
        self.users[user] = password
        self._write_passwd()

    def _write_passwd(self) -> None:
        # One passwd-file per user (the path has %u): a user added while the server runs
        # is a new file, which Dovecot reads on first login; no reload timing to race.
        directory = self.root / "users"
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
        for user, password in self.users.items():
            path = directory / user
            path.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
            path.chmod(0o644)

    def start(self) -> None:
        mail_uid, mail_gid = _mail_owner()
        (self.root / "run").mkdir(exist_ok=True)
        (self.root / "state").mkdir(exist_ok=True)
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(home, mail_uid, mail_gid)
        if not self.ca_file.exists():
            write_self_signed_certificate(self.ca_file, self.root / "key.pem")
        self._write_passwd()
        user = pwd.getpwuid(os.geteuid()).pw_name
        config = CONFIG_TEMPLATE.format(
            root=self.root,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            mail_uid=mail_uid,
            mail_gid=mail_gid,
            login_user="dovenull" if os.geteuid() == 0 else user,
            internal_user="dovecot" if os.geteuid() == 0 else user,
            extra=f"imap_capability = {self.capabilities}" if self.capabilities else "",
        )
        (self.root / "dovecot.conf").write_text(config)
        # Bearer tokens are checked by POSTing them to `oauth2_introspection_url` (RFC 7662);
        # nothing answers there unless a test starts a server.
        (self.root / "dovecot-oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = {self.oauth2_introspection_url}\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        )
        self.process = subprocess.Popen(
            [DOVECOT_BINARY, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115 - owned by the child
            start_new_session=True,
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = (self.root / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"dovecot exited at start: {log.strip()[-500:]}")
            try:
                with socket.create_connection((self.host, self.imaps_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.imaps_port} within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _mail_owner() -> tuple[int, int]:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid
    return os.geteuid(), os.getegid()


def make_server(users: dict[str, str], root: Path | None = None) -> DovecotServer:
    """A not-yet-started server in a fresh world-traversable directory."""
    root = Path(root or tempfile.mkdtemp(prefix="email-assets-dovecot-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return DovecotServer(
        root=root, imap_port=free_port(), imaps_port=free_port(), users=dict(users), oauth2_port=free_port()
    )
