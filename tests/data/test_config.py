"""The `data` section of params.yaml: every mistake is a ConfigError naming its dotted key."""

from __future__ import annotations

import pytest

from genpipe.config import ConfigError, Params
from tests.params import merge, raw_params


@pytest.mark.parametrize(
    ("data", "key", "says"),
    [
        ({"datset": "mnist"}, "data.datset", "unknown key"),
        ({"dataset": "cifar10"}, "data.dataset", "digits"),
        ({"split": {"train": 0.5, "val": 0.2, "test": 0.2}}, "data.split", "sum to 1"),
        ({"split": {"train": 0.8, "val": 0.2, "test": 0.0}}, "data.split.test", "greater than 0"),
        ({"image_size": -4}, "data.image_size", "greater than 0"),
        ({"max_images": 0}, "data.max_images", "greater than 0"),
        ({"channels": 2}, "data.channels", "1 or 3"),
        ({"download": {"retries": -1}}, "data.download.retries", "greater than or equal to 0"),
        ({"download": {"mirrors": ["ftp://host/mnist"]}}, "data.download.mirrors", "http://"),
        ({"download": {"splits": []}}, "data.download.splits", "at least 1"),
        ({"download": {"splits": ["t10k", "t10k"]}}, "data.download.splits", "repeat"),
        ({"download": {"splits": ["test"]}}, "data.download.splits.0", "'train' or 't10k'"),
        ({"dataset": "mnist"}, "data", "data.download.mirrors"),
        ({"dataset": "folder"}, "data", "data.folder"),
    ],
)
def test_data_errors_name_the_key(data: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        Params.from_dict(merge(raw_params(), {"data": data}))
    message = str(err.value)
    assert f"- {key}:" in message
    assert says in message


def test_idx_dataset_with_mirrors_is_valid() -> None:
    update = {"data": {"dataset": "kmnist", "download": {"mirrors": ["http://127.0.0.1:1/"]}}}
    data = Params.from_dict(merge(raw_params(), update)).data
    assert data.download.splits == ["t10k"]
    assert data.download.mirrors == ["http://127.0.0.1:1/"]


def test_a_folder_dataset_is_named_after_its_folder(tmp_path) -> None:
    update = {"data": {"dataset": "folder", "folder": str(tmp_path / "My Cats")}}
    assert Params.from_dict(merge(raw_params(), update)).data.name == "folder-my-cats"
    assert Params.from_dict(raw_params()).data.name == "digits"
