from __future__ import annotations

import torch

from genpipe.evaluation.corruptions import Corruption
from genpipe.evaluation.report import (
    flat_metrics,
    protocol_hash,
    restoration_rows,
    summarise_restoration,
)
from genpipe.evaluation.restoration_eval import CorruptionResult
from genpipe.models.checkpoint import model_record, weights_hash
from tests.params import section


def fake_results() -> list[CorruptionResult]:
    """Two corruptions where vae_latent_search beats vae_amortised by 2 dB on every image."""
    psnr = {"corrupted": 10.0, "classical": 12.0, "vae_amortised": 14.0, "vae_latent_search": 16.0}
    psnr["gan_latent_search"] = 15.0
    results = []
    for corruption, masked in (
        (Corruption("denoise_sigma0.3", "noise", 0.3), False),
        (Corruption("inpaint_center", "center_block", 0.5), True),
    ):
        scores = {}
        for name, value in psnr.items():
            s = {"psnr": torch.full((5,), value) + torch.arange(5.0), "ssim": torch.full((5,), 0.5)}
            if masked:
                s["psnr_masked"] = s["psnr"] - 3
            scores[name] = s
        results.append(CorruptionResult(corruption, scores, panel={}))
    return results


def test_weights_hash_tracks_the_weights(tiny_classifier) -> None:
    before = weights_hash(model_record(tiny_classifier, "classifier", n_classes=10))
    assert before == weights_hash(model_record(tiny_classifier, "classifier", n_classes=10))
    with torch.no_grad():
        tiny_classifier.head.bias[0] += 1e-3
    assert weights_hash(model_record(tiny_classifier, "classifier", n_classes=10)) != before


def test_protocol_hash_changes_with_each_ingredient() -> None:
    base = protocol_hash(section("evaluate"), "data1", "eval1")
    assert base == protocol_hash(section("evaluate"), "data1", "eval1")
    assert len(base) == 64
    assert base != protocol_hash(section("evaluate", n_restore=8), "data1", "eval1")
    assert base != protocol_hash(section("evaluate"), "data2", "eval1")
    assert base != protocol_hash(section("evaluate"), "data1", "eval2")


def test_restoration_summary_follows_the_schema() -> None:
    section = summarise_restoration(fake_results(), bootstrap=50, seed=0)
    assert set(section) == {"vae", "gan", "baselines"}
    assert section["vae"]["best_method"] == "vae_latent_search"
    assert set(section["vae"]["methods"]) == {"vae_amortised", "vae_latent_search"}
    assert section["gan"]["best_method"] == "gan_latent_search"
    assert set(section["baselines"]) == {"corrupted", "classical"}
    method = section["vae"]["methods"]["vae_latent_search"]
    assert set(method["mean"]) == {"psnr", "ssim"}
    assert method["mean"]["psnr"]["value"] == 18.0  # 16 + mean(0..4) over both corruptions
    lo, hi = method["mean"]["psnr"]["ci"]
    assert 16.0 <= lo < 18.0 < hi <= 20.0
    assert set(method["per_corruption"]["denoise_sigma0.3"]) == {"psnr", "ssim"}
    assert set(method["per_corruption"]["inpaint_center"]) == {"psnr", "ssim", "psnr_masked"}
    assert method["per_corruption"]["inpaint_center"]["psnr_masked"]["value"] == 15.0


def test_flat_metrics_have_readable_keys() -> None:
    stat = {"value": 1.5, "ci": [1.0, 2.0]}
    report = {
        "generation": {
            s: {"fd": stat, "is": {"value": 3.0, "ci": None}} for s in ("vae", "gan", "real")
        },
        "restoration": summarise_restoration(fake_results(), bootstrap=20, seed=0),
    }
    flat = flat_metrics(report)
    assert flat["generation.gan.fd"] == 1.5
    assert (flat["generation.gan.fd_ci_low"], flat["generation.gan.fd_ci_high"]) == (1.0, 2.0)
    assert "generation.real.is" in flat and "generation.real.is_ci_low" not in flat
    assert flat["restoration.vae.mean_psnr"] == 18.0
    assert flat["restoration.vae.denoise_sigma0.3.psnr"] == 18.0  # the best method's number
    assert flat["restoration.vae.inpaint_center.psnr_masked"] == 15.0
    assert flat["restoration.vae.vae_amortised.mean_psnr"] == 16.0
    assert flat["restoration.baseline.classical.denoise_sigma0.3.psnr"] == 14.0
    assert all(isinstance(v, float) for v in flat.values())
    rows = restoration_rows(report)
    assert len(rows) == 2 * 5  # corruptions x (3 methods + 2 baselines)
    assert {"case", "corruption", "method", "psnr", "ssim"} <= set(rows[0])
