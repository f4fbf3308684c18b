"""Config of the data stages: `data` (download + prepare) and `validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from genpipe.config.base import Section

DatasetName = Literal["digits", "mnist", "fashion-mnist", "kmnist", "folder"]
IDX_DATASETS = ("mnist", "fashion-mnist", "kmnist")


class DownloadConfig(Section):
    """How IDX files are fetched: mirrors are tried in order, each with retries and backoff."""

    mirrors: list[str] = Field(default_factory=list)
    splits: list[Literal["train", "t10k"]] = Field(default=["t10k"], min_length=1)
    retries: int = Field(default=3, ge=0)
    backoff_seconds: float = Field(default=0.5, ge=0)
    timeout_seconds: PositiveFloat = 30.0

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

    dataset: DatasetName = "digits"
    folder: Path | None = None
    image_size: PositiveInt | None = None
    channels: Literal[1, 3] | None = None
    max_images: PositiveInt | None = None
    seed: int = 0
    split: SplitFractions = SplitFractions(train=0.7, val=0.15, test=0.15)
    download: DownloadConfig = DownloadConfig()

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

    min_rows: dict[Literal["train", "val", "test"], PositiveInt] = {
        "train": 100,
        "val": 20,
        "test": 20,
    }
    class_proportion: Bounds = Bounds(min=0.02, max=0.5)
    image_mean: Bounds = Bounds(min=0.02, max=0.98)
    image_std: Bounds = Bounds(min=0.01, max=0.5)
    pixel_range: Bounds = Bounds(min=0, max=255)
    expected_labels: list[int] | None = None
    leakage_splits: list[Literal["train", "val", "test"]] = Field(
        default=["train", "test"], min_length=2
    )

    @field_validator("pixel_range")
    @classmethod
    def _uint8(cls, v: Bounds) -> Bounds:
        if v.min < 0 or v.max > 255:
            raise ValueError("pixel_range must lie within the uint8 range [0, 255]")
        return v
