"""up / down / status / env of the team services, in dependency order.

`up` is idempotent: a service already running is left alone. If a service fails to come up, the
ones this call started are stopped again, so a failed `up` leaves what it found. `down` stops in
reverse order, then sweeps any process still marked as belonging to the state folder.
"""

from __future__ import annotations

import shlex
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from filelock import FileLock

from genpipe.config import ServicesConfig
from genpipe.config.services import env_var
from genpipe.services import postgres, processes, servers, ssh, system
from genpipe.services.processes import Service
from genpipe.services.settings import Layout, ServiceError, postgres_password

ORDER = ("postgres", "mlflow", "prefect", "sshd")  # start order; stop is the reverse
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Status:
    name: str
    pid: int | None
    url: str
    problem: str | None  # None: running and answering

    @property
    def healthy(self) -> bool:
        return self.pid is not None and self.problem is None


def _select(names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise ServiceError(f"unknown service {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    return [n for n in ORDER if n in names]


def _services(
    config: ServicesConfig, layout: Layout, programs: dict, password: str | None
) -> dict[str, Service]:
    return {
        "postgres": postgres.service(config, layout, programs["postgres"], password),
        "mlflow": servers.mlflow_service(config, layout),
        "prefect": servers.prefect_service(config, layout, password),
        "sshd": ssh.service(config, layout, programs["sshd"]),
    }


def _known_programs() -> dict:
    """Programs for `down`/`status`, which must work even when some are missing."""
    return {p: system.find(p) for p in system.PACKAGES}


def _saved_password(config: ServicesConfig, layout: Layout) -> str | None:
    """The role's password if `up` has run (status must not create the state folder)."""
    if config.postgres.password is not None or layout.postgres_password.exists():
        return postgres_password(config, layout)
    return None


def _lock(layout: Layout) -> FileLock:
    layout.run.mkdir(parents=True, exist_ok=True)
    return FileLock(layout.run / "manager.lock")


def _wait_ready(svc: Service, layout: Layout, record: processes.Record, timeout: float) -> None:
    """Poll the readiness check until it passes; fail with the log tail if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if not processes.alive(record.pid, record.start_ticks):
            raise ServiceError(
                f"{svc.name} exited during start-up; last lines of {layout.log(svc.name)}:\n"
                + processes.tail(layout.log(svc.name))
            )
        problem = svc.probe()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{svc.name} not ready after {timeout:.0f} s ({problem}); "
                f"see {layout.log(svc.name)}:\n" + processes.tail(layout.log(svc.name))
            )
        time.sleep(processes.POLL_SECONDS)


def up(
    config: ServicesConfig, layout: Layout, names: Sequence[str] | None = None, echo: Echo = print
) -> None:
    """Start the selected services (all by default) that are not running yet."""
    wanted = _select(names)
    programs = system.require()
    layout.prepare()
    with _lock(layout):
        password = postgres_password(config, layout)
        postgres.write_pgpass(config, layout, password)
        services = _services(config, layout, programs, password)
        started: list[tuple[Service, processes.Record]] = []
        try:
            for name in wanted:
                svc = services[name]
                if (record := processes.running(layout.pidfile(name))) is not None:
                    echo(f"{name}: already running (pid {record.pid}) at {svc.url}")
                    if name == "postgres":  # a password changed in params.yaml takes effect
                        postgres.ensure_role_and_databases(config, layout, password)
                    continue
                _check_port(config, name)
                if name == "postgres":
                    postgres.init_cluster(config, layout, programs["initdb"])
                if name == "sshd":
                    ssh.prepare(config, layout, programs["ssh-keygen"])
                record = processes.start(svc, layout.pidfile(name), layout.log(name), layout.root)
                started.append((svc, record))
                if name == "postgres":  # the others need the role and databases
                    _wait_ready(
                        _socket_probe(svc, config, layout),
                        layout,
                        record,
                        config.start_timeout_seconds,
                    )
                    postgres.ensure_role_and_databases(config, layout, password)
            for svc, record in started:
                _wait_ready(svc, layout, record, config.start_timeout_seconds)
                echo(f"{svc.name}: started (pid {record.pid}) at {svc.url}")
        except BaseException:
            for svc, record in reversed(started):
                processes.stop(record, svc.stop_signal, config.stop_timeout_seconds)
                layout.pidfile(svc.name).unlink(missing_ok=True)
            raise


def _socket_probe(svc: Service, config: ServicesConfig, layout: Layout) -> Service:
    """The postgres service whose readiness is 'the superuser gets in over the socket'."""
    return replace(svc, probe=lambda: postgres.probe_socket(config, layout))


_PORT_KEYS = {
    "postgres": "services.postgres.port",
    "mlflow": "services.mlflow.port",
    "prefect": "services.prefect.port",
    "sshd": "services.dvc_remote.ssh_port",
}


def _check_port(config: ServicesConfig, name: str) -> None:
    key = _PORT_KEYS[name]
    port = config.ports()[key]
    if processes.port_in_use(config.host, port):
        raise ServiceError(
            f"{name}: {config.host}:{port} is in use (or not an address of this host); "
            f"stop what holds it or change {key} in params.yaml (or set {env_var(key)})"
        )


def down(
    config: ServicesConfig, layout: Layout, names: Sequence[str] | None = None, echo: Echo = print
) -> None:
    """Stop the selected services (all by default): SIGTERM (postgres: SIGINT, its fast
    shutdown), then SIGKILL after services.stop_timeout_seconds."""
    wanted = _select(names)
    services = _services(config, layout, _known_programs(), None)
    with _lock(layout):
        for name in reversed(wanted):
            pidfile = layout.pidfile(name)
            record = processes.running(pidfile)
            if record is None:
                echo(f"{name}: not running")
                continue
            killed = processes.stop(record, services[name].stop_signal, config.stop_timeout_seconds)
            pidfile.unlink(missing_ok=True)
            note = f" (SIGKILL after {config.stop_timeout_seconds:.0f} s)" if killed else ""
            echo(f"{name}: stopped{note}")
        if len(wanted) == len(ORDER) and (strays := processes.marked(layout.root)):
            processes.terminate(strays, signal.SIGTERM, config.stop_timeout_seconds)
            echo(f"stopped {len(strays)} leftover process(es) of {layout.root}")


def status(config: ServicesConfig, layout: Layout) -> list[Status]:
    """Each service: its pid if running, and whether its readiness check passes now."""
    services = _services(config, layout, _known_programs(), _saved_password(config, layout))
    result = []
    for name in ORDER:
        svc = services[name]
        record = processes.running(layout.pidfile(name))
        problem = "not running" if record is None else svc.probe()
        result.append(Status(name, record.pid if record else None, svc.url, problem))
    return result


def client_environment(config: ServicesConfig, layout: Layout) -> dict[str, str]:
    """What a client (a stage, a Prefect worker, a person's shell) sets to use the services."""
    client = config.client
    return {
        "MLFLOW_TRACKING_URI": servers.mlflow_url(config),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(client.http_max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(client.http_backoff_factor),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(client.http_timeout_seconds),
        "PREFECT_API_URL": servers.prefect_api_url(config),
        "GENPIPE_DVC_REMOTE_URL": ssh.remote_url(config, layout),
        "GENPIPE_DVC_REMOTE_KEYFILE": str(ssh.client_key(layout)),
        # for workers (pipelines/worker.py): the code repo behind the same sshd, and its host key
        "GENPIPE_CODE_REMOTE_URL": ssh.code_remote_url(config, layout),
        "GENPIPE_SSH_KNOWN_HOSTS": str(ssh.known_hosts(layout)),
    }


def env_lines(config: ServicesConfig, layout: Layout) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for k, v in client_environment(config, layout).items()]
