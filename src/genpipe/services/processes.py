"""Start, find and stop the service processes.

Each service runs in its own session (so its own process group), detached from the terminal that
ran `make services-up`, with a pid file that also records the process start time: a pid reused by
an unrelated process after a reboot is never signalled. Every service process carries MARKER in
its environment, so `down` also finds what escaped its group (sshd's per-connection children call
setsid) and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "GENPIPE_SERVICE_STATE_DIR"
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Service:
    """One long-running server: how to start it, how to stop it, how to tell it is ready."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    url: str  # what `status` shows (passwords masked)
    probe: Callable[[], str | None]  # None when ready, else why not
    user: str | None = None  # run as this account (None: the current one)
    stop_signal: int = signal.SIGTERM


@dataclass(frozen=True)
class Record:
    """A started process as its pid file records it."""

    pid: int
    start_ticks: int
    argv: list[str]


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, start_ticks) from /proc/<pid>/stat, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def alive(pid: int, start_ticks: int | None = None) -> bool:
    """The process exists, is not a zombie, and (if given) started when the record says."""
    st = _stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return start_ticks is None or st[3] == start_ticks


def read_record(path: Path) -> Record | None:
    try:
        data = json.loads(path.read_text())
        return Record(int(data["pid"]), int(data["start_ticks"]), list(data["argv"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def running(path: Path) -> Record | None:
    """The pid file's process if it still runs; a stale pid file is removed."""
    record = read_record(path)
    if record is None:
        return None
    if alive(record.pid, record.start_ticks):
        return record
    path.unlink(missing_ok=True)
    return None


def start(service: Service, pidfile: Path, logfile: Path, state_dir: Path) -> Record:
    """Launch `service` detached in its own session; write its pid file atomically."""
    env = {**service.env, MARKER: str(state_dir)}
    with open(logfile, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service.name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            service.argv,
            env=env,
            cwd=service.cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=service.user,
            close_fds=True,
        )
    st = _stat(proc.pid)
    record = Record(proc.pid, st[3] if st else 0, service.argv)
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(json.dumps(record.__dict__))
    tmp.replace(pidfile)
    return record


def tree(pid: int) -> set[int]:
    """`pid`, the members of its process group and all their descendants."""
    stats = {p: s for p in _pids() if (s := _stat(p)) is not None}
    members = {pid} | {p for p, s in stats.items() if s[2] == pid}
    children: dict[int, list[int]] = {}
    for p, s in stats.items():
        children.setdefault(s[1], []).append(p)
    todo, seen = list(members), set(members)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return {p for p in seen if p in stats}


def marked(state_dir: Path) -> set[int]:
    """Processes whose environment says they belong to the services of `state_dir`."""
    needle = f"{MARKER}={state_dir}".encode()
    found = set()
    for pid in _pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    return {p for p in found if alive(p)}


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pids: Iterable[int]) -> None:
    """Collect our own exited children (tests start services in-process), so they are not zombies."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until every pid has exited; return those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pids)
        left = {p for p in pids if alive(p)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_SECONDS)


def terminate(pids: set[int], sig: int, timeout: float) -> set[int]:
    """Send `sig`; SIGKILL whatever is left after `timeout`. Returns the pids that needed SIGKILL."""
    _signal_all(pids, sig)
    left = wait_gone(pids, timeout)
    if left:
        log.warning("still running after %.0f s, sending SIGKILL: %s", timeout, sorted(left))
        _signal_all(left, signal.SIGKILL)
        if still := wait_gone(left, timeout):
            raise OSError(f"processes {sorted(still)} survived SIGKILL")
    return left


def stop(record: Record, sig: int, timeout: float) -> set[int]:
    """Stop a service's whole tree (group and descendants); returns the pids that needed SIGKILL."""
    pids = tree(record.pid) if alive(record.pid, record.start_ticks) else set()
    return terminate(pids, sig, timeout) if pids else set()


def port_in_use(host: str, port: int) -> bool:
    """Something already listens on host:port (or the address cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
