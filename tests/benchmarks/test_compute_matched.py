"""benchmarks.compute_matched writes the tables dvc.yaml's compute-matched plots draw."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.compute_matched import FAMILY_COLUMNS, write_tables


def _row(family: str, epoch: int, fd: float, psnr: float) -> dict:
    return {
        "family": family,
        "epoch": epoch,
        "images_seen": 100 * epoch,
        "fd": fd,
        "psnr_sigma0.3": psnr,
        "psnr_classical": 14.01844,
    }


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_one_table_per_family_and_one_classical_line(tmp_path: Path) -> None:
    rows = [
        _row("vae", 1, 194.85482, 11.9275),
        _row("vae", 3, 7.65, 17.18),
        _row("gan", 1, 331.0, 10.36),
        _row("gan", 2, 181.57, 11.83),
    ]
    written = write_tables(rows, tmp_path / "digits")
    assert sorted(p.name for p in written) == ["classical.csv", "gan.csv", "vae.csv"]
    vae = _read(tmp_path / "digits" / "vae.csv")
    assert tuple(vae[0]) == FAMILY_COLUMNS  # no family column: the file is the series
    assert vae[0] == {
        "epoch": "1",
        "images_seen": "100",
        "fd": "194.8548",
        "psnr_sigma0.3": "11.9275",
    }
    assert [r["epoch"] for r in _read(tmp_path / "digits" / "gan.csv")] == ["1", "2"]
    # the classical filter does not train: one point per budget scored, not one per family
    classical = _read(tmp_path / "digits" / "classical.csv")
    assert classical == [
        {"images_seen": str(x), "psnr_sigma0.3": "14.0184"} for x in (100, 200, 300)
    ]
    assert not list((tmp_path / "digits").glob(".*.tmp"))  # atomic writes leave no temp files
