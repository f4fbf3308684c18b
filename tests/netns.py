"""Several "hosts" on one machine, as Linux network namespaces on one bridge, for multi-host tests.

Each host is a network namespace with loopback, one veth link (`eth0`) on a bridge private to this
lab, an address in a /24 of 10.213.0.0/16 and its own hostname (a UTS namespace per command) that
every host resolves through /etc/netns/<ns>/hosts. Hosts talk only over TCP; the test process (the
root namespace) reaches them at `host.address` through the bridge's address `.1`. No host has a
default route, so nothing inside reaches the internet.

Names carry a random key held by a lock file in LOCK_DIR: parallel runs cannot collide, and a run
that died without cleaning up (SIGKILL, power loss of the CI job) is cleaned by the next one, which
finds its lock file no longer held. Requires root and iproute2.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PREFIX = "gpn"  # every namespace, link and /etc/netns dir of ours starts with it
LOCK_DIR = Path("/run/genpipe-netns")
NETNS_ETC = Path("/etc/netns")
SUPERNET = ipaddress.ip_network("10.213.0.0/16")
_KEY_ALPHABET = string.ascii_lowercase + string.digits
_KEY_LEN = 5
_KEY = re.compile(rf"^[a-z0-9]{{{_KEY_LEN}}}$")
_HOSTNAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")


class NetnsError(RuntimeError):
    """Creating, using or tearing down a namespace lab failed."""


def netns_available() -> str | None:
    """Why namespace hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "namespace hosts need root (ip netns add); CI runs as root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "namespace hosts need iproute2 (ip) and util-linux (unshare) on PATH"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def _netns_names() -> list[str]:
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(netns: str) -> list[int]:
    proc = _ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _kill_netns_processes(netns: str, grace: float) -> None:
    """SIGTERM every process in the namespace, SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        pids = _netns_pids(netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _netns_pids(netns)
        if not pids:
            return
    raise NetnsError(f"processes {pids} in namespace {netns} survived SIGKILL")


def _remove_key(key: str, grace: float = 2.0) -> None:
    """Delete every namespace, link and /etc/netns dir named with `key`, processes first."""
    stem = f"{PREFIX}{key}"
    for netns in _netns_names():
        if netns.startswith(f"{stem}-"):
            _kill_netns_processes(netns, grace)
            _ip("netns", "delete", netns, check=False)
            shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
    # Deleting a namespace deletes its veth ends and their peers; the bridge stays.
    for line in _ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(stem):
            _ip("link", "delete", name, check=False)
    for etc in NETNS_ETC.glob(f"{stem}-*"):
        shutil.rmtree(etc, ignore_errors=True)


def clean_stale() -> list[str]:
    """Remove the leftovers of labs whose owner died; returns their keys.

    A lab's lock file stays locked (flock) while its owner lives, so a lock we can take belongs to
    a dead run. Locks of live runs, and anything not named with our prefix, are left alone.
    """
    removed = []
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for lock in LOCK_DIR.glob("*.lock"):
        if not _KEY.match(lock.stem):
            continue
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run owns it
            _remove_key(lock.stem)
            lock.unlink(missing_ok=True)
            removed.append(lock.stem)
    return removed


@dataclass
class Host:
    """One namespace host: its logical name (also its hostname), namespace and address."""

    name: str
    netns: str
    address: str
    lab: NetnsLab = field(repr=False)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run in this host: its network namespace and its own hostname."""
        setup = 'hostname "$0" && exec "$@"'
        return [
            "ip",
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--uts",
            "sh",
            "-c",
            setup,
            self.name,
            *argv,
        ]

    def run(
        self, argv: Sequence[str], *, timeout: float = 120, check: bool = True, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this host to completion (text output captured unless redirected)."""
        kwargs.setdefault("capture_output", True)
        proc = subprocess.run(self.command(argv), text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
        if check and proc.returncode != 0:
            raise NetnsError(
                f"{argv[0]} on host {self.name} exited {proc.returncode}: "
                f"{(proc.stderr or '').strip()[-2000:]}"
            )
        return proc

    def popen(
        self,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a background process in this host, in its own process group (stopped at close).

        Output goes to `log_path` (stdout and stderr together) or is discarded.
        """
        out: IO[bytes] | int = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self.lab.processes.append((self, proc))
        return proc

    def link_down(self) -> None:
        """Cut this host off the network, the way a pulled cable or a dead switch port would."""
        _ip("-n", self.netns, "link", "set", "eth0", "down")

    def link_up(self) -> None:
        _ip("-n", self.netns, "link", "set", "eth0", "up")

    def pids(self) -> list[int]:
        """Every process living in this host's network namespace."""
        return _netns_pids(self.netns)


class NetnsLab:
    """N hosts on one private bridge; a context manager that tears everything down on exit.

    >>> with NetnsLab(["ctl", "worker-a"]) as lab:
    ...     lab["worker-a"].run(["curl", f"http://{lab['ctl'].address}:4200/api/health"])
    """

    def __init__(self, names: Iterable[str], *, grace: float = 5.0) -> None:
        names = list(names)
        bad = [n for n in names if not _HOSTNAME.match(n)]
        if bad or len(set(names)) != len(names) or not names:
            raise NetnsError(
                f"host names {names!r}: give distinct names of 1-15 lowercase letters, digits or '-'"
                f", starting with a letter (bad: {bad})"
            )
        if (why := netns_available()) is not None:
            raise NetnsError(why)
        self.grace = grace
        self.processes: list[tuple[Host, subprocess.Popen[bytes]]] = []
        self.hosts: dict[str, Host] = {}
        self._closed = False
        clean_stale()
        self.key, self._lock = self._take_key()
        atexit.register(self.close)  # Ctrl-C or an exception that skips the fixture teardown
        try:
            self._build(names)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _take_key() -> tuple[str, IO[str]]:
        """A fresh random key whose lock file we create and hold for the lab's lifetime."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        # Lock first, then link into place: a cleaner never sees our lock file unlocked.
        tmp = LOCK_DIR / f".{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fh = open(tmp, "w")  # noqa: SIM115 - held open (locked) until close()
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            while True:
                key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(_KEY_LEN))
                try:
                    os.link(tmp, LOCK_DIR / f"{key}.lock")
                except FileExistsError:
                    continue
                return key, fh
        finally:
            tmp.unlink()

    def _build(self, names: list[str]) -> None:
        stem = f"{PREFIX}{self.key}"
        self.bridge = f"{stem}b"
        # The subnet is chosen and put on the bridge under one machine-wide lock, so two labs
        # created at the same moment never pick the same /24.
        with open(LOCK_DIR / "subnets.alloc", "a") as alloc:
            fcntl.flock(alloc, fcntl.LOCK_EX)
            self.subnet = self._free_subnet()
            hosts = list(self.subnet.hosts())
            self.root_address = str(hosts[0])
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.root_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{hosts[i + 1]} {name}\n" for i, name in enumerate(names)
        )
        for i, name in enumerate(names):
            netns, veth = f"{stem}-{name}", f"{stem}v{i}"
            host = Host(name, netns, str(hosts[i + 1]), self)
            self.hosts[name] = host
            _ip("netns", "add", netns)
            (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / netns / "hosts").write_text(hosts_file)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
        log.info("netns lab %s: %s on %s", self.key, self.hosts, self.subnet)

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = set()
        for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
            addr = ipaddress.ip_interface(line.split()[3])
            used.add(
                addr.network.supernet(new_prefix=24)
                if addr.network.prefixlen > 24
                else addr.network
            )
        for net in SUPERNET.subnets(new_prefix=24):
            if not any(net.overlaps(u) for u in used):
                return net
        raise NetnsError(f"no free /24 left in {SUPERNET}: run tests.netns.clean_stale()")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_port(self, host: Host, port: int, timeout: float = 60) -> None:
        """Block until `host` accepts TCP on `port` (seen from the root namespace)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host.address, port), timeout=1).close()
                return
            except OSError as err:
                if time.monotonic() > deadline:
                    raise NetnsError(
                        f"{host.name}:{port} not accepting after {timeout} s: {err}"
                    ) from err
                time.sleep(0.2)

    def close(self) -> None:
        """Stop every process (process groups, then all in each namespace), delete everything.

        Idempotent; safe from atexit, a fixture finalizer or a failed constructor.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for _, proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for _, proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        try:
            _remove_key(self.key, grace=self.grace)  # SIGKILLs whatever ignored SIGTERM
        finally:
            for _, proc in self.processes:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            lock_path = LOCK_DIR / f"{self.key}.lock"
            lock_path.unlink(missing_ok=True)
            self._lock.close()
