"""benchmarks.verdict renders the results tables from a report: winners in bold, CIs kept."""

from __future__ import annotations

from benchmarks.verdict import generation_table, restoration_table, ssim_note


def _stat(value: float, ci: tuple[float, float] | None = None) -> dict:
    return {"value": value, "ci": list(ci) if ci else None}


def _source(fd: float, precision: float) -> dict:
    return {
        "fd": _stat(fd, (fd - 1, fd + 1)),
        "kid": _stat(fd / 10, (0, 1)),
        "precision": _stat(precision),
        "recall": _stat(0.5),
        "density": _stat(0.4),
        "coverage": _stat(0.3),
        "is": _stat(2.0, (1.9, 2.1)),
        "recognised": _stat(precision / 2, (0.0, 1.0)),
    }


def _output(psnr: float, ssim: float) -> dict:
    return {
        "mean": {"psnr": _stat(psnr, (psnr - 0.5, psnr + 0.5)), "ssim": _stat(ssim)},
        "per_corruption": {
            "denoise_sigma0.1": {"psnr": _stat(psnr + 1)},
            "inpaint_center": {"psnr": _stat(psnr - 1), "psnr_masked": _stat(psnr - 5)},
        },
    }


def test_generation_table_bolds_the_lower_fd_and_keeps_cis() -> None:
    report = {
        "generation": {
            "vae": _source(30.0, 0.7),
            "gan": _source(10.0, 0.6),
            "real": _source(0.5, 0.9),
        }
    }
    rows = generation_table(report).splitlines()
    fd = next(r for r in rows if r.startswith("| Fréchet"))
    assert (
        fd
        == "| Fréchet distance (lower is better) | 30.00 [29.00, 31.00] | **10.00 [9.00, 11.00]** | 0.50 [−0.50, 1.50] |"
    )
    pr = next(r for r in rows if r.startswith("| precision"))
    assert pr.split(" | ")[1].startswith("**0.700**")  # higher precision wins, per metric
    rec = next(r for r in rows if r.startswith("| recognised"))
    assert rec.split(" | ")[1] == "**0.350 [0.000, 1.000]**"  # a higher share wins
    for source in report["generation"].values():  # reports from before the metric: no row
        del source["recognised"]
    assert not any(r.startswith("| recognised") for r in generation_table(report).splitlines())


def test_restoration_table_orders_baselines_first_and_bolds_the_best_method() -> None:
    report = {
        "restoration": {
            "baselines": {"classical": _output(14.0, 0.5), "corrupted": _output(12.0, 0.4)},
            "vae": {"methods": {"vae_latent_search": _output(20.0, 0.8)}},
            "gan": {"methods": {"gan_latent_search": _output(16.0, 0.9)}},
        }
    }
    rows = restoration_table(report).splitlines()
    assert rows[0] == "| method | σ=0.1 | centre block | mean PSNR | mean SSIM |"
    labels = [r.split(" | ")[0] for r in rows[2:]]
    assert labels == [
        "| corrupted input",
        "| classical filter / fill",
        "| **VAE latent search**",
        "| GAN inversion",
    ]
    assert rows[4].endswith("| **21.00** | **19.00** (15.00) | **20.00 [19.50, 20.50]** | 0.800 |")
    assert rows[5].endswith("| **0.900** |")  # the best SSIM is bolded on its own


def _protocol(ssim_gaussian: str) -> dict:
    return {
        "evaluate": {"ssim_window": 3, "ssim_gaussian": {"window": 11, "sigma": 1.5}},
        "ssim": {"ssim": "uniform 3x3 window, valid region", "ssim_gaussian": ssim_gaussian},
    }


def test_28x28_reports_get_the_standard_ssim_column_and_8x8_ones_say_why_not() -> None:
    outputs = {
        "classical": _output(14.0, 0.5),
        "corrupted": _output(12.0, 0.4),
        "vae_latent_search": _output(20.0, 0.8),
        "gan_latent_search": _output(16.0, 0.9),
    }
    for name, standard in zip(outputs, (0.45, 0.35, 0.75, 0.70), strict=True):
        outputs[name]["mean"]["ssim_gaussian"] = _stat(standard)
    report = {
        "protocol": _protocol("Gaussian 11x11 window, sigma 1.5, valid region"),
        "restoration": {
            "baselines": {b: outputs[b] for b in ("classical", "corrupted")},
            "vae": {"methods": {"vae_latent_search": outputs["vae_latent_search"]}},
            "gan": {"methods": {"gan_latent_search": outputs["gan_latent_search"]}},
        },
    }
    rows = restoration_table(report).splitlines()
    assert rows[0].endswith("| mean PSNR | mean SSIM | mean SSIM 11x11 Gaussian |")
    assert rows[4].endswith("| 0.800 | **0.750** |")  # VAE: the better standard SSIM
    assert rows[5].endswith("| **0.900** | 0.700 |")  # GAN: the better 3x3 SSIM
    assert "mean SSIM 11x11 Gaussian: Gaussian 11x11 window" in ssim_note(report)

    for out in outputs.values():  # 8x8 digits: evaluate did not score it
        del out["mean"]["ssim_gaussian"]
    report["protocol"] = _protocol("not scored: the 8x8 images are smaller than its 11x11 window")
    rows = restoration_table(report).splitlines()
    assert rows[0].endswith("| mean PSNR | mean SSIM |")
    assert ssim_note(report).endswith(
        "The standard SSIM 11x11 Gaussian is not scored: the 8x8 images are smaller than its "
        "11x11 window."
    )
