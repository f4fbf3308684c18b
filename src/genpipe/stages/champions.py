"""DVC stage `champions` (always runs): snapshot each task's `champion` from the MLflow registry
into data/registry/champions.json.

The registry is state DVC cannot see; this small file is how it becomes a dependency. The
stages that score the champion and decide depend on it, so a moved champion (a teammate's
promotion, a rollback, a wiped store) reruns them, and an unmoved one reruns nothing. It is the
one stage that runs on every `dvc repro`: keep it to one read of the registry.
"""

from __future__ import annotations

from pathlib import Path

from genpipe import io
from genpipe.config import load_params
from genpipe.registry import mlflow_registry
from genpipe.registry.decision import TASKS, model_name
from genpipe.stages import _cli
from genpipe.tracking import configure_mlflow


def champions(params_path: Path, out: Path) -> None:
    params = load_params(params_path)
    prefix, dataset = params.register.model_name_prefix, params.data.name
    configure_mlflow()
    snapshot = mlflow_registry.snapshot({t: model_name(prefix, dataset, t) for t in TASKS})
    io.write_json(out, snapshot.model_dump(mode="json"))


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "champions")
    p.add_argument("--out", type=Path, required=True, help="data/registry/champions.json")
    args = p.parse_args(argv)
    return _cli.run("champions", lambda: champions(Path(args.params), args.out))


if __name__ == "__main__":
    raise SystemExit(main())
