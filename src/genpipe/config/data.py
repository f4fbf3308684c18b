"""Config of the data stages: `data` (download + prepare) and `validate`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from genpipe.config.base import Section

DatasetName = Literal["digits", "mnist", "fashion-mnist", "kmnist", "folder"]
IDX_DATASETS = ("mnist", "fashion-mnist", "kmnist")


class DownloadConfig(Section):
    """How IDX files are fetched: mirrors are tried in order, each with retries."""

    mirrors: list[str]
    splits: list[Literal["train", "t10k"]] = Field(min_length=1)
    retries: int = Field(ge=0)
    timeout_seconds: PositiveFloat

    @field_validator("mirrors")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("http://", "https://", "file://")):
                raise ValueError(f"mirror {url!r} must be an http://, https:// or file:// base URL")
        return v

    @field_validator("splits")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"splits must not repeat, got {v}")
        return v


class SplitFractions(Section):
    train: float = Field(gt=0, lt=1)
    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"split fractions train+val+test must sum to 1, got {total:g} "
                f"({self.train:g}+{self.val:g}+{self.test:g})"
            )
        return self


class DataConfig(Section):
    """`data:` which images to use and how they are split."""

    dataset: DatasetName
    folder: Path | None
    image_size: PositiveInt | None
    channels: Literal[1, 3] | None
    max_images: PositiveInt | None
    seed: int
    split: SplitFractions
    download: DownloadConfig

    @property
    def name(self) -> str:
        """The dataset's name in experiment and registered-model names.

        A folder dataset is named after its folder, so two image folders never share a
        registered model (and one's champion never judges the other's images).
        """
        if self.dataset != "folder" or self.folder is None:
            return self.dataset
        slug = re.sub(r"[^a-z0-9]+", "-", self.folder.resolve().name.lower()).strip("-")
        return f"folder-{slug or 'images'}"

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.dataset == "folder" and self.folder is None:
            raise ValueError(
                "dataset 'folder' needs data.folder: the path of a class-per-folder image tree"
            )
        if self.dataset in IDX_DATASETS and not self.download.mirrors:
            raise ValueError(
                f"dataset '{self.dataset}' needs at least one base URL in data.download.mirrors "
                "(params.yaml lists the official ones; a local copy can be served over http or file://)"
            )
        return self


class Bounds(Section):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) must not exceed max ({self.max:g})")
        return self


class ValidateConfig(Section):
    """`validate:` the data contract enforced by Great Expectations before training."""

    min_rows: dict[Literal["train", "val", "test"], PositiveInt]
    class_proportion: Bounds
    image_mean: Bounds
    image_std: Bounds
    pixel_range: Bounds
    expected_labels: list[int] | None
    leakage_splits: list[Literal["train", "val", "test"]] = Field(min_length=2)

    @field_validator("pixel_range")
    @classmethod
    def _uint8(cls, v: Bounds) -> Bounds:
        if v.min < 0 or v.max > 255:
            raise ValueError("pixel_range must lie within the uint8 range [0, 255]")
        return v
