"""The prepared dataset on disk: what `prepare` writes and every later stage reads.

Layout of a prepared folder (see dvc.yaml):
    train.npz, val.npz, test.npz   images uint8 [N, C, H, W], labels int64 [N]
    meta.json                      dataset, classes, image shape, counts, data_hash
    stats.csv                      one row per image (split, index, label, shape, min/max/mean/std, hash)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genpipe import io
from genpipe.errors import GenpipeError

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "val", "test")


class PreparedDataError(GenpipeError):
    """A prepared dataset is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def as_float(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images as float32 in [0, 1] on `device`."""
        return to_float(self.images, device)


@dataclass(frozen=True)
class PreparedData:
    train: Split
    val: Split
    test: Split
    meta: dict

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def data_hash(self) -> str:
        return str(self.meta["data_hash"])

    @property
    def dataset(self) -> str:
        """The dataset's name in experiment and model names (e.g. digits, mnist, folder-cats)."""
        return str(self.meta["dataset"])

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def to_float(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    import torch  # lazy: the data stages never need torch

    return (
        torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32)
        / 255.0
    )


def data_hash(splits: dict[str, Split]) -> str:
    """Content hash of all arrays, in split order: the identity of a prepared dataset."""
    h = hashlib.sha256()
    for name in SPLITS:
        s = splits[name]
        h.update(name.encode())
        h.update(str(s.images.shape).encode())
        h.update(np.ascontiguousarray(s.images).tobytes())
        h.update(np.ascontiguousarray(s.labels.astype(np.int64)).tobytes())
    return h.hexdigest()


def save_prepared(folder: str | Path, splits: dict[str, Split], meta: dict) -> dict:
    """Write the split arrays and meta.json atomically; returns the full meta with data_hash."""
    folder = Path(folder)
    meta = dict(meta)
    first = splits["train"].images
    meta.update(
        channels=int(first.shape[1]),
        height=int(first.shape[2]),
        width=int(first.shape[3]),
        counts={name: len(splits[name]) for name in SPLITS},
        data_hash=data_hash(splits),
    )
    for name in SPLITS:
        io.write_npz(folder / f"{name}.npz", images=splits[name].images, labels=splits[name].labels)
    io.write_json(folder / "meta.json", meta)
    return meta


def load_prepared(folder: str | Path) -> PreparedData:
    folder = Path(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise PreparedDataError(f"{meta_path}: not found; run `dvc repro prepare` first") from None
    except json.JSONDecodeError as exc:
        raise PreparedDataError(
            f"{meta_path}: corrupt JSON ({exc}); rerun `dvc repro prepare`"
        ) from None
    splits = {}
    for name in SPLITS:
        path = folder / f"{name}.npz"
        try:
            with np.load(path) as npz:
                splits[name] = Split(images=npz["images"], labels=npz["labels"].astype(np.int64))
        except FileNotFoundError:
            raise PreparedDataError(f"{path}: not found; rerun `dvc repro prepare`") from None
        except (KeyError, ValueError, OSError) as exc:
            raise PreparedDataError(
                f"{path}: unreadable ({exc}); rerun `dvc repro prepare`"
            ) from None
    return PreparedData(meta=meta, **splits)
