"""`make sweep` / `make tune` before `make pipeline`: one line that says what to run, no flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import sweep, tune


@pytest.mark.parametrize(
    ("main", "argv"), [(sweep.main, ["train.seed=range(0,2)"]), (tune.main, [])]
)
def test_no_baseline_is_one_line_naming_the_file_and_the_command(
    main, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert str(tmp_path / "data/prepared/meta.json") in err and "`make pipeline`" in err
