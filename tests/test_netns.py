"""The namespace hosts of tests/netns.py: they reach each other by name over TCP only, a host whose
link is down is unreachable and the failure surfaces within the caller's timeout, and nothing of a
lab (namespaces, links, /etc/netns files, processes) outlives it, even when its owner is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.netns import LOCK_DIR, NETNS_ETC, PREFIX, NetnsLab, clean_stale

REPO = Path(__file__).resolve().parents[1]
PORT = 7000
CONNECT_TIMEOUT = 3.0  # seconds a caller waits for a host before calling it unreachable

# Echo server: answers each line with "<its hostname> <line>", one thread per connection.
ECHO_SERVER = textwrap.dedent(
    """
    import socket, socketserver, sys
    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(socket.gethostname().encode() + b" " + line)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), Echo).serve_forever()
    """
)

# Client: for each host name, connect (bounded by a timeout) and print its answer or the error.
ECHO_CLIENT = textwrap.dedent(
    """
    import socket, sys
    port, timeout, names = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    for name in names:
        try:
            with socket.create_connection((name, port), timeout=timeout) as s:
                s.sendall(b"ping\\n")
                print(name, s.makefile().readline().strip())
        except OSError as err:
            print(name, "ERROR", type(err).__name__)
    """
)


def leftovers(key: str) -> dict[str, list[str]]:
    """Whatever of lab `key` still exists on the machine."""
    stem = f"{PREFIX}{key}"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "netns": [w for w in netns.split() if w.startswith(stem)],
        "links": [w for w in links.split() if w.startswith(stem)],
        "etc": [p.name for p in NETNS_ETC.glob(f"{stem}-*")],
        "lock": [p.name for p in LOCK_DIR.glob(f"{key}.lock")],
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def echo(lab: NetnsLab, names: Sequence[str]) -> None:
    for name in names:
        lab[name].popen([sys.executable, "-c", ECHO_SERVER, str(PORT)])
    for name in names:
        lab.wait_port(lab[name], PORT)


def test_hosts_reach_each_other_by_name_and_have_their_own_hostname(
    netns_lab: Callable[[Sequence[str]], NetnsLab],
) -> None:
    names = ["ctl", "worker-a", "worker-b"]
    lab = netns_lab(names)
    echo(lab, names)
    for name in names:
        out = (
            lab[name]
            .run([sys.executable, "-c", ECHO_CLIENT, str(PORT), str(CONNECT_TIMEOUT), *names])
            .stdout
        )
        # Every host, itself included, answers by name with its own hostname.
        assert out.splitlines() == [f"{other} {other} ping" for other in names]
    # Only the lab's subnet is routed: no default route, so nothing leaves the machine.
    routes = lab["worker-a"].run(["ip", "route"]).stdout
    assert "default" not in routes
    assert str(lab.subnet) in routes


@pytest.mark.slow  # ~7 s: waits out a timeout and TCP's retransmission after the link returns
def test_a_host_with_its_link_down_is_unreachable_until_it_comes_back(
    netns_lab: Callable[[Sequence[str]], NetnsLab],
) -> None:
    lab = netns_lab(["ctl", "worker-a"])
    echo(lab, ["worker-a"])
    worker = lab["worker-a"]
    client = [sys.executable, "-c", ECHO_CLIENT, str(PORT), str(CONNECT_TIMEOUT), "worker-a"]
    # A connection from the test process (root namespace) that lives through the outage.
    conn = socket.create_connection((worker.address, PORT), timeout=CONNECT_TIMEOUT)
    conn.sendall(b"before\n")
    assert conn.recv(100) == b"worker-a before\n"

    worker.link_down()
    # New connections fail within the caller's timeout (the subprocess timeout is only a guard).
    out = lab["ctl"].run(client, timeout=10 * CONNECT_TIMEOUT).stdout
    assert out.split()[:2] == ["worker-a", "ERROR"]
    # An open connection sees no error at all, only silence: the caller's read timeout is what
    # detects the outage (TCP itself would retransmit for ~15 min, net.ipv4.tcp_retries2).
    conn.sendall(b"during\n")
    with pytest.raises(TimeoutError):
        conn.recv(100)

    worker.link_up()
    # TCP retransmits what was sent during the outage: the same connection carries on.
    conn.settimeout(60)
    assert conn.recv(100) == b"worker-a during\n"
    assert lab["ctl"].run(client).stdout.split() == ["worker-a", "worker-a", "ping"]
    conn.close()


def test_close_leaves_no_namespace_link_file_or_process(tmp_path: Path) -> None:
    lab = NetnsLab(["ctl", "worker-a"])
    key = lab.key
    assert all(leftovers(key).values()), "the lab should exist before close"
    log = tmp_path / "tracked.log"
    tracked = lab["ctl"].popen(
        ["sh", "-c", "trap '' TERM; echo ignoring; while :; do sleep 1; done"], log_path=log
    )
    # a SIGTERM before the trap is set would end it: wait until it says it ignores SIGTERM
    _wait_for(lambda: [1] if log.exists() and b"ignoring" in log.read_bytes() else [])
    # A daemon that escaped its parent: only `ip netns pids` still knows it.
    lab["worker-a"].run(["sh", "-c", "setsid sleep 1000 > /dev/null 2>&1 &"])
    # the exiting shell may still be listed for a moment; the daemon is the `sleep 1000`
    escaped = _wait_for(
        lambda: [p for p in lab["worker-a"].pids() if _cmdline(p) == ["sleep", "1000"]]
    )[0]
    lab.grace = 0.5
    lab.close()
    assert leftovers(key) == {"netns": [], "links": [], "etc": [], "lock": []}
    assert tracked.returncode == -signal.SIGKILL  # it ignored SIGTERM
    assert not alive(escaped)
    lab.close()  # idempotent


def _wait_for(found: Callable[[], list[int]], timeout: float = 60.0) -> list[int]:
    """What `found` returns once it is not empty (setsid execs `sleep` a moment after `sh` exits)."""
    import time

    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, "no such process"
        time.sleep(0.05)
    return result


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


# A lab owner that starts a long process in its host, reports, and waits to be killed.
OWNER = textwrap.dedent(
    """
    import signal, sys, time
    from tests.netns import NetnsLab
    # a shell's background job inherits SIGINT ignored, and Python keeps it so: restore Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lab = NetnsLab(["ctl"])
    proc = lab["ctl"].popen(["sleep", "1000"])
    print(lab.key, proc.pid, flush=True)
    time.sleep(1000)
    """
)


def start_owner() -> tuple[subprocess.Popen[str], str, int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    key, pid = owner.stdout.readline().split()
    return owner, key, int(pid)


def test_a_lab_whose_owner_was_killed_is_cleaned_by_the_next_run() -> None:
    owner, key, pid = start_owner()
    assert key not in clean_stale(), "a live owner's lab must be left alone"
    assert leftovers(key)["netns"]
    owner.kill()
    owner.wait()
    assert alive(pid), "SIGKILL of the owner leaves its host's processes running"
    assert key in clean_stale()
    assert leftovers(key) == {"netns": [], "links": [], "etc": [], "lock": []}
    assert not alive(pid)


def test_ctrl_c_of_the_owner_tears_the_lab_down() -> None:
    owner, key, pid = start_owner()
    owner.send_signal(signal.SIGINT)
    owner.wait(timeout=60)
    assert leftovers(key) == {"netns": [], "links": [], "etc": [], "lock": []}
    assert not alive(pid)


def test_two_labs_at_once_get_their_own_names_and_subnets(
    netns_lab: Callable[[Sequence[str]], NetnsLab],
) -> None:
    one, two = netns_lab(["ctl"]), netns_lab(["ctl"])
    assert one.key != two.key
    assert not one.subnet.overlaps(two.subnet)
    echo(one, ["ctl"])
    echo(two, ["ctl"])  # same port, same host name, no clash
