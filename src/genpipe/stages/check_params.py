"""Stage `check_params` (head of the graph): validate params.yaml before DVC touches an output.

DVC deletes a stage's outputs before it runs the stage, so a typo found by the stage itself
(`gan.epochs: -3`, `data.image_size: abc`) would cost that stage's outputs. This stage runs
first whenever a section a stage reads changes, and fails there, naming the key. Its output's
content never changes, so rerunning it reruns nothing downstream.
"""

from __future__ import annotations

from pathlib import Path

from genpipe import io
from genpipe.config import load_params
from genpipe.stages import _cli

PASSED = "params.yaml passed genpipe's checks\n"  # constant: downstream stages see no change


def check(params: Path, out: Path) -> None:
    load_params(params)  # every section, typed and bounded; the error names the key
    io.write_text(out, PASSED)


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "check_params")
    p.add_argument("--out", type=Path, required=True, help="the marker file (dvc out)")
    args = p.parse_args(argv)
    return _cli.run("check_params", lambda: check(Path(args.params), args.out))


if __name__ == "__main__":
    raise SystemExit(main())
