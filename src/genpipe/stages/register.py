"""DVC stage `register`: promote the better model per task to `champion` in the MLflow registry.

Writes data/register/decision.json (DVC metrics) and decision.md; see genpipe.registry.publish.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from genpipe import io
from genpipe.config import Params
from genpipe.errors import GenpipeError
from genpipe.registry.decision import markdown
from genpipe.registry.publish import RegisterJob, register_champions
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def read_report(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GenpipeError(
            f"{path}: evaluate report not found; run `dvc repro evaluate` first"
        ) from None
    except json.JSONDecodeError as exc:
        raise GenpipeError(f"{path}: not valid JSON ({exc}); rerun the evaluate stage") from None


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "register")
    p.add_argument("--report", type=Path, required=True, help="data/eval/report.json")
    p.add_argument("--vae", type=Path, required=True, help="VAE model dir")
    p.add_argument("--gan", type=Path, required=True, help="GAN model dir")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for decision.json and decision.md"
    )
    args = p.parse_args(argv)

    def body(params: Params) -> int:
        job = RegisterJob(
            report=read_report(args.report),
            model_dirs={"vae": args.vae, "gan": args.gan},
            config=params.register,
        )
        record = register_champions(job)
        io.write_json(args.out / "decision.json", record)
        io.write_text(args.out / "decision.md", markdown(record))
        for task, d in record["tasks"].items():
            reg = d["registry"]
            state = "champion" if reg["promoted"] else "challenger only"
            log.info(
                "%s: %s wins by %.4g; %s v%s -> %s",
                task,
                d["winner"]["family"],
                d["margin"],
                reg["name"],
                reg["version"],
                state,
            )
        return 0

    return _cli.run("register", body, args.params)


if __name__ == "__main__":
    raise SystemExit(main())
