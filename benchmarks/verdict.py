"""The verdict tables (docs/results.md), rendered from what the evaluate stage wrote.

    .venv/bin/python -m benchmarks.verdict [--report data/eval/report.json]

Run it after `make pipeline` (digits) or `make pipeline-mnist`: it prints the generation table
(VAE, GAN and the real-vs-real floor, means over draws with 95% CIs) and the restoration table
(PSNR per corruption and method, the mean with its CI, the mean SSIM, and on images large
enough the standard 11x11 Gaussian SSIM), with the better model's cells in bold.
`--record docs/records/verdict/<dataset>.json` also writes the report as the record that
docs/results.md renders these tables from (`make docs`).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

LOWER_IS_BETTER = {"fd", "kid"}
GENERATION_ROWS = [
    ("Fréchet distance (lower is better)", ("fd",)),
    ("KID (raw feature scale)", ("kid",)),
    ("precision / recall", ("precision", "recall")),
    ("density / coverage", ("density", "coverage")),
    ("classifier IS", ("is",)),
    ("recognised (evaluator p ≥ 0.9)", ("recognised",)),
]
LABELS = {
    "corrupted": "corrupted input",
    "classical": "classical filter / fill",
    "vae_amortised": "VAE amortised",
    "vae_latent_search": "VAE latent search",
    "gan_latent_search": "GAN inversion",
}


def corruption_label(name: str) -> str:
    """denoise_sigma0.3 -> σ=0.3, inpaint_center -> centre block; anything else as it is."""
    if name.startswith("denoise_sigma"):
        return "σ=" + name.removeprefix("denoise_sigma")
    return {"inpaint_center": "centre block", "inpaint_random": "random pixels"}.get(name, name)


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}".replace("-", "−")


def _with_ci(stat: dict[str, Any], digits: int = 2) -> str:
    ci = stat.get("ci")
    text = _num(stat["value"], digits)
    return f"{text} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]" if ci else text


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def generation_table(report: dict[str, Any]) -> str:
    gen = report["generation"]
    lines = ["| metric | VAE | GAN | real-vs-real floor |", "|---|---|---|---|"]
    for label, metrics in GENERATION_ROWS:
        if any(m not in gen["vae"] for m in metrics):  # a report from before the metric existed
            continue
        cells = {"vae": [], "gan": [], "real": []}
        for metric in metrics:
            digits = 3 if metric not in ("fd", "kid", "is") else 2
            values = {s: gen[s][metric]["value"] for s in ("vae", "gan")}
            pick = min if metric in LOWER_IS_BETTER else max
            best = pick(values, key=values.__getitem__)
            for source in cells:
                stat = gen[source][metric]
                text = _with_ci(stat, digits) if len(metrics) == 1 else _num(stat["value"], digits)
                cells[source].append(_bold(text, source == best and metric != "is"))
        row = [" / ".join(cells[s]) for s in ("vae", "gan", "real")]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def all_have(outputs: dict[str, Any], metric: str) -> bool:
    return all(metric in o["mean"] for o in outputs.values())


def gaussian_ssim_label(report: dict[str, Any]) -> str:
    """The standard SSIM's column, e.g. "mean SSIM 11x11 Gaussian" (window from the protocol)."""
    window = report["protocol"]["evaluate"]["ssim_gaussian"]["window"]
    return f"mean SSIM {window}x{window} Gaussian"


def restoration_table(report: dict[str, Any]) -> str:
    rest = report["restoration"]
    outputs = {b: rest["baselines"][b] for b in ("corrupted", "classical")}
    for model in ("vae", "gan"):
        outputs.update(rest[model]["methods"])
    corruptions = list(next(iter(outputs.values()))["per_corruption"])
    best_psnr = {
        c: max(o["per_corruption"][c]["psnr"]["value"] for o in outputs.values())
        for c in corruptions
    }
    best_mean = max(o["mean"]["psnr"]["value"] for o in outputs.values())
    # the SSIM columns: the small-window one always, the standard one where evaluate scored it
    ssims = ["ssim"] + (["ssim_gaussian"] if all_have(outputs, "ssim_gaussian") else [])
    best_ssim = {m: max(o["mean"][m]["value"] for o in outputs.values()) for m in ssims}
    header = ["method", *map(corruption_label, corruptions), "mean PSNR", "mean SSIM"]
    header += [gaussian_ssim_label(report)] if "ssim_gaussian" in ssims else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, out in outputs.items():
        cells = []
        for c in corruptions:
            scores = out["per_corruption"][c]
            value = scores["psnr"]["value"]
            text = _bold(_num(value, 2), value == best_psnr[c])
            if "psnr_masked" in scores:
                text += f" ({_num(scores['psnr_masked']['value'], 2)})"
            cells.append(text)
        mean = out["mean"]["psnr"]
        cells.append(_bold(_with_ci(mean), mean["value"] == best_mean))
        for m in ssims:
            value = out["mean"][m]["value"]
            cells.append(_bold(_num(value, 3), value == best_ssim[m]))
        label = _bold(LABELS.get(name, name), mean["value"] == best_mean)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ssim_note(report: dict[str, Any]) -> str:
    """How each SSIM column was measured, and why the standard one is missing if it is."""
    described = report["protocol"].get("ssim")
    if described is None:  # a report from before the standard SSIM existed
        w = report["protocol"]["evaluate"]["ssim_window"]
        return f"Mean SSIM: uniform {w}x{w} window."
    gaussian = described["ssim_gaussian"]
    if gaussian.startswith("not scored"):
        label = gaussian_ssim_label(report).removeprefix("mean ")
        return f"Mean SSIM: {described['ssim']}. The standard {label} is {gaussian}."
    return f"Mean SSIM: {described['ssim']}; {gaussian_ssim_label(report)}: {gaussian}."


# What the results page reads of a report; the rest (run ids, local paths, the champion's
# scores) means nothing outside the machine that ran it.
RECORD_KEYS = (
    "dataset",
    "evaluator_accuracy",
    "protocol",
    "protocol_hash",
    "data_hash",
    "reference",
    "generation",
    "restoration",
)


def write_record(report: dict[str, Any], path: Path, command: str) -> None:
    from benchmarks.records import machine

    about = {
        "dataset": report["dataset"],
        "command": command,
        "source": f"data/eval/report.json of `{command}`, written by benchmarks.verdict --record",
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
    }
    record = {"about": about, "report": {k: report[k] for k in RECORD_KEYS if k in report}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"record: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", type=Path, default=Path("data/eval/report.json"))
    ap.add_argument("--record", type=Path, default=None, help="write the results page's record")
    ap.add_argument("--command", default="make pipeline", help="the record's reproduce command")
    args = ap.parse_args()
    report = json.loads(args.report.read_text())
    if args.record:
        write_record(report, args.record, args.command)
    protocol = report["protocol"]
    accuracy = report["evaluator_accuracy"]
    print(
        f"Generation: {protocol['n_samples']} samples per draw, {protocol['evaluate']['draws']} "
        f"draws, against {protocol['n_reference']} test images, in the feature space of the "
        f"evaluator (test accuracy {accuracy:.2%}).\n"
    )
    print(generation_table(report))
    if "reference" in report:
        print(
            f"\nRecognised: share of samples the evaluator puts in one class with p ≥ "
            f"{protocol['evaluate']['recognition_confidence']}; the real test images themselves: "
            f"{report['reference']['recognised']:.3f}."
        )
    print(
        f"\nRestoration: PSNR in dB on {protocol['n_restore']} test images (inside the mask in "
        f"brackets); mean PSNR with its 95% bootstrap CI over images. {ssim_note(report)}\n"
    )
    print(restoration_table(report))


if __name__ == "__main__":
    main()
