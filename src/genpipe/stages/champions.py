"""DVC stage `champions` (always runs): snapshot each task's `champion` from the MLflow registry
into data/registry/champions.json.

The registry is state DVC cannot see; this small file is how it becomes a dependency. The
stages that score the champion and decide depend on it, so a moved champion (a teammate's
promotion, a rollback, a wiped store) reruns them, and an unmoved one reruns nothing. It is the
one stage that runs on every `dvc repro`: keep it to one read of the registry. Being that stage,
it also cleans what dead trainings left (genpipe.tracking.clean_orphans), which must happen even
when the trainings themselves are restored from the run-cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe import io, tracking
from genpipe.config import load_params
from genpipe.registry import mlflow_registry
from genpipe.registry.decision import TASKS, model_name
from genpipe.stages import _cli
from genpipe.tracking import configure_mlflow

log = logging.getLogger(__name__)


def champions(params_path: Path, out: Path, work: Path) -> None:
    params = load_params(params_path)
    prefix, dataset = params.register.model_name_prefix, params.data.name
    configure_mlflow()
    for line in tracking.clean_orphans(work):  # even when the trainings came from the run-cache
        log.info("%s", line)
    snapshot = mlflow_registry.snapshot({t: model_name(prefix, dataset, t) for t in TASKS})
    io.write_json(out, snapshot.model_dump(mode="json"))


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "champions")
    p.add_argument("--out", type=Path, required=True, help="data/registry/champions.json")
    p.add_argument(
        "--work", type=Path, required=True, help="resume folders of the trainings (.genpipe/work)"
    )
    args = p.parse_args(argv)
    return _cli.run("champions", lambda: champions(Path(args.params), args.out, args.work))


if __name__ == "__main__":
    raise SystemExit(main())
