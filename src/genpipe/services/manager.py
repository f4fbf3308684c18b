"""up / down / status / env of the team services: genpipe's bootstrap around supervisord.

genpipe prepares what the tools do not (the PostgreSQL cluster, its role and databases, keys,
secrets, configs), writes supervisord.conf, and asks supervisord to start, stop and report the
programs (genpipe.services.supervisor). `up` works from any half-state: a killed supervisord's
orphaned services are stopped first, a service that gave up (FATAL) is started again, and a port
held by something that is not ours is named with its pid and the setting to change.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from genpipe.config import ServicesConfig
from genpipe.config.services import env_var
from genpipe.services import credentials, postgres, servers, ssh, supervisor, system
from genpipe.services.credentials import Credentials
from genpipe.services.settings import Layout, ServiceError
from genpipe.services.supervisor import Program, Supervisor

ORDER = ("postgres", "mlflow", "prefect", "sshd")  # start order; stop is the reverse
Echo = Callable[[str], None]
_PORT_KEYS = {
    "postgres": "services.postgres.port",
    "mlflow": "services.mlflow.port",
    "prefect": "services.prefect.port",
    "sshd": "services.dvc_remote.ssh_port",
}


@dataclass(frozen=True)
class Status:
    name: str
    state: str  # supervisord's: RUNNING, STARTING, BACKOFF, FATAL, STOPPED, ... or "no supervisor"
    pid: int | None  # supervisord's process for the service
    port: int
    listeners: list[int]  # what actually holds the port (the pid a user would kill)
    url: str
    problem: str | None  # None: it answers

    @property
    def healthy(self) -> bool:
        """It answers, under supervisord (STARTING: up less than start_seconds so far)."""
        return self.problem is None and self.state in ("RUNNING", "STARTING")


def _select(names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise ServiceError(f"unknown service {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    return [n for n in ORDER if n in names]


def _port(config: ServicesConfig, name: str) -> int:
    return config.ports()[_PORT_KEYS[name]]


def _url(config: ServicesConfig, layout: Layout, name: str) -> str:
    return {
        "postgres": lambda: postgres.masked_uri(config, config.postgres.mlflow_db),
        "mlflow": lambda: servers.mlflow_url(config),
        "prefect": lambda: servers.prefect_api_url(config),
        "sshd": lambda: ssh.remote_url(config, layout),
    }[name]()


def probe(
    config: ServicesConfig, layout: Layout, name: str, creds: Credentials | None
) -> str | None:
    """None if the service answers as its clients need it, else why not."""
    timeout = config.postgres.connect_timeout_seconds
    if name == "postgres":
        return postgres.probe(config, creds.postgres) if creds else "no password yet (never up)"
    if name == "mlflow":
        auth = servers.basic_auth(config.mlflow.admin_user, creds.mlflow_admin) if creds else None
        return servers.mlflow_probe(servers.mlflow_url(config), timeout, auth)
    if name == "prefect":
        return servers.prefect_probe(config, creds)
    return ssh.probe(config.host, config.dvc_remote.ssh_port, timeout)


def _programs(config: ServicesConfig, layout: Layout, creds: Credentials) -> list[Program]:
    programs = system.require()
    return [
        postgres.program(config, layout, programs["postgres"]),
        servers.mlflow_program(config, layout, creds),
        servers.prefect_program(config, layout, creds),
        ssh.program(config, layout, programs["sshd"]),
    ]


def _lock(layout: Layout) -> FileLock:
    layout.run.mkdir(parents=True, exist_ok=True)
    return FileLock(layout.run / "manager.lock")


def _prepare(config: ServicesConfig, layout: Layout) -> Credentials:
    """Everything on disk the services need: secrets, the cluster, keys, configs."""
    programs = system.require()
    layout.prepare()
    creds = credentials.ensure(config, layout)
    postgres.write_pgpass(config, layout, creds.postgres)
    postgres.init_cluster(config, layout, programs["initdb"])
    ssh.prepare(config, layout, programs["ssh-keygen"])
    servers.write_mlflow_auth_config(config, layout)
    text = supervisor.render(config, layout, _programs(config, layout, creds))
    credentials.write_private(layout.supervisor_conf, text)
    return creds


def _start_supervisor(
    config: ServicesConfig, layout: Layout, echo: Echo
) -> tuple[Supervisor, bool]:
    """A supervisord answering on this state folder's socket, following the written config;
    True if it was started now (any orphaned services of a killed one were stopped first)."""
    sup = Supervisor(layout)
    if sup.pid() is not None:
        sup.apply_config()
        return sup, False
    if left := supervisor.orphans(layout):
        killed = supervisor.stop_processes(left, config.stop_timeout_seconds)
        note = f" ({killed} needed SIGKILL)" if killed else ""
        echo(f"stopped {len(left)} process(es) a killed supervisord left running{note}")
    pid = sup.start_daemon(config.start_timeout_seconds)
    echo(f"supervisord: started (pid {pid}), socket {layout.supervisor_socket}")
    return sup, True


def _free_port(config: ServicesConfig, layout: Layout, name: str, sup: Supervisor) -> None:
    """The service's port is free, or held only by leftovers of ours (which are stopped)."""
    port = _port(config, name)
    held = supervisor.listeners(config.host, port)
    if not held:
        return
    ours = {p.pid for p in supervisor.orphans(layout)}
    foreign = [pid for pid in held if pid not in ours]
    if foreign:
        key = _PORT_KEYS[name]
        raise ServiceError(
            f"{name}: {config.host}:{port} is held by {supervisor.describe(foreign[0])}, which "
            f"these services did not start; stop it, or change {key} in params.yaml (or set "
            f"{env_var(key)})"
        )
    import psutil

    procs = [psutil.Process(pid) for pid in held]
    supervisor.stop_processes(procs, config.stop_timeout_seconds)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_ready(
    config: ServicesConfig,
    layout: Layout,
    sup: Supervisor,
    name: str,
    check: Callable[[], str | None],
) -> None:
    """Poll `check` until it passes; fail with the log tail if supervisord gives up."""
    deadline = time.monotonic() + config.start_timeout_seconds
    while (problem := check()) is not None:
        info = sup.info(name) or {}
        if info.get("statename") in ("FATAL", "STOPPED", "EXITED"):
            raise ServiceError(
                f"{name} did not start ({info.get('statename')}: {info.get('spawnerr') or problem}); "
                f"last lines of {layout.log(name)}:\n{_tail(layout.log(name))}"
            )
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{name} not ready after {config.start_timeout_seconds:.0f} s ({problem}); "
                f"see {layout.log(name)}:\n{_tail(layout.log(name))}"
            )
        time.sleep(supervisor.POLL_SECONDS * 4)


def up(
    config: ServicesConfig, layout: Layout, names: Sequence[str] | None = None, echo: Echo = print
) -> None:
    """Start the selected services (all by default) that are not running yet."""
    wanted = _select(names)
    with _lock(layout):
        creds = _prepare(config, layout)
        sup, fresh = _start_supervisor(config, layout, echo)
        if fresh:  # nothing of ours runs now: a subset alone would miss its database
            wanted = list(ORDER)
        started = []
        for name in wanted:
            info = sup.info(name) or {}
            if info.get("statename") in supervisor.RUNNING_STATES:
                echo(f"{name}: already running (pid {info['pid']}) at {_url(config, layout, name)}")
                if name == "postgres":  # a password changed in params.yaml takes effect
                    postgres.ensure_role_and_databases(config, layout, creds.postgres)
                continue
            _free_port(config, layout, name, sup)
            sup.call("startProcess", name, False)
            started.append(name)
            if name == "postgres":  # the others need the role and databases
                _wait_ready(
                    config, layout, sup, name, lambda: postgres.probe_socket(config, layout)
                )
                postgres.ensure_role_and_databases(config, layout, creds.postgres)
        for name in wanted:  # started, or found running: each must answer as clients need
            _wait_ready(config, layout, sup, name, lambda n=name: probe(config, layout, n, creds))
            if name == "mlflow":
                servers.ensure_mlflow_client_account(config, creds)
            if name in started:
                pid = (sup.info(name) or {}).get("pid")
                echo(f"{name}: started (pid {pid}) at {_url(config, layout, name)}")


def down(
    config: ServicesConfig, layout: Layout, names: Sequence[str] | None = None, echo: Echo = print
) -> None:
    """Stop the selected services (all by default), each as a whole process group; stopping all
    also stops supervisord and anything its services left behind."""
    wanted = _select(names)
    with _lock(layout):
        sup = Supervisor(layout)
        if sup.pid() is not None:
            for name in reversed(wanted):
                info = sup.info(name) or {}
                if info.get("statename") not in supervisor.RUNNING_STATES:
                    echo(f"{name}: not running")
                    continue
                sup.call("stopProcess", name, True)
                echo(f"{name}: stopped")
            if len(wanted) == len(ORDER):
                sup.shutdown(config.stop_timeout_seconds * 2)
                echo("supervisord: stopped")
        elif names:
            echo("supervisord: not running")
        if len(wanted) == len(ORDER) and (left := supervisor.orphans(layout)):
            supervisor.stop_processes(left, config.stop_timeout_seconds)
            echo(f"stopped {len(left)} leftover process(es) of {layout.root}")


def status(config: ServicesConfig, layout: Layout) -> tuple[int | None, list[Status]]:
    """supervisord's pid, and per service: its state, pid, who holds its port, whether it answers."""
    creds = credentials.saved(config, layout)
    sup = Supervisor(layout)
    sup_pid = sup.pid()
    rows = []
    for name in ORDER:
        info = (sup.info(name) if sup_pid else None) or {}
        state = info.get("statename", "no supervisor" if sup_pid is None else "unknown")
        pid = info.get("pid") or None
        port = _port(config, name)
        held = supervisor.listeners(config.host, port)
        problem = probe(config, layout, name, creds) if held else f"nothing listens on port {port}"
        rows.append(Status(name, state, pid, port, held, _url(config, layout, name), problem))
    return sup_pid, rows


def format_status(sup_pid: int | None, rows: Sequence[Status], layout: Layout) -> list[str]:
    lines = [
        f"supervisord  pid {sup_pid}  unix://{layout.supervisor_socket}"
        if sup_pid
        else f"supervisord  not running ({layout.supervisor_socket}): `make services-up`"
    ]
    for row in rows:
        held = ",".join(map(str, row.listeners)) or "-"
        verdict = "ok" if row.problem is None else row.problem
        if row.problem is None and not row.healthy:
            verdict = f"answers, but supervisord says {row.state}: `make services-up`"
        pid = row.pid if row.pid else "-"
        lines.append(
            f"{row.name:9} {row.state:9} pid {pid!s:7} port {row.port} held by pid {held:7} "
            f"{row.url}  {verdict}"
        )
    return lines


def client_environment(config: ServicesConfig, layout: Layout) -> dict[str, str]:
    """What a client (a stage, a Prefect worker, a person's shell, another checkout) sets to use
    the services: addresses, credentials, and the state folder and settings they came from."""
    creds = credentials.saved(config, layout)
    if creds is None:
        raise ServiceError(f"no credentials in {layout.secrets} yet: run `make services-up` first")
    client = config.client
    ssh_cmd = 'ssh -i "$GENPIPE_DVC_REMOTE_KEYFILE" -o UserKnownHostsFile="$GENPIPE_SSH_KNOWN_HOSTS ~/.ssh/known_hosts"'
    return {
        "MLFLOW_TRACKING_URI": servers.mlflow_url(config),
        "MLFLOW_TRACKING_USERNAME": config.mlflow.user,
        "MLFLOW_TRACKING_PASSWORD": creds.mlflow_client,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(client.http_max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(client.http_backoff_factor),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(client.http_timeout_seconds),
        "PREFECT_API_URL": servers.prefect_api_url(config),
        "PREFECT_API_AUTH_STRING": creds.prefect_auth_string(config),
        # the services these came from: `make services-status` / `services-dvc-remote` in any
        # checkout find the same ones
        env_var("services.state_dir"): str(layout.root),
        env_var("services.host"): config.host,
        **{env_var(key): str(port) for key, port in config.ports().items()},
        "GENPIPE_DVC_REMOTE_URL": ssh.remote_url(config, layout),
        "GENPIPE_DVC_REMOTE_KEYFILE": str(ssh.client_key(layout)),
        # the code repo behind the same sshd (teammates and workers clone it), and its host key;
        # git runs GIT_SSH_COMMAND through the shell, so it follows the two variables above
        "GENPIPE_CODE_REMOTE_URL": ssh.code_remote_url(config, layout),
        "GENPIPE_SSH_KNOWN_HOSTS": str(ssh.known_hosts(layout)),
        "GIT_SSH_COMMAND": ssh_cmd,
    }


def env_lines(config: ServicesConfig, layout: Layout) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for k, v in client_environment(config, layout).items()]
