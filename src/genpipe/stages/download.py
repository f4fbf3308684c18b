"""Stage `download`: fetch (or load) the configured source into data/raw.

Writes images.npz (images uint8 [N, C, H, W], labels int64, classes) and source.json
(dataset, files with URLs and MD5s, settings). IDX .gz files are kept next to them, so a rerun
with the files already present and verified does not fetch again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe.config import Params, load_params
from genpipe.data.sources import load_source, write_raw
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def download(params: Params, out: Path) -> None:
    raw = load_source(params.data, download_dir=out)
    write_raw(raw, out)
    log.info(
        "%s: %d images of shape %s in %d classes -> %s",
        params.data.dataset,
        len(raw.labels),
        tuple(raw.images.shape[1:]),
        len(raw.classes),
        out,
    )


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("Fetch or load the configured image source into data/raw.")
    p.add_argument("--out", type=Path, default=Path("data/raw"), help="output folder (dvc out)")
    args = p.parse_args(argv)
    return _cli.run("download", lambda: download(load_params(args.params), args.out))


if __name__ == "__main__":
    raise SystemExit(main())
