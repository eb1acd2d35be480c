"""Lab hosts: Linux network namespaces that stand in for separate machines in one test.

A test of several hosts (a services host, two Celery workers) must not pass because
every process shares 127.0.0.1, one hostname and one set of directories. Each `LabHost`
is a network namespace with its own address on a bridge, so hosts reach one another only
over TCP on those addresses; each process started on it also gets a UTS namespace named
after the host, so `socket.gethostname()` there says which machine ran the code.

Names carry a random tag and the owning pid, so parallel sessions never clash, and a
later session removes what a SIGKILLed one left behind (`remove_stale_labs`). Needs root,
`ip` (iproute2) and `unshare` (util-linux); `unavailable()` says why not otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from email_assets.demo.dovecot import DovecotServer, make_server

PREFIX = "ealab"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKER_SCRIPT = PROJECT_ROOT / "deploy" / "celery" / "worker.sh"
CELERY_INSTANCE_YAML = PROJECT_ROOT / "deploy" / "celery" / "dagster.yaml"
_NETNS = re.compile(rf"^{PREFIX}-([0-9a-f]+)-(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no iproute2 or unshare), else None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-packages.sh installs iproute2)"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    _ip("netns", "del", probe, check=False)
    return None if made.returncode == 0 else f"ip netns add failed: {made.stderr.strip()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(netns: str) -> list[int]:
    listed = _ip("netns", "pids", netns, check=False).stdout.split()
    return [int(pid) for pid in listed if pid.isdigit()]


def _kill_netns_processes(netns: str) -> None:
    """SIGKILL, one pid at a time, whatever still runs in a namespace this lab made."""
    for _ in range(20):
        pids = _netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_stale_labs() -> None:
    """Delete namespaces and bridges of labs whose owning process is gone (a killed session)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NETNS.match(name)
        if match and not _pid_alive(int(match.group(2))):
            _kill_netns_processes(name)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        alias = re.search(rf"alias {PREFIX}-([0-9a-f]+)-(\d+)", line)
        device = line.split(":")[1].strip() if ":" in line else ""
        if alias and device and not _pid_alive(int(alias.group(2))):
            _ip("link", "del", device, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.64.0.0/10 that no address or route of this machine overlaps."""
    used = [
        ipaddress.ip_network(word, strict=False)
        for word in _ip("-4", "route", "show", "table", "all", check=False).stdout.split()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", word)
    ]
    for _ in range(200):
        candidate = ipaddress.ip_network(f"10.{random.randint(64, 127)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise RuntimeError("no free 10.64.0.0/10 subnet for the lab bridge")


@dataclass
class LabHost:
    """One machine of the lab: a network namespace, its address, its hostname."""

    name: str
    netns: str
    address: str
    hostname: str
    lab: Lab

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run in this host's network namespace under its own hostname."""
        set_name = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--", "sh", "-c", set_name, self.hostname, *argv]

    def start(self, argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
        """A long-running process in its own session (stopped by process group with the lab)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                self.command(argv), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.lab.processes.append(process)
        return process

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """A short command on this host; its output, or CalledProcessError with it."""
        done = subprocess.run(self.command(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return done.stdout

    def pids(self) -> list[int]:
        """Every process in this host's network namespace."""
        return _netns_pids(self.netns)

    def kill_everything(self) -> None:
        """The host is lost: every process on it SIGKILLed at once (each by its pid)."""
        _kill_netns_processes(self.netns)


@dataclass
class Lab:
    """A bridge in the root namespace and the hosts on it; a context manager that cleans up."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, LabHost] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)
    # Run first at close, newest first: orderly stops (pg_ctl stop) before the SIGKILL sweep.
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    subnet: ipaddress.IPv4Network | None = None

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.tag}"  # IFNAMSIZ is 16: 5 + 6 characters

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (the test process and anything it runs)."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def __enter__(self) -> Lab:
        remove_stale_labs()
        self.subnet = _free_subnet()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", "dev", self.bridge, "alias", f"{PREFIX}-{self.tag}-{os.getpid()}")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str) -> LabHost:
        """A new namespace on the bridge, with the next free address."""
        assert self.subnet is not None and re.fullmatch(r"[a-z0-9]{1,12}", name), name
        index = len(self.hosts) + 2
        netns = f"{PREFIX}-{self.tag}-{os.getpid()}-{name}"
        outside, inside = f"{PREFIX[:2]}{self.tag}o{index}", f"{PREFIX[:2]}{self.tag}i{index}"
        address = str(self.subnet.network_address + index)
        host = LabHost(name=name, netns=netns, address=address, hostname=f"{name}-{self.tag}", lab=self)
        _ip("netns", "add", netns)
        self.hosts[name] = host
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", netns, "link", "set", inside, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        return host

    def stop_processes(self) -> None:
        """SIGTERM each started process group, SIGKILL what is left after 15 s."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        """Stop every process, delete every namespace and the bridge; safe to call twice."""
        while self.cleanups:
            with contextlib.suppress(Exception):
                self.cleanups.pop()()
        self.stop_processes()
        for host in self.hosts.values():
            _kill_netns_processes(host.netns)
            _ip("netns", "del", host.netns, check=False)  # takes its veth pair with it
        self.hosts.clear()
        _ip("link", "del", self.bridge, check=False)


@contextlib.contextmanager
def lab(*names: str) -> Iterator[Lab]:
    """A lab with hosts `names`, torn down on the way out whatever happened."""
    with Lab() as made:
        for name in names:
            made.add_host(name)
        yield made


# --- Services on a lab host, each listening on the host's address only -------------------


def wait_for_port(address: str, port: int, process: subprocess.Popen | None, what: str, timeout: float = 60) -> None:
    """Until `address:port` accepts a TCP connection (from the root namespace, over the bridge)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {address}:{port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {address}:{port} within {timeout:.0f} s")
        time.sleep(0.2)


def start_postgres(host: LabHost, port: int = 5432) -> str:
    """A throwaway cluster (initdb + pg_ctl) on `host`; `postgres@address:port`, trust auth.

    Its directory is a fresh one under the temp dir (PostgreSQL runs as `postgres` when we
    are root and must reach it), removed with the lab.
    """
    from email_assets_tests.postgres_server import _as_owner, _binaries

    root = Path(tempfile.mkdtemp(prefix="email-assets-lab-pg-"))
    host.lab.cleanups.append(lambda: shutil.rmtree(root, ignore_errors=True))
    bin_dir = _binaries()
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if owner:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
    subprocess.run(_as_owner(initdb, owner), check=True, capture_output=True)
    with (data / "pg_hba.conf").open("a") as hba:  # the lab's hosts, as initdb trusts localhost
        hba.write(f"host all all {host.lab.subnet} trust\n")
    options = f"-p {port} -k {root} -c listen_addresses={host.address} -c fsync=off -c max_connections=300"
    pg_ctl = str(bin_dir / "pg_ctl")
    host.run(_as_owner([pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"], owner))
    stop = _as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], owner)
    host.lab.cleanups.append(lambda: subprocess.run(stop, capture_output=True, timeout=60, check=False))
    return f"postgres@{host.address}:{port}"


def start_redis(host: LabHost, root: Path, port: int = 6379) -> str:
    """A redis-server of the test's own, no persistence; its `redis://address:port` base URL."""
    root.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--bind", host.address, "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--protected-mode", "no", "--dir", str(root)]
    process = host.start(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=root, log=root / "redis.log")
    wait_for_port(host.address, port, process, "redis-server")
    return f"redis://{host.address}:{port}"


def start_chroma(host: LabHost, root: Path, chroma: Path, port: int = 8000) -> str:
    """`chroma run` on `host`; its `http://address:port`."""
    argv = [str(chroma), "run", "--path", str(root / "chroma"), "--host", host.address, "--port", str(port)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "ANONYMIZED_TELEMETRY": "False"}
    process = host.start(argv, env=env, cwd=root, log=root / "chroma.log")
    wait_for_port(host.address, port, process, "chroma run", timeout=90)
    return f"http://{host.address}:{port}"


def start_dovecot(host: LabHost) -> DovecotServer:
    """The demo's Dovecot (same users, Maildir, TLS), listening on `host`'s address only."""
    from email_assets.demo import dovecot

    server = NamespacedDovecot.on(host)
    mail_uid, mail_gid = dovecot._mail_owner()
    for directory in ("run", "state", "home"):
        (server.root / directory).mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(server.root / "home", mail_uid, mail_gid)
    dovecot.write_self_signed_certificate(server.ca_file, server.root / "key.pem", host.address)
    server._write_passwd()
    root_user = os.geteuid() == 0
    config = dovecot.CONFIG_TEMPLATE.format(
        root=server.root,
        imap_port=server.imap_port,
        imaps_port=server.imaps_port,
        mail_uid=mail_uid,
        mail_gid=mail_gid,
        login_user="dovenull" if root_user else pwd.getpwuid(os.geteuid()).pw_name,
        internal_user="dovecot" if root_user else pwd.getpwuid(os.geteuid()).pw_name,
        extra="",
    )
    (server.root / "dovecot.conf").write_text(config.replace("127.0.0.1", host.address))
    (server.root / "dovecot-oauth2.conf.ext").write_text(f"introspection_url = http://{host.address}:1/\n")
    argv = [dovecot.DOVECOT_BINARY, "-F", "-c", str(server.root / "dovecot.conf")]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    server.process = host.start(argv, env=env, cwd=server.root, log=server.root / "stderr.log")
    wait_for_port(host.address, server.imaps_port, server.process, "dovecot")
    return server


@dataclass
class NamespacedDovecot(DovecotServer):
    """A `DovecotServer` whose clients (tests, runs, the sensor) connect to a lab address."""

    address: str = "127.0.0.1"

    @property
    def host(self) -> str:
        return self.address

    @classmethod
    def on(cls, host: LabHost) -> NamespacedDovecot:
        base = make_server({})
        return cls(root=base.root, imap_port=143, imaps_port=993, users={}, address=host.address)


# --- Celery worker hosts ---------------------------------------------------------------------


def start_worker(host: LabHost, root: Path, env: dict[str, str]) -> subprocess.Popen:
    """deploy/celery/worker.sh on `host`, with a HOME, DAGSTER_HOME, data dir and cwd of its own.

    `env` carries what the deploy README says every host sets (database, Chroma, broker,
    Fernet keys...); nothing else of the test process leaks in.
    """
    home, dagster_home, data, work = (root / name for name in ("home", "dagster_home", "data", "work"))
    for directory in (home, dagster_home, data, work):
        directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(CELERY_INSTANCE_YAML, dagster_home / "dagster.yaml")
    bin_dir = str(Path(sys.executable).parent)
    full_env = {
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "EMAIL_ASSETS_DATA_DIR": str(data),
        "EMAIL_ASSETS_VENV_BIN": bin_dir,
        **env,
    }
    return host.start(["bash", str(WORKER_SCRIPT)], env=full_env, cwd=work, log=worker_log(root))


def worker_log(root: Path) -> Path:
    return root / "worker.log"


def wait_for_worker(host: LabHost, root: Path, process: subprocess.Popen, after: int = 0, timeout: float = 120) -> None:
    """Until Celery says the worker on `host` is ready; `after`: the log's size before this start."""
    deadline = time.monotonic() + timeout
    ready = f"@{host.hostname} ready."

    def logged() -> str:
        with worker_log(root).open("rb") as log:
            log.seek(after)
            return log.read().decode(errors="replace")

    while ready not in logged():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker on {host.hostname} not ready:\n{logged()[-3000:]}")
        time.sleep(0.3)
