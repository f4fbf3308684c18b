"""Stage `prepare`: stratified, seeded train/val/test split of data/raw, plus stats.csv."""

from __future__ import annotations

from pathlib import Path

from genpipe.config import Params, load_params
from genpipe.data.prepare import prepare_splits, write_prepared
from genpipe.data.sources import read_raw
from genpipe.stages import _cli


def prepare(params: Params, raw_dir: Path, out: Path) -> None:
    raw = read_raw(raw_dir)
    splits = prepare_splits(raw, params.data.split, params.data.seed)
    write_prepared(out, splits, str(raw.info["dataset"]), raw.classes)


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("Split data/raw into stratified train/val/test and write per-image stats.")
    p.add_argument("--raw", type=Path, default=Path("data/raw"), help="download stage output")
    p.add_argument(
        "--out", type=Path, default=Path("data/prepared"), help="output folder (dvc out)"
    )
    args = p.parse_args(argv)
    return _cli.run("prepare", lambda: prepare(load_params(args.params), args.raw, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
