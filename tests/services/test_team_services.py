"""The team services for real: PostgreSQL, `mlflow server`, `prefect server` and the sshd behind the
DVC remote, under supervisord, started by `python -m genpipe.services up` on 127.0.0.1 and free
ports.

The tests share one set of services (the module fixture) and run in file order: the fault cases
restore what they break, and the last test stops everything and checks nothing is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import venv_bin
from tests.services.conftest import TeamServices

# one worker runs the module, so its services (the module fixture `team`) start once
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("team-services")]

SQLITE_MAGIC = b"SQLite format 3\x00"


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll until `path` exists; fail with the process's output if it exits first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"client exited ({proc.returncode}) before {path.name}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"no {path.name} within {timeout} s"
        time.sleep(0.2)


def get(url: str, authorization: str | None = None) -> str:
    request = urllib.request.Request(url)
    if authorization:
        request.add_header("Authorization", authorization)
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.read().decode()


def status_code(url: str, authorization: str | None = None, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_services_come_up_and_answer(team: TeamServices) -> None:
    import psycopg2

    from genpipe.services import credentials
    from genpipe.services.servers import basic_auth
    from genpipe.services.settings import Layout

    # every service answers `status`'s probe (5 s each): a deadline, as a machine running the
    # rest of the suite beside it can make a server that just came up answer slowly at first
    deadline = time.monotonic() + 180
    while True:  # a missed probe makes status exit 3: ask again until the deadline
        code, rows = team.status()
        assert list(rows) == ["supervisord", "postgres", "mlflow", "prefect", "sshd"]
        services = list(rows.values())[1:]
        if code == 0 and all(row[1] == "RUNNING" and row[-1] == "ok" for row in services):
            break
        assert time.monotonic() < deadline, (code, rows)
    again = team.cli("up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 4

    env = team.client_env()
    assert get(f"{env['MLFLOW_TRACKING_URI']}/health").strip() == "OK"
    assert json.loads(get(f"{env['PREFECT_API_URL']}/health")) is True

    # without credentials: 401 from both servers; with services-env's: 200
    search = f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    flows = f"{env['PREFECT_API_URL']}/flows/filter"
    assert status_code(search) == 401
    assert status_code(flows, body=b"{}") == 401
    user, password = env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]
    assert status_code(search, basic_auth(user, password)) == 200
    assert status_code(search, basic_auth(user, "wrong")) == 401
    prefect_user, _, prefect_password = env["PREFECT_API_AUTH_STRING"].partition(":")
    assert status_code(flows, basic_auth(prefect_user, prefect_password), b"{}") == 200
    # the secrets are the owner's alone
    secrets = team.state / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert {f.stat().st_mode & 0o777 for f in secrets.iterdir()} == {0o600}
    assert (team.state / "supervisord.conf").stat().st_mode & 0o777 == 0o600

    config = team.config()
    pg = config.postgres
    password = credentials.saved(config, Layout.of(config)).postgres
    login = {"host": "127.0.0.1", "port": pg.port, "user": pg.user, "connect_timeout": 10}
    for db in (pg.mlflow_db, pg.prefect_db):
        with psycopg2.connect(dbname=db, password=password, **login) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (pg.user,)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(dbname=pg.mlflow_db, password="wrong-password", **login)


TOY_DVC = """
stages:
  scale:
    cmd: python scale.py
    deps: [scale.py, numbers.txt]
    params: [factor]
    outs: [scaled.txt]
"""
TOY_STAGE = """
import os, yaml
factor = yaml.safe_load(open("params.yaml"))["factor"]
numbers = [int(x) for x in open("numbers.txt").read().split()]
open("scaled.txt", "w").write(" ".join(str(n * factor) for n in numbers))
with open(os.environ["STAGE_RUNS"], "a") as log:  # outside the repo: counts real executions
    log.write(f"{os.getcwd()} factor={factor}\\n")
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_dvc_remote_over_ssh_pushes_and_pulls_the_run_cache(
    team: TeamServices, tmp_path: Path
) -> None:
    runs = tmp_path / "stage-runs.log"
    env = {
        **os.environ,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}",
        "STAGE_RUNS": str(runs),
    }
    dvc = [str(venv_bin() / "dvc")]
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "dvc.yaml").write_text(TOY_DVC)
    (origin / "scale.py").write_text(TOY_STAGE)
    (origin / "numbers.txt").write_text("1 2 3")
    (origin / "params.yaml").write_text("factor: 3\n")
    _run([*git, "init", "-q"], origin, env)
    _run([*dvc, "init", "-q"], origin, env)
    added = team.cli("dvc-remote", "--repo", str(origin))
    assert added.returncode == 0, added.stderr

    # two runs (factor 2, then the committed factor 3), each pushed as a team member would: the
    # run cache holds both. (`push --run-cache` sends the run records, not the outputs of runs
    # that are no longer in the workspace, so each run's outputs go up after that run.)
    (origin / "params.yaml").write_text("factor: 2\n")
    _run([*dvc, "repro"], origin, env)
    _run([*dvc, "push"], origin, env)
    (origin / "params.yaml").write_text("factor: 3\n")
    _run([*dvc, "repro"], origin, env)
    assert (origin / "scaled.txt").read_text() == "3 6 9"
    _run([*git, "add", "-A"], origin, env)
    _run([*git, "commit", "-qm", "toy pipeline"], origin, env)
    pushed = _run([*dvc, "push", "--run-cache"], origin, env)
    assert "pushed" in pushed
    remote = team.state / "dvc-remote"
    assert any((remote / "files" / "md5").rglob("*")) and any((remote / "runs").rglob("*"))
    assert len(runs.read_text().splitlines()) == 2

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not (clone / ".dvc" / "cache").exists()  # nothing local: all comes from the remote
    assert team.cli("dvc-remote", "--repo", str(clone)).returncode == 0
    _run([*dvc, "pull", "--run-cache"], clone, env)
    assert (clone / "scaled.txt").read_text() == "3 6 9"
    assert "up to date" in _run([*dvc, "status"], clone, env)
    repro = _run([*dvc, "repro"], clone, env)
    assert "Running stage" not in repro, repro

    # the other parameter set is restored from the pulled run cache (its outputs fetched from
    # the remote by --pull), not run
    (clone / "params.yaml").write_text("factor: 2\n")
    restored = _run([*dvc, "repro", "--pull"], clone, env)
    assert "Running stage" not in restored and "skipping run" in restored, restored
    assert (clone / "scaled.txt").read_text() == "2 4 6"
    assert len(runs.read_text().splitlines()) == 2  # the stage never ran in the clone


def test_three_concurrent_writers_lose_nothing(
    team: TeamServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from tests.services.mlflow_client import METRICS

    writers, runs, steps = 3, 4, 10
    env = team.login(monkeypatch)
    procs = [
        team.client("write", "concurrent", str(w), str(runs), str(steps), env=env, cwd=tmp_path)
        for w in range(writers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("concurrent")
    found = client.search_runs([exp.experiment_id], max_results=1000)
    assert sorted(r.info.run_name for r in found) == sorted(
        f"w{w}-r{r}" for w in range(writers) for r in range(runs)
    )
    for run in found:
        assert run.info.status == "FINISHED"
        for i, name in enumerate(METRICS):
            history = client.get_metric_history(run.info.run_id, name)
            assert sorted((m.step, m.value) for m in history) == [
                (s, s * 10 + i) for s in range(steps)
            ]
        note = Path(client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path)))
        assert (
            note.read_text() == f"writer {run.data.params['writer']} run {run.data.params['run']}"
        )


def test_mlflow_restart_while_clients_log(
    team: TeamServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client with the exported retry settings rides out the restart and finishes; one allowed
    a single immediate retry fails with MLflow's error naming the server's URL."""
    from mlflow import MlflowClient

    steps = 5
    patient_dir, impatient_dir = tmp_path / "patient", tmp_path / "impatient"
    patient_dir.mkdir()
    impatient_dir.mkdir()
    env = team.login(monkeypatch)
    uri = env["MLFLOW_TRACKING_URI"]
    impatient_env = {
        **env,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    }
    patient = team.client("phased", "restart", str(patient_dir), str(steps), env=env, cwd=tmp_path)
    impatient = team.client(
        "phased", "restart", str(impatient_dir), str(steps), env=impatient_env, cwd=tmp_path
    )
    wait_for(patient_dir / "phase1", patient)
    wait_for(impatient_dir / "phase1", impatient)

    stopped = team.cli("down", "mlflow")
    assert stopped.returncode == 0, stopped.stderr
    (patient_dir / "go").touch()
    (impatient_dir / "go").touch()
    wait_for(patient_dir / "calling", patient)
    _, err = impatient.communicate(timeout=300)  # cannot succeed while the server is down
    assert impatient.returncode != 0
    assert uri in err, err[-3000:]
    assert patient.poll() is None  # still retrying: it cannot finish without the server

    started = team.cli("up", "mlflow")
    assert started.returncode == 0, started.stdout + started.stderr
    out, err = patient.communicate(timeout=600)
    assert patient.returncode == 0, err[-3000:]
    history = MlflowClient(tracking_uri=uri).get_metric_history(out.split()[0], "loss")
    assert sorted(m.step for m in history) == list(range(2 * steps))


def test_postgres_down_is_a_clear_error_naming_the_uri(team: TeamServices, tmp_path: Path) -> None:
    from genpipe.services import credentials, postgres
    from genpipe.services.settings import Layout

    config = team.config()
    pg_port = str(config.postgres.port)
    assert team.cli("down", "postgres").returncode == 0
    try:
        # a client going through the MLflow server: genpipe's pre-flight check, no retry loop
        env = team.client_env()
        check = team.client("check", env=env, cwd=tmp_path)
        _, err = check.communicate(timeout=120)
        assert check.returncode != 0
        assert f"MLflow server at {env['MLFLOW_TRACKING_URI']} cannot use its database" in err
        assert "make services-status" in err
        assert f'"127.0.0.1", port {pg_port} failed' in err

        # the services' own health checks
        status = team.cli("status")
        assert status.returncode == 3
        assert (
            f"postgresql://{config.postgres.user}:***@127.0.0.1:{pg_port}/mlflow" in status.stdout
        )
        assert f"port {pg_port} failed" in status.stdout  # the mlflow row relays the server's error
        reason = postgres.probe(config, credentials.saved(config, Layout.of(config)).postgres)
        assert reason is not None and reason.startswith(
            f"postgresql://{config.postgres.user}:***@127.0.0.1:{pg_port}/"
        )
    finally:
        assert team.cli("up", "postgres").returncode == 0
    status = team.cli("status")
    assert status.returncode == 0, status.stdout  # the servers reconnect by themselves


FLOW = """
from prefect import flow, task

@task
def double(x: int) -> int:
    return 2 * x

@flow(name="services-smoke")
def smoke() -> int:
    return double(21)

assert smoke() == 42
"""


def test_services_mode_writes_no_sqlite_store(team: TeamServices, tmp_path: Path) -> None:
    """A stage-like client (genpipe.tracking) and a Prefect flow run against the servers; then
    no SQLite file exists in the client's project, its PREFECT_HOME, or the state folder."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / "flow.py").write_text(FLOW)
    env = team.client_env(GENPIPE_ROOT=str(project), PREFECT_HOME=str(project / ".prefect"))
    writer = team.client("write", "no-sqlite", "0", "1", "3", env=env, cwd=project)
    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    flow = subprocess.run(
        [sys.executable, "flow.py"], cwd=project, env=env, capture_output=True, text=True
    )
    assert flow.returncode == 0, flow.stderr[-3000:]

    api = env["PREFECT_API_URL"]
    body = json.dumps({"flows": {"name": {"any_": ["services-smoke"]}}}).encode()
    req = urllib.request.Request(
        f"{api}/flow_runs/filter", body, {"Content-Type": "application/json"}
    )
    user, _, password = env["PREFECT_API_AUTH_STRING"].partition(":")
    from genpipe.services.servers import basic_auth

    req.add_header("Authorization", basic_auth(user, password))
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert [r["state_type"] for r in json.load(resp)] == ["COMPLETED"]

    sqlite = [
        p
        for folder in (project, team.state)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and _starts_with(p, SQLITE_MAGIC)
    ]
    assert sqlite == []
    assert not (project / "mlflow").exists()


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


TWO_STAGES = """
stages:
  small:
    cmd: python -c "open('small.txt', 'w').write('small')"
    deps: [numbers.txt]
    outs: [small.txt]
  big:
    cmd: python -c "import os; os.makedirs('big', exist_ok=True); [open(f'big/{i}', 'wb').write(os.urandom(96 * 1024)) for i in range(3)]"
    deps: [small.txt]
    outs: [big]
"""


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 160 KiB filesystem: room for the small stage's output, not for the big one's."""
    folder = tmp_path / "full"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_remote_names_no_space_and_never_shares_a_record_without_outputs(
    team: TeamServices, tmp_path: Path, small_tmpfs: Path
) -> None:
    import getpass

    import yaml

    from genpipe import share

    env = {**team.client_env(), "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    dvc = [str(venv_bin() / "dvc")]
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{team.ports['DVC_REMOTE_SSH_PORT']}{small_tmpfs}"
    a = tmp_path / "a"
    a.mkdir()
    (a / "dvc.yaml").write_text(TWO_STAGES)
    (a / "numbers.txt").write_text("1 2 3")
    _run([*git, "init", "-q"], a, env)
    _run([*dvc, "init", "-q"], a, env)
    _run([*dvc, "repro"], a, env)
    _run([*git, "add", "-A"], a, env)
    _run([*git, "commit", "-qm", "two stages"], a, env)
    for repo in (a,):
        _run([*dvc, "remote", "add", "--local", "-d", "full", url], repo, env)
        _run(
            [
                *dvc,
                "remote",
                "modify",
                "--local",
                "full",
                "keyfile",
                env["GENPIPE_DVC_REMOTE_KEYFILE"],
            ],
            repo,
            env,
        )

    with pytest.raises(share.ShareError) as err:
        share.push(a)
    message = str(err.value)
    assert "no space left on the remote" in message and str(small_tmpfs) in message, message
    assert "no run record was pushed for big" in message

    # what the remote holds: records only with every output they name
    records = [p for p in (small_tmpfs / "runs").rglob("*") if p.is_file()]
    assert len(records) == 1  # small's
    for record in records:
        for out in yaml.safe_load(record.read_text())["outs"]:
            path = small_tmpfs / "files" / "md5" / out["md5"][:2] / out["md5"][2:]
            assert path.is_file(), out

    # B, a fresh clone: its pull restores the small stage and runs the big one, never half
    b = tmp_path / "b"
    _run(["git", "clone", "-q", str(a), str(b)], tmp_path, env)
    _run([*dvc, "remote", "add", "--local", "-d", "full", url], b, env)
    _run(
        [*dvc, "remote", "modify", "--local", "full", "keyfile", env["GENPIPE_DVC_REMOTE_KEYFILE"]],
        b,
        env,
    )
    out = _run([*dvc, "repro", "--pull"], b, env)
    assert "Running stage 'small'" not in out and "Running stage 'big'" in out, out
    assert (b / "small.txt").read_text() == "small"


def test_down_stops_everything_and_leaves_no_process(team: TeamServices) -> None:
    import psutil

    from genpipe.services import supervisor
    from genpipe.services.settings import Layout

    layout = Layout(team.state)
    pids = {p.pid for p in supervisor.orphans(layout)}
    assert len(pids) > 4  # uvicorn workers, the reaper: more than the four services

    done = team.cli("down")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("stopped") >= 5  # four services and supervisord
    assert [
        p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ] == []
    assert supervisor.orphans(layout) == []
    code, rows = team.status()
    assert code == 3 and rows["supervisord"][1] == "not"
    for port in team.ports.values():
        assert supervisor.listeners("127.0.0.1", port) == []
