"""A team on namespace hosts, for the multi-host tests and benchmarks/multihost.py.

`ctl` runs the team services (`python -m genpipe.services up` with GENPIPE_SERVICES_HOST = its
address: PostgreSQL, MLflow, Prefect, the sshd behind the DVC remote and the code repo) and is the
controller: its checkout is a copy of this project, committed and pushed to the code repo, with
the services' DVC remote. Every worker host gets its own folder: a `git clone` of the code repo
over ssh, copies of the key and known_hosts, its own HOME, TMPDIR and PREFECT_HOME, and runs
`python -m pipelines.worker` (what `make worker` runs) for its pools; each worker keeps its
commits in its own HOME's cache. Hosts talk only over TCP.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import copy_project
from tests.e2e.tiny import shrink_params
from tests.netns import Host, NetnsLab
from tests.params import merge

PYTHON = sys.executable
BIN = str(Path(sys.executable).parent)

# Data stages, decide and register on the controller; the trainings on workers, so two of them
# overlap on two hosts; evaluate on a worker too, downstream of three other hosts' outputs.
TEST_POOLS = {
    "check_params": "local",
    "download": "local",
    "prepare": "local",
    "validate": "local",
    "train_vae": "genpipe-gpu",
    "train_gan": "genpipe-gpu",
    "train_evaluator": "genpipe-cpu",
    "evaluate": "genpipe-cpu",
    "score_val@vae": "local",
    "score_val@gan": "local",
    "decide": "local",
    "register": "local",
}
TEST_ORCHESTRATION = {
    "pools": TEST_POOLS,
    "queue_timeout_seconds": 900,
    "worker_poll_seconds": 1,
    "heartbeat_seconds": 30,
    "zombie_after_seconds": 60,
}


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the test's local stores, the venv first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PREFECT_", "GENPIPE_", "GIT_"))
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "OMP_NUM_THREADS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500",  # as the Makefile exports
            "PREFECT_HOME": str(home / "prefect"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return {**env, **extra}


def _git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Team:
    lab: NetnsLab
    root: Path  # every host's folder lives here
    state: Path  # the services' state folder (on ctl)
    project: Path  # the controller's checkout
    services_env: dict[str, str]  # for `python -m genpipe.services`
    client: dict[str, str]  # what `services env` exports
    workers: dict[tuple[str, str], subprocess.Popen] = field(default_factory=dict)

    @property
    def ctl(self) -> Host:
        return self.lab["ctl"]

    def ctl_env(self, **extra: str) -> dict[str, str]:
        return base_env(self.root / "ctl", **self.client, **extra)

    @contextlib.contextmanager
    def mlflow(self) -> Iterator[Any]:
        """An MlflowClient of the team's server, with the credentials `services env` exports."""
        from unittest import mock

        from mlflow import MlflowClient

        names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        with mock.patch.dict(os.environ, {n: self.client[n] for n in names if n in self.client}):
            yield MlflowClient(tracking_uri=self.mlflow_url)

    @property
    def mlflow_url(self) -> str:
        return self.client["MLFLOW_TRACKING_URI"]

    @property
    def prefect_api(self) -> str:
        return self.client["PREFECT_API_URL"]

    def services(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.ctl.run(
            [PYTHON, "-m", "genpipe.services", *args],
            env=self.services_env,
            cwd=self.project,
            timeout=timeout,
            check=False,
        )

    def host_env(self, host: str) -> dict[str, str]:
        """A worker host's folder (made once) and its environment: the client addresses, its
        copies of the key and known_hosts, its own HOME (so its own commit cache) and TMPDIR."""
        home = self.root / host
        env = base_env(home, TMPDIR=str(home / "tmp"))
        if not (home / "tmp").exists():
            (home / "tmp").mkdir(parents=True)
            for name in ("GENPIPE_DVC_REMOTE_KEYFILE", "GENPIPE_SSH_KNOWN_HOSTS"):
                shutil.copy(self.client[name], home / Path(self.client[name]).name)
        keys = {
            name: str(home / Path(self.client[name]).name)
            for name in ("GENPIPE_DVC_REMOTE_KEYFILE", "GENPIPE_SSH_KNOWN_HOSTS")
        }
        return {**env, **self.client, **keys}

    def start_worker(self, host: str, pool: str, limit: int = 1) -> None:
        """`python -m pipelines.worker --pool POOL` in a clone of the code repo on `host`."""
        env = self.host_env(host)
        checkout = self.root / host / "genpipe"
        if not checkout.exists():
            from pipelines.code_remote import git_env

            self.lab[host].run(
                ["git", "clone", "-q", self.client["GENPIPE_CODE_REMOTE_URL"], str(checkout)],
                env=git_env(env),
                timeout=120,
            )
        self.workers[(host, pool)] = self.lab[host].popen(
            [PYTHON, "-m", "pipelines.worker", "--pool", pool, "--limit", str(limit)],
            log_path=self.root / host / f"worker-{pool}.log",
            env=env,
            cwd=checkout,
        )

    @contextlib.contextmanager
    def prefect(self) -> Iterator[Any]:
        """A sync Prefect client of the team's server (this process's settings say otherwise)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        auth = self.client.get("PREFECT_API_AUTH_STRING")
        with (
            temporary_settings({PREFECT_API_URL: self.prefect_api, PREFECT_API_AUTH_STRING: auth}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def wait_workers(self, timeout: float = 240) -> None:
        """Until every started worker has said hello to the server."""
        deadline = time.monotonic() + timeout
        wanted = {(pool, host) for host, pool in self.workers}
        while True:
            seen = set()
            with self.prefect() as client:
                for pool in {p for p, _ in wanted}:
                    seen |= {(pool, w.name) for w in client.read_workers_for_work_pool(pool)}
            if wanted <= seen:
                return
            for (host, pool), proc in self.workers.items():
                log = self.root / host / f"worker-{pool}.log"
                assert proc.poll() is None, f"worker {host}/{pool} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"workers {wanted - seen} never showed up"
            time.sleep(2)

    def run_flow(self, *overrides: str, log_name: str = "flow") -> subprocess.Popen:
        """`genpipe_pipeline(dispatch=True)` on ctl; its last line is `RESULT <json>`."""
        code = (
            "import json\n"
            "from pipelines.genpipe_flow import genpipe_pipeline\n"
            f"r = genpipe_pipeline(overrides={list(overrides)!r} or None, dispatch=True)\n"
            "print('RESULT ' + json.dumps(r))\n"
        )
        return self.ctl.popen(
            [PYTHON, "-c", code],
            log_path=self.root / f"{log_name}.log",
            env=self.ctl_env(),
            cwd=self.project,
        )

    def flow_result(self, proc: subprocess.Popen, log_name: str = "flow", timeout: float = 1800):
        proc.wait(timeout=timeout)
        log = (self.root / f"{log_name}.log").read_text(errors="replace")
        lines = [ln for ln in log.splitlines() if ln.startswith("RESULT ")]
        return proc.returncode, (json.loads(lines[-1][7:]) if lines else None), log

    def close(self) -> None:
        self.services("down", timeout=120)
        from genpipe.services import supervisor
        from genpipe.services.settings import Layout

        if left := supervisor.orphans(Layout(self.state)):
            supervisor.stop_processes(left, 30)
        shutil.rmtree(self.state, ignore_errors=True)


def start_team(
    lab: NetnsLab, root: Path, params: Mapping[str, Any] | None = None, tiny: bool = True
) -> Team:
    """The controller's checkout (committed) and the services' settings for `ctl`; bring_up
    starts them and workers come with Team.start_worker. Nothing runs yet, so the caller's
    cleanup (Team.close, the lab's) can always follow. `tiny`: tests.e2e.tiny's params."""
    from genpipe.services import system

    system.install_missing()  # openssh-server on a fresh CI machine (root)
    ctl = lab["ctl"]
    (root / "ctl").mkdir(parents=True)
    project = copy_project(root / "ctl" / "project")
    extra = merge({"orchestration": TEST_ORCHESTRATION}, dict(params or {}))
    if tiny:
        shrink_params(project, merge({"evaluate": {"draws": 2}}, extra))
    else:
        path = project / "params.yaml"
        path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), extra)))
    (project / "dvc.lock").unlink(missing_ok=True)
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "multi-host test params")
    # short: the postgres socket lives in it; traversable by the postgres account
    state = Path(tempfile.mkdtemp(prefix="gp-mh-"))
    services_env = base_env(
        root / "ctl",
        GENPIPE_ROOT=str(project),
        GENPIPE_SERVICES_STATE_DIR=str(state),
        GENPIPE_SERVICES_HOST=ctl.address,
    )
    team = Team(lab, root, state, project, services_env, {})
    return team


def bring_up(team: Team) -> None:
    """Services up on ctl, the client env, the code pushed, the DVC remote, the deployments."""
    done = team.services("up")
    assert done.returncode == 0, done.stdout + done.stderr
    env = team.services("env")
    assert env.returncode == 0, env.stderr
    for line in env.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        team.client[key] = value.strip("'")
    for args in (["git-remote", "--repo", str(team.project)], ["dvc-remote"]):
        done = team.services(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    for module in ("pipelines.code_remote", "pipelines.deploy"):  # make push-code deploy-stages
        argv = [PYTHON, "-m", module]
        done = team.ctl.run(argv, env=team.ctl_env(), cwd=team.project, timeout=600, check=False)
        assert done.returncode == 0, f"{module}: {done.stdout}{done.stderr}"


def ctl_command(team: Team, *argv: str, timeout: float = 1800) -> str:
    """A user's command on the controller, in the project; its output, or an AssertionError."""
    done = team.ctl.run(list(argv), env=team.ctl_env(), cwd=team.project, timeout=timeout,
                        check=False)  # fmt: skip
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}{done.stderr[-5000:]}"
    return done.stdout


def share_baseline(team: Team) -> None:
    """The baseline a sweep starts from, as a user makes it: the pipeline, then `make share`
    (outputs to the DVC remote, the commit to the code repo)."""
    for key, value in (("user.name", "controller"), ("user.email", "ctl@example.com")):
        ctl_command(team, "git", "config", key, value)  # ctl's HOME is empty: who commits
    ctl_command(team, f"{BIN}/dvc", "repro")
    ctl_command(team, f"{BIN}/genpipe", "share", "-m", "baseline")


def mlflow_stage_runs(team: Team, pipeline_run_id: str) -> dict[str, list[Any]]:
    """stage -> its MLflow runs tagged with this pipeline run (newest first)."""
    found: dict[str, list[Any]] = {}
    with team.mlflow() as client:
        experiments = [e.experiment_id for e in client.search_experiments()]
        query = f"tags.`genpipe.pipeline_run_id` = '{pipeline_run_id}'"
        for run in client.search_runs(experiments, query):
            found.setdefault(run.data.tags.get("genpipe.stage", "?"), []).append(run)
    return found


def stage_flow_runs(team: Team) -> list[Any]:
    """Every genpipe-stage flow run on the server, oldest first."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with team.prefect() as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["genpipe-stage"])),
            sort=FlowRunSort.START_TIME_ASC,
        )


def host_of(run: Any) -> str | None:
    return (run.labels or {}).get("prefect.worker.name")


def registry(team: Team, prefix: str) -> dict[str, dict[str, Any]]:
    """Registered model `<prefix>-...` -> its versions and champion, on the team's MLflow server."""
    found = {}
    with team.mlflow() as client:
        for model in client.search_registered_models():
            if not model.name.startswith(f"{prefix}-"):
                continue
            versions = client.search_model_versions(f"name = '{model.name}'")
            found[model.name] = {
                "versions": sorted(int(v.version) for v in versions),
                "champion": model.aliases.get("champion"),
            }
    return found


def trainings_on(host: Host) -> set[str]:
    """The training stages (train_vae, ...) whose process lives on this host."""
    import psutil

    found = set()
    for pid in host.pids():
        try:
            argv = psutil.Process(pid).cmdline()
        except psutil.Error:
            continue
        if "genpipe.stages.train" in argv and "--task" in argv[:-1]:
            found.add(f"train_{argv[argv.index('--task') + 1]}")
    return found


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def logs(team: Team, names: Sequence[str] = ()) -> str:
    """The last lines of every log in the team's folders (for assertion messages)."""
    parts = []
    for path in sorted(team.root.rglob("*.log")):
        if not names or any(n in str(path) for n in names):
            parts.append(f"--- {path.relative_to(team.root)}\n{tail(path)}")
    return "\n".join(parts)
