"""What Prefect and DVC cost with none of genpipe's work, for `benchmarks.multihost --floor`.

`noop` is the trivial flow its Prefect deployments run; this module imports only Prefect at the
top, so a flow run that loads it pays Prefect's own import and nothing of genpipe's.
`push_times` and `pull_times` run on a namespace host (`python -c`), each in one process as
genpipe's flows call DVC: new small files through a scratch DVC repo and the team's SSH remote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow


@flow(name="genpipe-floor")
def noop() -> None:
    """Does nothing: a run of it is Prefect's cost alone."""


def _scratch(folder: Path) -> None:
    from dvc.repo import Repo

    folder.mkdir(parents=True)
    Repo.init(str(folder), no_scm=True).close()


def _dvc(folder: Path, *args: str) -> float:
    started = time.monotonic()
    subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=folder, check=True,
                   capture_output=True)  # fmt: skip
    return time.monotonic() - started


def push_times(folder: Path, n: int, size: int) -> None:
    """On a worker: n new files of `size` random bytes, each added and pushed through DVC's API,
    then n more through the CLI (`dvc push FILE`), with the remote and cache a stage's workspace
    gets (pipelines.stage_flow.configure). Prints the seconds as JSON."""
    from dvc.repo import Repo

    from pipelines.stage_flow import configure

    _scratch(folder)
    configure(folder, params="", lock="")
    found: dict[str, list[float]] = {"api": [], "cli": []}
    with Repo(str(folder)) as repo:
        for i in range(n):
            path = folder / f"api-{i}.bin"
            path.write_bytes(os.urandom(size))
            repo.add([str(path)])
            started = time.monotonic()
            repo.push(targets=[str(path)])
            found["api"].append(time.monotonic() - started)
    for i in range(n):
        (folder / f"cli-{i}.bin").write_bytes(os.urandom(size))
        _dvc(folder, "add", "-q", f"cli-{i}.bin")
        found["cli"].append(_dvc(folder, "push", "-q", f"cli-{i}.bin"))
    print("RESULT " + json.dumps(found))


def pull_times(folder: Path, pushed: Path, config: Path, n: int) -> None:
    """On the controller: the files `push_times` pushed from `pushed`, each pulled into a scratch
    repo with the controller checkout's remote (`config`, its .dvc/config.local) and an empty
    cache, through DVC's API, then through the CLI (`dvc pull FILE`). Prints the seconds as JSON."""
    from dvc.repo import Repo

    _scratch(folder)
    shutil.copy(config, folder / ".dvc" / "config.local")
    for dvcfile in pushed.glob("*.bin.dvc"):
        shutil.copy(dvcfile, folder / dvcfile.name)
    found: dict[str, list[float]] = {"api": [], "cli": []}
    with Repo(str(folder)) as repo:
        for i in range(n):
            started = time.monotonic()
            repo.pull(targets=[str(folder / f"api-{i}.bin")])
            found["api"].append(time.monotonic() - started)
    for i in range(n):
        found["cli"].append(_dvc(folder, "pull", "-q", f"cli-{i}.bin"))
    print("RESULT " + json.dumps(found))
