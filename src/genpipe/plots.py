"""`make plots`: DVC's plots page with Vega inlined, so it renders with no network.

`dvc plots show` writes HTML whose <head> loads vega, vega-lite and vega-embed from a CDN
(dvc_render.vega.VegaRenderer.SCRIPTS); offline the page stays blank. DVC fills a custom page
(`--html-template`) by replacing `{plot_divs}` (each plot's div and its `vegaEmbed(...)` call) and
`{scripts}` (those CDN tags). The page written here has no `{scripts}`, and carries the three
libraries instead: vl-convert-python ships them as one JS bundle (`vl_convert.javascript_bundle`),
installed from PyPI with the project, so nothing is fetched when the page is built or opened.

    python -m genpipe.plots                  # = dvc plots show -> dvc_plots/offline/index.html
    python -m genpipe.plots diff main        # = dvc plots diff main

The page goes to its own folder, so `dvc plots show` (dvc_plots/index.html, Vega from a CDN)
and `make plots` never overwrite each other's page.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from genpipe.errors import GenpipeError
from genpipe.settings import project_root

log = logging.getLogger(__name__)

PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>genpipe: DVC plots</title>
<!-- vega, vega-lite, vega-embed: bundled by vl-convert-python VL_CONVERT, Vega-Lite VEGA_LITE -->
<script>
(() => {
BUNDLE
})();
// DVC calls vegaEmbed(el, spec) with no options: draw SVG (crisp, and inspectable in the DOM).
window.vegaEmbed = ((embed) => (el, spec, opts) => embed(el, spec, { renderer: "svg", ...opts }))(
  window.vegaEmbed
);
</script>
<style>
body { font-family: sans-serif; }
div[id] { margin: 16px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def vega_lite_version(available: list[str]) -> str:
    """The newest Vega-Lite 5.x: DVC's templates declare the v5 schema."""
    fives = sorted(
        (v for v in available if v.lstrip("v").startswith("5.")),
        key=lambda v: tuple(int(p) for p in v.lstrip("v").split(".")),
    )
    if not fives:
        raise GenpipeError(f"vl-convert-python offers no Vega-Lite 5.x (has {available})")
    return fives[-1]


def render_page(bundle: str, versions: tuple[str, str]) -> str:
    """The HTML template for `dvc plots --html-template`, the bundle run once in its own scope.

    The IIFE keeps the bundle's top-level names out of the page's global scope, where DVC's
    per-plot scripts declare `var spec`; the bundle exports window.vegaEmbed itself.
    """
    clash = [p for p in PLACEHOLDERS if p in bundle]
    if clash:
        raise GenpipeError(f"the Vega bundle contains DVC's placeholder(s) {clash}")
    head, tail = PAGE.split("BUNDLE")
    head = head.replace("VL_CONVERT", versions[0]).replace("VEGA_LITE", versions[1])
    return head + bundle + tail


def template_path(project: Path) -> Path:
    """The page, built once per vl-convert version under DVC's own scratch folder."""
    import vl_convert

    return project / ".dvc" / "tmp" / "plots" / f"offline-template-{vl_convert.__version__}.html"


def ensure_template(project: Path) -> Path:
    """Write the template unless this vl-convert version already did (bundling takes seconds)."""
    import vl_convert

    path = template_path(project)
    if path.is_file():
        return path
    version = vega_lite_version(vl_convert.get_vegalite_versions())
    bundle = vl_convert.javascript_bundle(vl_version=version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_page(bundle, (vl_convert.__version__, version)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def dvc_plots(project: Path, args: list[str], out: Path) -> Path:
    """Run `dvc plots <args>` with the offline template; returns the page DVC wrote."""
    template = ensure_template(project)
    cmd = [sys.executable, "-m", "dvc", "plots", *args, "--html-template", str(template)]
    cmd += ["-o", str(out)]
    (project / out).mkdir(parents=True, exist_ok=True)  # DVC makes only the last folder
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        raise GenpipeError(
            f"`dvc plots {' '.join(args)}` failed in {project} (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr).strip()[-2000:]}"
        )
    if done.stderr.strip():  # e.g. "DVC failed to load some plots": a file not produced yet
        print(done.stderr.strip(), file=sys.stderr)
    return (out if out.is_absolute() else project / out) / "index.html"


def main(argv: list[str] | None = None) -> int:
    """`python -m genpipe.plots [show | diff REV ...]`: DVC's plots page, offline."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("args", nargs="*", default=["show"], help="what follows `dvc plots`")
    p.add_argument(
        "-o", "--out", default="dvc_plots/offline", help="output folder (as dvc plots -o)"
    )
    opts = p.parse_args(argv)
    project = project_root()
    try:
        page = dvc_plots(project, opts.args or ["show"], Path(opts.out))
    except GenpipeError as exc:
        print(f"genpipe plots: error: {exc}", file=sys.stderr)
        return 2
    print(f"offline plots page: {page.as_uri()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
