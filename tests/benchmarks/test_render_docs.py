"""The docs renderer: sweep tables as plain CSV (+ optional JSON), benchmark records, images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import records
from benchmarks.render_docs import Records, Sweeps, cell, render
from tests.conftest import REPO


def test_a_cell_takes_the_first_format_whose_fields_the_row_has() -> None:
    row = {"fd_e14": None, "fd_e22": 1.451, "fd_e25": 1.48, "gan.lr.generator": 0.0006}
    formats = ["{fd_e14:.2f}", "epoch 22: {fd_e22:.2f}, 25: {fd_e25:.2f}"]
    assert cell(row, formats) == "epoch 22: 1.45, 25: 1.48"
    assert cell(row, "{gan_lr_generator:g}") == "0.0006"  # dotted columns (dvc exp show --csv)
    assert cell({"kid": -0.07}, "{kid:.2f}") == "−0.07"  # a number gets a typographic minus
    assert cell({"x": None}, "{x}") == "—"


def test_a_sweep_without_a_sidecar_shows_every_column(tmp_path: Path) -> None:
    (tmp_path / "lr.csv").write_text(
        "Experiment,gan.lr.generator,fd\nexp-a,0.0002,2.07\nexp-b,,1.46\n"
    )
    table = Sweeps(tmp_path).table("lr").splitlines()
    assert table[0] == "| Experiment | gan.lr.generator | fd |"
    assert table[2:] == ["| exp-a | 0.0002 | 2.07 |", "| exp-b | — | 1.46 |"]


def test_a_sidecar_picks_columns_and_pools_seeds(tmp_path: Path) -> None:
    (tmp_path / "seeds.csv").write_text("seed,fd,winner\n0,4.0,VAE\n1,5.0,VAE\n2,6.0,GAN\n")
    meta = {
        "title": "Seeds",
        "summary_label": "pooled",
        "columns": [
            {"header": "seed", "cell": "{seed}"},
            {"header": "FD", "cell": "{fd:.1f}", "mean_sd": "fd"},
            {"header": "winner", "cell": "{winner}", "count": "winner"},
        ],
    }
    (tmp_path / "seeds.json").write_text(json.dumps(meta))
    sweeps = Sweeps(tmp_path)
    lines = sweeps.table("seeds").splitlines()
    assert lines[0] == "| seed | FD | winner |"
    assert lines[-1] == "| **pooled** | 5.00 ± 1.00 | VAE 2/3 |"
    assert sweeps.spread("seeds", "fd") == pytest.approx(1.0)
    assert sweeps.section("seeds").startswith("### Seeds\n")


def test_a_sweep_dropped_into_the_folder_is_rendered(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copytree(REPO / "benchmarks", root / "benchmarks")
    (root / "docs" / "records" / "sweeps" / "prior-size.csv").write_text("components,fd\n16,3.1\n")
    results = render(root)[root / "docs" / "results.md"]
    assert "## Other sweeps\n\n### prior-size\n" in results
    assert "| 16 | 3.1 |" in results


def test_a_benchmark_without_a_record_still_gets_its_row(tmp_path: Path) -> None:
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "new_bench.py").write_text('"""What new_bench compares."""\n')
    table = Records(tmp_path / "docs").benchmarks_table()
    assert (
        "| `python -m benchmarks.new_bench` | What new_bench compares. | no committed record"
        in table
    )


def test_a_missing_image_fails_the_render(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nothing\.png"):
        Records(tmp_path).image("nothing.png", 100)


def test_a_benchmark_writes_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "shared_cores.json"
    monkeypatch.setattr(
        "sys.argv", ["/x/benchmarks/shared_cores.py", "--repeats", "2", "--record", str(path)]
    )
    assert records.write(None, [{"compares": "a", "result": "b"}]) is None
    with pytest.raises(ValueError, match="compares and result"):
        records.write(path, [{"compares": "a", "ratio": 2.0}])
    records.write(
        path, [{"compares": "split vs all cores", "result": "18 s vs 35 s", "ratio": 1.9}]
    )
    rec = json.loads(path.read_text())
    assert rec["benchmark"] == "shared_cores"
    assert rec["command"] == "python -m benchmarks.shared_cores --repeats 2"
    assert rec["machine"]["cores"] >= 1 and set(rec["load"]) == {"1m", "5m", "15m"}
    docs = tmp_path / "docs" / "records" / "benchmarks"
    docs.mkdir(parents=True)
    shutil.copy(path, docs)
    (tmp_path / "benchmarks").mkdir()
    rendered = Records(tmp_path / "docs").benchmarks_table()
    assert (
        "| `python -m benchmarks.shared_cores --repeats 2` | split vs all cores | 18 s vs 35 s; **1.90×** |"
        in rendered
    )
