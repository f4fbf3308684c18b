"""Retention: drop what removed sweep members left behind, in DVC and in MLflow.

    dvc exp remove <member> ...                    # or dvc exp remove --rev HEAD --all
    make sweep-gc                                  # python -m pipelines.sweep_gc [--cloud] [--dry]

1. MLflow: the runs of members that no DVC experiment holds any more (removed, or failed) and
   the stage runs nested under them are marked deleted (runs a registered model version comes
   from stay), then purged with their artifacts by `mlflow gc --backend-store-uri <store>
   --run-ids ...`, on the store this checkout logs to (or `--backend-store-uri` for a server's).
2. DVC: `dvc gc --workspace --all-commits --all-experiments [--cloud]` drops cached outputs that
   neither a commit, nor an experiment still held, nor the workspace uses; `--cloud` drops them
   from the default remote (or `--remote NAME`) too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from genpipe import tracking
from genpipe.errors import GenpipeError
from genpipe.settings import get_settings


def backend_store(explicit: str | None) -> str:
    """The database `mlflow gc` deletes from: named, never MLflow's ./mlflow.db default."""
    if explicit:
        return explicit
    uri = get_settings().tracking_uri
    if uri.startswith(("http://", "https://")):
        raise GenpipeError(
            f"runs are logged to the server {uri}; `mlflow gc` needs that server's backend "
            "store: pass --backend-store-uri (the database the server was started with)"
        )
    return uri


def held_experiments(root: Path) -> set[str]:
    """Names of every experiment DVC holds, on any commit."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        listed = repo.experiments.ls(all_commits=True)
    return {name for exps in listed.values() for name, _ in exps if name}


def collect(root: Path, cloud: bool, remote: str | None, store: str, dry: bool) -> list[str]:
    dropped = tracking.drop_member_runs(held_experiments(root), dry=dry)
    print(f"MLflow: {len(dropped)} runs of removed sweep members" + (" (dry run)" if dry else ""))
    if dropped and not dry:
        command = [
            str(Path(sys.executable).with_name("mlflow")),
            "gc",
            "--backend-store-uri",
            store,
            "--run-ids",
            ",".join(dropped),
        ]
        env = {**os.environ, "MLFLOW_TRACKING_URI": get_settings().tracking_uri}
        subprocess.run(command, cwd=root, env=env, check=True)
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.gc(
            workspace=True,
            all_commits=True,
            all_experiments=True,
            cloud=cloud,
            remote=remote,
            force=True,
            dry=dry,
        )
    return dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cloud", action="store_true", help="also drop them from the DVC remote")
    p.add_argument("--remote", default=None, help="the DVC remote (default: the default remote)")
    p.add_argument("--backend-store-uri", default=None, help="MLflow's database, if a server's")
    p.add_argument("--dry", action="store_true", help="only say what would go")
    args = p.parse_args(argv)
    from genpipe.settings import project_root

    try:
        collect(
            project_root(),
            args.cloud or args.remote is not None,
            args.remote,
            backend_store(args.backend_store_uri),
            args.dry,
        )
    except GenpipeError as exc:
        print(f"genpipe sweep-gc: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
