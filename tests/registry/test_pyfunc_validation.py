"""The serving contract's checks: bad requests fail with INVALID_PARAMETER_VALUE and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from genpipe.registry.pyfunc import (
    MAX_SAMPLES_PER_REQUEST,
    GenerationModel,
    RestorationModel,
    log_pyfunc,
    mask_rows,
    pixel_rows,
    whole_number,
)

SHAPE = (1, 8, 8)


def refused(match: str) -> pytest.RaisesContext[MlflowException]:
    return pytest.raises(MlflowException, match=match)


@pytest.mark.parametrize("value", [1, 4, np.int64(7), 3.0, MAX_SAMPLES_PER_REQUEST])
def test_whole_numbers_in_range_pass(value: object) -> None:
    assert whole_number(value, "n", 0, 1, MAX_SAMPLES_PER_REQUEST) == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "value", [2.5, 0, -1, MAX_SAMPLES_PER_REQUEST + 1, float("nan"), float("inf"), True, "4", None]
)
def test_fractional_out_of_range_or_non_numbers_are_refused(value: object) -> None:
    with refused(r"row 3: n must be a whole number in 1\.\.4096, got ") as info:
        whole_number(value, "n", 3, 1, MAX_SAMPLES_PER_REQUEST)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert info.value.get_http_status_code() == 400


def test_images_must_have_the_models_pixel_count() -> None:
    good = np.full(64, 0.5).tolist()
    assert pixel_rows([good, [0.0] * 64], 64, SHAPE).shape == (2, 64)
    with refused(r"row 1: image has 63 values; this model expects 64 \(C\*H\*W = 1\*8\*8"):
        pixel_rows([good, good[:63]], 64, SHAPE)
    with refused("row 0: image must be a flat list of numbers"):
        pixel_rows([["a"] * 64], 64, SHAPE)


@pytest.mark.parametrize(("bad", "shown"), [(5.0, "5.0"), (-0.1, "-0.1"), (None, "nan")])
def test_pixels_outside_0_1_are_refused(bad: float | None, shown: str) -> None:
    image = [0.5] * 64
    image[9] = bad  # type: ignore[call-overload]
    with refused(rf"row 0: image values must lie in \[0, 1\].*got {shown} at index 9"):
        pixel_rows([image], 64, SHAPE)


def test_masks_must_be_exact_zeros_and_ones_of_the_right_length() -> None:
    ok = [0] * 32 + [1] * 32
    np.testing.assert_array_equal(mask_rows([ok], 64, SHAPE, [4])[0], ok)
    half = [0.5, *ok[1:]]
    with refused(r"row 4: mask values must be 0 or 1 \(1 = observed pixel\).*got 0.5 at index 0"):
        mask_rows([half], 64, SHAPE, [4])
    with refused("row 2: mask has 10 values; this model expects 64"):
        mask_rows([ok, ok[:10]], 64, SHAPE, [0, 2])


def test_generation_checks_every_row_before_sampling() -> None:
    class Counting:
        calls = 0

        def sample(self, n: int, generator: object) -> None:
            Counting.calls += 1

    model = GenerationModel()
    model.model = Counting()
    with refused("row 1: n must be a whole number"):
        model.predict(None, pd.DataFrame({"n": [2, 2.5], "seed": [0, 0]}))
    with refused("row 0: seed must be a whole number"):
        model.predict(None, pd.DataFrame({"n": [2], "seed": [-1]}))
    with refused(
        r'the request has no rows; send e\.g\. \{"dataframe_records": \[\{"n": 4, "seed": 0\}\]\}'
    ):
        model.predict(None, pd.DataFrame({"n": [], "seed": []}))
    with refused('the request has no "seed"; send e.g.'):
        model.predict(None, pd.DataFrame({"n": [2]}))
    with refused('row 1 has no "seed"'):  # a key some rows lack arrives as NaN
        model.predict(None, pd.DataFrame({"n": [2, 2], "seed": [0, np.nan]}))
    assert Counting.calls == 0


def test_restoration_names_a_missing_image() -> None:
    with refused(r'the request has no "image"; send e.g. {"dataframe_records": \[{"image"'):
        RestorationModel("vae_amortised").predict(None, pd.DataFrame({"mask": [None]}))


def test_the_served_model_answers_with_the_reason_alone(tiny_models: dict, tmp_path: Path) -> None:
    """Through MLflow's own scoring app: no schema error for a missing seed, and no printed
    request before the reason (the server prefixes predict errors with the whole input)."""
    import mlflow
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    # artifacts under tmp_path: the SQLite store's default experiment would write ./mlruns
    experiment = mlflow.create_experiment("serving", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_pyfunc("generation", tiny_models["gan"] / "model.pt", {}, SHAPE)
    client = TestClient(scoring_server.init(mlflow.pyfunc.load_model(info.model_uri)))
    expected = {
        '{"n": 4}': 'the request has no "seed"; send e.g. {"dataframe_records": [{"n": 4, "seed": 0}]}',
        '{"n": 2.5, "seed": 0}': "row 0: n must be a whole number in 1..4096, got 2.5",
    }
    for record, reason in expected.items():
        answer = client.post(
            "/invocations",
            content=f'{{"dataframe_records": [{record}]}}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400
        body = answer.json()
        assert (body["error_code"], body["message"]) == ("INVALID_PARAMETER_VALUE", reason)
    good = client.post("/invocations", json={"dataframe_records": [{"n": 2, "seed": 0}]})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 2
