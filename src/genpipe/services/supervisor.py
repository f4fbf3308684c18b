"""The services as supervisord programs: its config file, the daemon, and its XML-RPC API.

supervisord (PyPI `supervisor`) runs each service as one process group: a stop signals the whole
group and SIGKILLs it after `services.stop_timeout_seconds` (`stopasgroup`, `killasgroup`); a
service that dies is restarted at once (`autorestart`); one that cannot stay up
`services.supervisor.start_seconds` is retried `start_retries` times, then left FATAL. Its event
listener genpipe.services.reaper kills whatever a dead service's group left behind (`mlflow
server` is a wrapper: kill -9 of it alone leaves its uvicorn worker serving the port), so the
restart finds the port free.

Every process supervisord starts carries SUPERVISOR_SERVER_URL in its environment, which names
this state folder's socket. If supervisord itself is killed its services live on, orphaned;
`orphans()` finds them by that variable, and `up` stops them before it starts a new supervisord.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genpipe.config import ServicesConfig
from genpipe.services.settings import Layout, ServiceError

POLL_SECONDS = 0.25
RUNNING_STATES = ("STARTING", "RUNNING", "BACKOFF", "STOPPING")


@dataclass(frozen=True)
class Program:
    """One service: its command, environment (added to supervisord's clean one) and stop signal."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    user: str | None = None  # run as this account (supervisord runs as root then)
    stop_signal: str = "TERM"


def venv_bin() -> Path:
    """bin/ of the running interpreter: supervisord, mlflow and prefect live there."""
    return Path(sys.executable).parent


def clean_environment() -> dict[str, str]:
    """supervisord's own environment, inherited by every service: none of the user's MLFLOW_*,
    PREFECT_*, PG* or GENPIPE_* variables may redirect a server."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "USER", "LOGNAME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env.setdefault("LANG", "C.UTF-8")
    return env


def _quote(value: str) -> str:
    """A value for supervisord's ini file: `%` is its expansion character."""
    return value.replace("%", "%%")


def _environment(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{_quote(v)}"' for k, v in env.items())


def render(config: ServicesConfig, layout: Layout, programs: Sequence[Program]) -> str:
    """supervisord.conf: the daemon, its socket, one [program:*] per service, the reaper."""
    sup = config.supervisor
    lines = [
        "; written by genpipe.services on every `up`; edit params.yaml (services:) instead",
        "[unix_http_server]",
        f"file={_quote(str(layout.supervisor_socket))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_quote(str(layout.log('supervisord')))}",
        "logfile_maxbytes=5MB",
        f"pidfile={_quote(str(layout.run / 'supervisord.pid'))}",
        f"directory={_quote(str(layout.root))}",
        f"childlogdir={_quote(str(layout.logs))}",
        "identifier=genpipe-services",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_quote(str(layout.supervisor_socket))}",
        "",
    ]
    for priority, program in enumerate(programs, start=1):
        lines += [
            f"[program:{program.name}]",
            f"command={_quote(shlex.join(program.argv))}",
            f"directory={_quote(str(program.cwd))}",
            f"priority={priority * 10}",
            "autostart=false",  # `up` starts them in order: postgres first, then its clients
            "autorestart=true",
            f"startsecs={sup.start_seconds}",
            f"startretries={sup.start_retries}",
            f"stopsignal={program.stop_signal}",
            f"stopwaitsecs={config.stop_timeout_seconds:.0f}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_quote(str(layout.log(program.name)))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=2",
        ]
        if program.env:
            lines.append(f"environment={_environment(program.env)}")
        if program.user is not None:
            lines.append(f"user={program.user}")
        lines.append("")
    reaper = [sys.executable, "-m", "genpipe.services.reaper"]
    lines += [
        "[eventlistener:reaper]",
        f"command={_quote(shlex.join(reaper))}",
        "events=PROCESS_STATE_EXITED,PROCESS_STATE_STOPPED",
        "autorestart=true",
        f"stderr_logfile={_quote(str(layout.log('reaper')))}",
        "",
    ]
    return "\n".join(lines)


class Supervisor:
    """The supervisord of one state folder, reached over its Unix socket."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    @property
    def url(self) -> str:
        return f"unix://{self.layout.supervisor_socket}"

    def _proxy(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, self.url)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport).supervisor

    def pid(self) -> int | None:
        """supervisord's pid if it answers on the socket, else None."""
        if not self.layout.supervisor_socket.exists():
            return None
        try:
            return int(self._proxy().getPID())
        except (OSError, xmlrpc.client.Error):
            return None

    def call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._proxy(), method)(*args)
        except (OSError, xmlrpc.client.ProtocolError) as exc:
            raise ServiceError(
                f"supervisord of {self.layout.root} does not answer on {self.url} ({exc}): "
                "`make services-up` starts it"
            ) from None

    def info(self, name: str) -> dict[str, Any] | None:
        """supervisord's view of one program (statename, pid, spawnerr...), or None."""
        try:
            return self.call("getProcessInfo", name)
        except xmlrpc.client.Fault:
            return None

    def start_daemon(self, timeout: float) -> int:
        """Start supervisord (it daemonizes) and wait until it answers; returns its pid."""
        command = [str(venv_bin() / "supervisord"), "-c", str(self.layout.supervisor_conf)]
        done = subprocess.run(
            command, env=clean_environment(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise ServiceError(
                f"`{shlex.join(command)}` failed: {(done.stderr or done.stdout).strip()[-2000:]}"
            )
        deadline = time.monotonic() + timeout
        while (pid := self.pid()) is None:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"supervisord did not answer on {self.url} within {timeout:.0f} s; see "
                    f"{self.layout.log('supervisord')}"
                )
            time.sleep(POLL_SECONDS)
        return pid

    def apply_config(self) -> None:
        """Make a running supervisord follow a rewritten config (what `supervisorctl update`
        does): changed programs are stopped and re-added, so `up` starts them again."""
        added, changed, removed = self.call("reloadConfig")[0]
        for name in changed + removed:
            with contextlib.suppress(xmlrpc.client.Fault):
                self.call("stopProcessGroup", name)
            self.call("removeProcessGroup", name)
        for name in added + changed:
            self.call("addProcessGroup", name)

    def shutdown(self, timeout: float) -> None:
        """Stop every program (in reverse order, each as a group), then supervisord itself."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(xmlrpc.client.Error, OSError):
            self._proxy().shutdown()
        _wait_gone([pid], timeout)


def orphans(layout: Layout, exclude: Sequence[int] = ()) -> list[Any]:
    """Processes of this state folder's services that are not in `exclude`: those started by its
    supervisord (SUPERVISOR_SERVER_URL names its socket), or running on its files (sshd and
    postgres overwrite their environment with their process title, which keeps the config and
    data paths). Services a killed supervisord left behind, or what a stopped service left."""
    import psutil

    needle = f"unix://{layout.supervisor_socket}"
    files = (str(layout.ssh / "sshd_config"), str(layout.postgres_data))
    found = []
    for proc in psutil.process_iter():
        if proc.pid in exclude or proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("SUPERVISOR_SERVER_URL") == needle or any(
                f in arg for arg in proc.cmdline() for f in files
            ):
                found.append(proc)
    return found


def stop_processes(procs: Sequence[Any], timeout: float) -> int:
    """SIGTERM, then SIGKILL what is left after `timeout`; returns how many needed SIGKILL."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return len(alive)


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    import psutil

    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    psutil.wait_procs(procs, timeout=timeout)


def listeners(host: str, port: int) -> list[int]:
    """Pids listening on host:port (or on every address at that port)."""
    import psutil

    pids = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.laddr.ip in (host, "0.0.0.0", "::") and conn.pid is not None:
            pids.add(conn.pid)
    return sorted(pids)


def describe(pid: int) -> str:
    """`pid N (command line)` for a message."""
    import psutil

    try:
        cmd = " ".join(psutil.Process(pid).cmdline())[:120]
    except psutil.Error:
        cmd = "?"
    return f"pid {pid} ({cmd})"
