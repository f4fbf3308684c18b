"""DVC stage `score_champions`: score each task's champion (data/registry/champions.json) under
the protocol of data/eval/report.json, into data/eval/incumbents.json.

A stage of its own, apart from evaluate, so that a moved champion reruns only this and decide:
after this checkout's own promotion the champion has a new candidate's weights and its numbers
are copied from the report, with no model run. See genpipe.evaluation.incumbents.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from genpipe import io, tracking
from genpipe.config import Params, load_params
from genpipe.evaluation.schema import Report, read
from genpipe.registry.schema import Champions, ChampionVersion
from genpipe.stages import _cli


def score_champions(params: Params, args: argparse.Namespace) -> None:
    from genpipe import device
    from genpipe.data.dataset import load_prepared
    from genpipe.evaluation.incumbents import score_incumbents
    from genpipe.evaluation.inputs import load_model_file

    report = read(Report, args.report, "evaluate")
    snapshot = read(Champions, args.champions, "champions")
    where = device.select_device(params.runtime.device, device.detect())
    data = load_prepared(args.prepared)
    evaluator = load_model_file(args.evaluator / "model.pt", "classifier", where).module
    with tempfile.TemporaryDirectory() as scratch:

        def fetch(champion: ChampionVersion) -> Path:
            return tracking.download_model_file(champion.source, Path(scratch) / champion.version)

        incumbents = score_incumbents(
            report, snapshot, data, evaluator, params.evaluate, where, fetch
        )
    io.write_json(args.out, incumbents.model_dump(mode="json"))


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--champions", type=Path, default=Path("data/registry/champions.json"))
    p.add_argument("--report", type=Path, default=Path("data/eval/report.json"))
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--evaluator", type=Path, default=Path("data/models/evaluator"))
    p.add_argument("--out", type=Path, default=Path("data/eval/incumbents.json"))
    args = p.parse_args(argv)
    return _cli.run("score_champions", lambda: score_champions(load_params(args.params), args))


if __name__ == "__main__":
    raise SystemExit(main())
