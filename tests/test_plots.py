"""`make plots`: every chart of dvc.yaml drawn once, with its own x/y, on a page that needs no network.

The plots configuration is read from the project's dvc.yaml (top-level definitions and stage
`plots:` entries), so the tests follow whatever stages dvc.yaml has; the data files are stand-ins
with the columns the plots name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from genpipe.plots import PLACEHOLDERS, render_page, vega_lite_version
from tests.conftest import REPO, headless, venv_bin


def _entries(items: list[Any] | None) -> list[tuple[str, dict]]:
    """dvc.yaml list entries are `name` or `{name: {props}}`."""
    out = []
    for item in items or []:
        if isinstance(item, str):
            out.append((item, {}))
        else:
            [(name, props)] = item.items()
            out.append((name, props or {}))
    return out


def plot_columns(dvc_yaml: dict) -> dict[str, set[str]]:
    """{data file: columns some plot reads from it}, from top-level and stage-level plots."""
    columns: dict[str, set[str]] = {}
    for _, props in _entries(dvc_yaml.get("plots")):
        ys = props.get("y", {})
        for path, fields in ys.items():
            x = props["x"] if isinstance(props["x"], str) else props["x"][path]
            columns.setdefault(path, set()).update(
                [x, *([fields] if isinstance(fields, str) else fields)]
            )
    for stage in dvc_yaml.get("stages", {}).values():
        for path, props in _entries(stage.get("plots")):
            columns.setdefault(path, set()).update(v for v in (props.get("x"), props.get("y")) if v)
    return columns


def test_every_plot_names_x_and_y_and_feeds_one_kind_of_entry() -> None:
    """Top-level plots draw a stage's cached output or a git-tracked table with their columns."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    top_level_files: set[str] = set()
    for name, props in _entries(dvc_yaml.get("plots")):
        assert props.get("x") and isinstance(props.get("y"), dict), (
            f"top-level plot {name!r} needs x and y: {{file: columns}}"
        )
        top_level_files |= set(props["y"])
    stage_plots = {
        path: (stage, props)
        for stage, spec in dvc_yaml["stages"].items()
        for path, props in _entries(spec.get("plots"))
    }
    for path, (stage, props) in stage_plots.items():
        assert props.get("x") and props.get("y"), f"{stage}: plot {path} needs x and y"
        assert props.get("title"), f"{stage}: plot {path} needs a title (else its file name)"
        assert path not in top_level_files, (
            f"{path} is a stage plot of {stage} and in a top-level plot: DVC draws it twice. "
            "Declare it as a plain `outs` entry of the stage instead."
        )
    outs = {
        path: props
        for spec in dvc_yaml["stages"].values()
        for path, props in _entries(spec.get("outs"))
    }
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    columns = plot_columns(dvc_yaml)
    for path in top_level_files:
        if path in outs:
            # an uncached out that is no metric or plot turns the stage's run-cache off
            assert outs[path].get("cache", True), f"{path}: keep it cached (run-cache)"
            continue
        # else a benchmark's table (docs/compute_matched/): committed, so every checkout draws
        # it (for a missing file DVC only warns and leaves the chart out)
        assert path in tracked, (
            f"{path}, drawn by a top-level plot, is neither a stage's output nor tracked by git: "
            "commit it, or drop it from dvc.yaml's plots"
        )
        header = (REPO / path).read_text().splitlines()[0].split(",")
        assert columns[path] <= set(header), f"{path} lacks {columns[path] - set(header)}"


def test_vega_lite_5_is_chosen_and_the_page_keeps_only_dvcs_plot_placeholder() -> None:
    assert vega_lite_version(["5.8", "5.21", "6.1", "v5.9"]) == "5.21"
    page = render_page("window.vegaEmbed = function () {};", ("1.9.0", "5.21"))
    assert "{plot_divs}" in page
    assert "{scripts}" not in page  # DVC would put its CDN <script> tags there
    with pytest.raises(Exception, match="placeholder"):
        render_page(f"var x = '{PLACEHOLDERS[0]}';", ("1.9.0", "5.21"))


def fake_plot_data(project: Path) -> dict[str, set[str]]:
    """Stand-in CSVs with every column dvc.yaml's plots read (3 rows of numbers)."""
    columns = plot_columns(yaml.safe_load((project / "dvc.yaml").read_text()))
    for path, fields in columns.items():
        header = sorted(fields)
        rows = [",".join(header)] + [
            ",".join(str(round(0.5 + i + 0.1 * j, 2)) for j in range(len(header))) for i in range(3)
        ]
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("\n".join(rows) + "\n")
    return columns


def charts(dom: str) -> list[str]:
    """The SVG charts vega-embed drew: one <svg class="marks"> per plot."""
    return re.findall(r'<svg[^>]*class="marks"[^>]*>.*?</svg>', dom, flags=re.S)


def drawn(svg: str) -> bool:
    """A chart with data: line or bar marks whose paths are not empty."""
    marks = re.findall(r'class="mark-(?:line|rect)[^"]*".*?<path[^>]* d="([^"]+)"', svg, re.S)
    return any(d.strip() and d.strip() != "M0,0" for d in marks)


OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom"]


@pytest.mark.slow
def test_make_plots_page_renders_every_chart_with_no_network(
    project_copy: Path, chromium: str
) -> None:
    fake_plot_data(project_copy)
    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
    )
    plot_ids = list(json.loads(shown.stdout)["data"])
    assert plot_ids and "errors" not in json.loads(shown.stdout), shown.stdout[-2000:]

    done = subprocess.run(
        [sys.executable, "-m", "genpipe.plots"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    page = project_copy / "dvc_plots" / "offline" / "index.html"
    html = page.read_text()
    assert not re.search(r"<script[^>]+src=", html), "the page loads a script from elsewhere"

    dom = headless(chromium, *OFFLINE, page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = charts(dom.stdout)
    assert len(found) == len(plot_ids), f"{len(found)} charts drawn for plots {plot_ids}"
    assert all(drawn(svg) for svg in found), "a chart was drawn without data marks"
    axis_titles = set(
        re.findall(r'role-axis-title"[^>]*>.*?<text[^>]*>([^<]+)</text>', dom.stdout, re.S)
    )
    assert "epoch" in axis_titles  # the loss curves' explicit x, not DVC's inferred `step`
    assert "step" not in axis_titles

    # the control: DVC's own page loads Vega from a CDN, so offline it draws nothing
    subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", "cdn_plots"],
        cwd=project_copy,
        env=env,
        check=True,
        capture_output=True,
    )
    cdn = headless(chromium, *OFFLINE, (project_copy / "cdn_plots" / "index.html").as_uri())
    assert charts(cdn.stdout) == []
