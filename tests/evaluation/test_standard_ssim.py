"""The standard SSIM (`evaluate.ssim_gaussian`, 11x11 Gaussian) beside the 3x3 one: scored on
28x28 images, absent on 8x8 digits (the window does not fit), and carried into the report's
means, the flat metrics and the plot table the way `ssim` is."""

from __future__ import annotations

import torch

from genpipe.evaluation.corruptions import Corruption
from genpipe.evaluation.metrics import ssim
from genpipe.evaluation.report import flat_metrics, restoration_rows, summarise_restoration
from genpipe.evaluation.restoration_eval import (
    CorruptionResult,
    describe_ssim,
    run_restoration,
    score_images,
)
from genpipe.models.gan import Generator
from genpipe.models.vae import VAE
from tests.params import section


def _pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(size)
    clean = torch.rand(4, 1, size, size, generator=g)
    return (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1), clean


def test_scored_on_28x28_and_absent_on_8x8() -> None:
    config = section("evaluate")
    assert (config.ssim_gaussian.window, config.ssim_gaussian.sigma) == (11, 1.5)
    restored, clean = _pair(28)
    scores = score_images(restored, clean, None, config.ssim_window, config.ssim_gaussian)
    assert set(scores) == {"psnr", "ssim", "ssim_gaussian"}
    torch.testing.assert_close(scores["ssim_gaussian"], ssim(restored, clean, 11, sigma=1.5))
    torch.testing.assert_close(scores["ssim"], ssim(restored, clean, 3))  # the 3x3 one, unchanged
    assert not torch.allclose(scores["ssim_gaussian"], scores["ssim"])

    restored, clean = _pair(8)
    scores = score_images(restored, clean, None, config.ssim_window, config.ssim_gaussian)
    assert set(scores) == {"psnr", "ssim"}  # no number rather than a padded, fake one


def test_the_protocol_says_which_window_and_why_it_is_missing() -> None:
    config = section("evaluate")
    on_mnist = describe_ssim(config.ssim_window, config.ssim_gaussian, (28, 28))
    assert on_mnist["ssim"].startswith("uniform 3x3 window, mean over the valid region")
    assert on_mnist["ssim_gaussian"].startswith("Gaussian 11x11 window, sigma 1.5,")
    on_digits = describe_ssim(config.ssim_window, config.ssim_gaussian, (8, 8))
    assert on_digits["ssim_gaussian"] == (
        "not scored: the 8x8 images are smaller than its 11x11 window"
    )
    # the window fits exactly: scored
    assert describe_ssim(3, config.ssim_gaussian, (11, 12))["ssim_gaussian"].startswith("Gauss")


OUTPUTS = ("corrupted", "classical", "vae_amortised", "vae_latent_search", "gan_latent_search")


def _results(size: int) -> list[CorruptionResult]:
    """Two corruptions, each output a noisier or cleaner copy of the same clean images."""
    config = section("evaluate")
    clean = _pair(size)[1]
    g = torch.Generator().manual_seed(0)
    results = []
    for sigma in (0.3, 0.5):
        scores = {}
        for rank, name in enumerate(OUTPUTS):  # later outputs are closer to the clean images
            restored = (clean + sigma / (rank + 1) * torch.randn(clean.shape, generator=g)).clamp(
                0, 1
            )
            scores[name] = score_images(
                restored, clean, None, config.ssim_window, config.ssim_gaussian
            )
        corruption = Corruption(f"denoise_sigma{sigma}", "noise", sigma)
        results.append(CorruptionResult(corruption, scores, panel={}))
    return results


def test_report_flat_metrics_and_plot_rows_carry_it_where_scored() -> None:
    report = {"generation": {}, "restoration": summarise_restoration(_results(28), 20, 0)}
    best = report["restoration"]["vae"]["methods"]["vae_latent_search"]
    assert set(best["mean"]) == {"psnr", "ssim", "ssim_gaussian"}
    lo, hi = best["mean"]["ssim_gaussian"]["ci"]
    assert lo <= best["mean"]["ssim_gaussian"]["value"] <= hi
    flat = flat_metrics(report)
    assert flat["restoration.vae.mean_ssim_gaussian"] == round(
        best["mean"]["ssim_gaussian"]["value"], 6
    )
    assert {
        "restoration.vae.mean_ssim_gaussian_ci_low",
        "restoration.gan.denoise_sigma0.5.ssim_gaussian",
        "restoration.baseline.classical.mean_ssim_gaussian",
    } <= set(flat)
    assert all("ssim_gaussian" in row for row in restoration_rows(report))

    report = {"generation": {}, "restoration": summarise_restoration(_results(8), 20, 0)}
    assert set(report["restoration"]["vae"]["methods"]["vae_latent_search"]["mean"]) == {
        "psnr",
        "ssim",
    }
    assert not any("ssim_gaussian" in key for key in flat_metrics(report))
    assert not any("ssim_gaussian" in row for row in restoration_rows(report))


def test_run_restoration_scores_it_for_every_output_on_28x28() -> None:
    """The path evaluate() takes: tiny 28x28 models, every method and baseline."""
    config = section("evaluate", latent_search={"steps": 2, "restarts": 1})
    torch.manual_seed(0)
    models = {
        "vae": VAE(section("vae", latent_dim=4, base_channels=8), (1, 28, 28)).eval(),
        "gan": Generator(section("gan", latent_dim=4, base_channels=8), (1, 28, 28)).eval(),
    }
    clean = _pair(28)[1][:3]
    corruptions = [Corruption("denoise_sigma0.3", "noise", 0.3)]
    args = (config.latent_search, config.seed, config.ssim_window, config.ssim_gaussian)
    [result] = run_restoration(models, clean, corruptions, *args)
    assert set(result.scores) == set(OUTPUTS)
    for name, scores in result.scores.items():
        assert set(scores) == {"psnr", "ssim", "ssim_gaussian"}, name
        assert scores["ssim_gaussian"].shape == (3,)
