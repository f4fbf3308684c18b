"""`make docs`: docs/results.md and docs/benchmarks.md, rendered from the committed run records.

    python -m benchmarks.render_docs            # write both pages
    python -m benchmarks.render_docs --check    # exit 1, naming each page the records would change

The pages are Jinja templates (docs/templates/) filled from records only, so no figure is typed
by hand (docs/records/README.md describes every folder and format):
- docs/records/verdict/<dataset>.json: an evaluate report (`python -m benchmarks.verdict --record`);
- docs/records/sweeps/<name>.csv (+ <name>.json): one row per sweep member, seed or variant; a
  sweep the results template does not place is rendered at the end of the page by itself;
- docs/compute_matched/<dataset>/*.csv: what benchmarks/compute_matched.py writes;
- docs/records/benchmarks/<name>.json: what a benchmark's --record writes (benchmarks/records.py);
- docs/img/: sample grids, restoration panels, charts (a missing image fails the render).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import re
import statistics
import string
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import verdict

PAGES = {"results.md": "results.md.j2", "benchmarks.md": "benchmarks.md.j2"}
# benchmarks/ modules that are not speed or cost benchmarks: what renders results.md, and helpers
RESULTS_PRODUCERS = {"verdict", "verdict_seeds", "ablation", "compute_matched"}
HELPERS = {"__init__", "floor", "own_store", "records", "render_docs"}
MISSING = "—"


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows with numbers parsed (int, then float); an empty cell is None."""
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _value(text: str | None) -> Any:
    if text is None or text.strip() == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def field_name(column: str) -> str:
    """How a format string names a CSV column: every character outside [A-Za-z0-9_] becomes _
    (`dvc exp show --csv` writes columns such as `gan.lr.generator`)."""
    return re.sub(r"\W", "_", column)


def cell(row: dict[str, Any], formats: str | list[str]) -> str:
    """The first format whose fields the row has (not empty), filled; else "—"."""
    fields = {field_name(k): v for k, v in row.items()}
    for fmt in [formats] if isinstance(formats, str) else formats:
        names = [name for _, name, _, _ in string.Formatter().parse(fmt) if name]
        if all(fields.get(name) is not None for name in names):
            return (
                fmt.format(**fields).replace("-", "−")
                if _numeric_only(fmt)
                else fmt.format(**fields)
            )
    return MISSING


def _numeric_only(fmt: str) -> bool:
    """A cell that is one number: write its minus sign as a typographic minus."""
    return re.fullmatch(r"\{[^{}]+:[^{}]*[fge]\}", fmt) is not None


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


class Sweeps:
    """docs/records/sweeps: <name>.csv, one row per member, and an optional <name>.json with
    title, about, command and columns ({header, cell, mean_sd | count}); remembers which ones the
    template placed, so the others can be rendered after them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.shown: set[str] = set()

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.csv"))

    def meta(self, name: str) -> dict[str, Any]:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def rows(self, name: str) -> list[dict[str, Any]]:
        path = self.folder / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"no sweep record {path}")
        return read_csv(path)

    def table(self, name: str) -> str:
        self.shown.add(name)
        rows, meta = self.rows(name), self.meta(name)
        columns = meta.get("columns") or [
            {"header": c, "cell": "{" + field_name(c) + "}"} for c in (rows[0] if rows else {})
        ]
        body = [[cell(row, c["cell"]) for c in columns] for row in rows]
        if any("mean_sd" in c or "count" in c for c in columns):
            body.append(self._summary(rows, columns, meta.get("summary_label", "mean ± sd")))
        return markdown_table([c["header"] for c in columns], body)

    def _summary(self, rows: list[dict], columns: list[dict], label: str) -> list[str]:
        out = []
        for i, c in enumerate(columns):
            if "mean_sd" in c:
                mean, sd = self.pooled_values([r[c["mean_sd"]] for r in rows])
                fmt = c.get("format", ".2f")
                out.append(f"{mean:{fmt}} ± {sd:{fmt}}")
            elif "count" in c:
                top, n = Counter(r[c["count"]] for r in rows).most_common(1)[0]
                out.append(f"{top} {n}/{len(rows)}")
            else:
                out.append(f"**{label}**" if i == 0 else "")
        return out

    @staticmethod
    def pooled_values(values: list[float]) -> tuple[float, float]:
        """Mean and sample sd (0 for a single value)."""
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    def pooled(self, name: str, field: str, minus: str | None = None) -> tuple[float, float]:
        """Mean ± sd over the rows of a column, or of its difference from another column."""
        rows = self.rows(name)
        return self.pooled_values([r[field] - (r[minus] if minus else 0) for r in rows])

    def spread(self, name: str, *fields: str) -> float:
        """Root mean square of the columns' sds: register.seed_spread's definition
        (benchmarks/verdict_seeds.py seed_spreads)."""
        sds = [self.pooled(name, f)[1] for f in fields]
        return math.sqrt(statistics.fmean(sd * sd for sd in sds))

    def section(self, name: str, level: str = "###") -> str:
        """A sweep by itself: heading, what it is, the command, the table."""
        meta = self.meta(name)
        parts = [f"{level} {meta.get('title', name)}"]
        if meta.get("about"):
            parts.append(meta["about"])
        if meta.get("command"):
            parts.append(f"Reproduce: `{meta['command']}`")
        parts.append(self.table(name))
        record = f"Record: `docs/records/sweeps/{name}.csv`"
        record += f", {meta['source']}" if meta.get("source") else ""
        record += f"; measured {meta['date']}" if meta.get("date") else ""
        parts.append(record + ".")
        return "\n\n".join(parts)


class Records:
    """What the templates see: every record, through small functions that return markdown."""

    def __init__(self, docs: Path) -> None:
        self.docs = docs
        self.sweeps = Sweeps(docs / "records" / "sweeps")

    # --- verdict: an evaluate report per dataset
    def verdict(self, dataset: str) -> dict[str, Any]:
        path = self.docs / "records" / "verdict" / f"{dataset}.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def generation_table(self, dataset: str) -> str:
        return verdict.generation_table(self.verdict(dataset)["report"])

    def restoration_table(self, dataset: str) -> str:
        return verdict.restoration_table(self.verdict(dataset)["report"])

    def ssim_note(self, dataset: str) -> str:
        return verdict.ssim_note(self.verdict(dataset)["report"])

    def winners(self, dataset: str) -> dict[str, dict[str, Any]]:
        """Per task, the winning family, its figure and the other's, and whether the CIs clear."""
        report = self.verdict(dataset)["report"]
        gen = report["generation"]
        fd = {f: gen[f]["fd"] for f in ("vae", "gan")}
        rest = report["restoration"]
        best = {
            f: max(rest[f]["methods"].items(), key=lambda m: m[1]["mean"]["psnr"]["value"])
            for f in ("vae", "gan")
        }
        psnr = {f: best[f][1]["mean"]["psnr"] for f in best}
        out = {}
        for task, stats, lower in (("generation", fd, True), ("restoration", psnr, False)):
            pick = min if lower else max
            win = pick(stats, key=lambda f: stats[f]["value"])
            lose = "gan" if win == "vae" else "vae"
            a, b = stats[win].get("ci"), stats[lose].get("ci")
            clear = bool(a and b and (a[1] < b[0] or b[1] < a[0]))
            out[task] = {
                "winner": win.upper(),
                "loser": lose.upper(),
                "win": stats[win]["value"],
                "lose": stats[lose]["value"],
                "cis_clear": clear,
            }
        out["restoration"]["method"] = verdict.LABELS.get(
            best[out["restoration"]["winner"].lower()][0]
        )
        out["generation"]["floor"] = gen["real"]["fd"]["value"]
        return out

    # --- compute-matched: three tables per dataset
    def compute_matched_table(self, dataset: str) -> str:
        """FD and PSNR of both families against training images seen; a column per budget (the
        families' snapshots of about the same images share one), the better family's in bold."""
        folder = self.docs / "compute_matched" / dataset
        fams = {f: read_csv(folder / f"{f}.csv") for f in ("vae", "gan")}
        labels = sorted(
            {_thousands(r["images_seen"]) for rows in fams.values() for r in rows},
            key=lambda label: float(label.removesuffix("k")),
        )
        ends = {f: _thousands(rows[-1]["images_seen"]) for f, rows in fams.items()}
        header = ["images seen"]
        for label in labels:
            who = [f.upper() for f, end in ends.items() if end == label]
            header.append(f"{label} ({'both' if len(who) == 2 else who[0]} end)" if who else label)
        body = []
        for metric, name, lower in (("fd", "FD", True), ("psnr_sigma0.3", "PSNR σ=0.3", False)):
            at = {
                f: {_thousands(r["images_seen"]): r[metric] for r in rows}
                for f, rows in fams.items()
            }
            for fam in ("vae", "gan"):
                cells = [f"{fam.upper()} {name}"]
                for label in labels:
                    value = at[fam].get(label)
                    if value is None:
                        cells.append(MISSING)
                        continue
                    other = at["gan" if fam == "vae" else "vae"].get(label)
                    best = other is not None and (value < other if lower else value > other)
                    text = f"{value:.1f}" if value >= 100 else f"{value:.2f}"
                    cells.append(f"**{text}**" if best else text)
                body.append(cells)
        return markdown_table(header, body)

    def classical_psnr(self, dataset: str) -> float:
        rows = read_csv(self.docs / "compute_matched" / dataset / "classical.csv")
        return statistics.fmean(r["psnr_sigma0.3"] for r in rows)

    # --- benchmarks
    def benchmark_records(self) -> list[dict[str, Any]]:
        folder = self.docs / "records" / "benchmarks"
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]

    def benchmark(self, name: str) -> dict[str, Any]:
        path = self.docs / "records" / "benchmarks" / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def unrecorded(self) -> list[str]:
        """Benchmarks in benchmarks/ without a committed record."""
        folder = self.docs.parent / "benchmarks"
        recorded = {rec["benchmark"] for rec in self.benchmark_records()}
        names = {p.stem for p in folder.glob("*.py")} - HELPERS - RESULTS_PRODUCERS
        return sorted(names - recorded)

    def benchmarks_table(self) -> str:
        """One row per comparison; the machines are listed once under the table (M1, M2...)."""
        body, machines = [], {}
        for rec in self.benchmark_records():
            key = machine_text(rec["machine"])
            machine = machines.setdefault(key, f"M{len(machines) + 1}")
            for row in rec["rows"]:
                result = row["result"]
                if row.get("ratio") is not None:
                    result += f"; **{row['ratio']:.2f}×**"
                goal = row.get("goal") or MISSING
                if row.get("met") is not None:
                    goal += ": met" if row["met"] else ": **missed**"
                when = row.get("date", rec.get("date"))
                where = f"{machine}, load {load_text(row.get('load', rec['load']))}"
                body.append(
                    [
                        f"`{row.get('command', rec['command'])}`",
                        row["compares"],
                        result,
                        goal,
                        where + (f", {when}" if when else ""),
                    ]
                )
        for name in self.unrecorded():
            doc = ast.get_docstring(
                ast.parse((self.docs.parent / "benchmarks" / f"{name}.py").read_text())
            )
            what = (doc or name).split("\n")[0]
            body.append(
                [
                    f"`python -m benchmarks.{name}`",
                    what,
                    "no committed record yet: run it with `--record`",
                    MISSING,
                    MISSING,
                ]
            )
        table = markdown_table(
            ["command", "compares", "result", "goal", "machine, load, date"], body
        )
        legend = [f"- **{label}**: {text}" for text, label in machines.items()]
        return table + "\n\nMachines:\n" + "\n".join(legend)

    def detail_table(self, name: str, title: str) -> str:
        rows = self.benchmark(name)["tables"][title]
        header = list(rows[0])
        return markdown_table(header, [[_text(r.get(h)) for h in header] for r in rows])

    # --- images
    def image(self, name: str, width: int) -> str:
        path = self.docs / "img" / name
        if not path.is_file():
            raise FileNotFoundError(f"the results page shows {path}, which does not exist")
        return f'<img src="img/{name}" width="{width}">'


def machine_text(machine: dict[str, Any] | str) -> str:
    if isinstance(machine, str):
        return machine
    gpu = machine.get("gpu") or "no GPU"
    torch = f", torch {machine['torch']}" if machine.get("torch") else ""
    return f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gb']} GB, {gpu}{torch}"


def load_text(load: dict[str, float] | str | None) -> str:
    if load is None:
        return "not recorded"
    if isinstance(load, str):
        return load
    return " / ".join(f"{load[k]:.1f}" for k in ("1m", "5m", "15m")) + " (1/5/15 min)"


def _thousands(n: int) -> str:
    return f"{n / 1000:.1f}k" if n < 10_000 else f"{round(n / 1000)}k"


def _text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(root: Path) -> dict[Path, str]:
    """Every page's text, rendered from the records under root/docs (nothing is written)."""
    import jinja2

    docs = root / "docs"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(docs / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    pages = {}
    for page, template in PAGES.items():
        records = Records(docs)
        text = env.get_template(template).render(r=records, sweeps=records.sweeps)
        pages[docs / page] = text.rstrip("\n") + "\n"
    return pages


def stale(root: Path) -> list[Path]:
    """The pages whose committed text differs from what the records render."""
    return [p for p, text in render(root).items() if not p.exists() or p.read_text("utf-8") != text]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="the project folder")
    ap.add_argument("--check", action="store_true", help="only say whether a page is stale")
    args = ap.parse_args()
    if args.check:
        old = stale(args.root)
        for page in old:
            print(f"{page} differs from what its records render: run `make docs`", file=sys.stderr)
        return 1 if old else 0
    for page, text in render(args.root).items():
        page.write_text(text, encoding="utf-8")
        print(f"rendered {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
