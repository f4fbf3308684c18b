"""Where images come from: sklearn digits, MNIST-style IDX files over HTTP, or an image folder.

Every source ends as the same `RawData` (uint8 [N, C, H, W], int64 labels, class names), capped
by data.max_images and conformed to data.image_size / data.channels, then written to
`data/raw/images.npz` + `source.json` by the download stage.

data.max_images takes the first images of each class in source order, in proportion to the
class sizes (every class keeps at least one image when the cap allows): deterministic without a
seed, so changing data.seed reruns only `prepare`, never `download`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from genpipe import io
from genpipe.config.data import DataConfig, DownloadConfig
from genpipe.data import folder as image_folder
from genpipe.data.fetch import RemoteFile, fetch_file
from genpipe.data.idx import read_idx_pair
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)


class RawDataError(GenpipeError):
    """data/raw is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class RawData:
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]
    classes: list[str]
    info: dict = field(default_factory=dict)  # provenance, written as source.json


@dataclass(frozen=True)
class IdxSpec:
    classes: tuple[str, ...]
    files: dict[str, tuple[RemoteFile, RemoteFile]]  # split -> (images, labels)
    official_mirror: str


def _idx_files(md5s: tuple[str, str, str, str]) -> dict[str, tuple[RemoteFile, RemoteFile]]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    names += ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    files = [RemoteFile(n, m) for n, m in zip(names, md5s, strict=True)]
    return {"train": (files[0], files[1]), "t10k": (files[2], files[3])}


# The official file names and MD5s (the values torchvision checks).
IDX_SPECS = {
    "mnist": IdxSpec(
        classes=tuple(str(i) for i in range(10)),
        files=_idx_files(
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            )
        ),
        official_mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "fashion-mnist": IdxSpec(
        classes=(
            *("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"),
            *("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        files=_idx_files(
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            )
        ),
        official_mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    "kmnist": IdxSpec(
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        files=_idx_files(
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            )
        ),
        official_mirror="http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
}


def load_source(cfg: DataConfig, download_dir: Path) -> RawData:
    """The configured source, capped and conformed; IDX files are cached in `download_dir`."""
    if cfg.dataset == "digits":
        raw = load_digits()
    elif cfg.dataset == "folder":
        assert cfg.folder is not None  # guaranteed by DataConfig
        paths, labels, classes = image_folder.list_folder(cfg.folder)
        keep = stratified_first_n(labels, cfg.max_images)
        images = image_folder.read_images([paths[i] for i in keep], cfg.image_size, cfg.channels)
        info = {"dataset": cfg.name, "folder": str(cfg.folder), "n_files": len(paths)}
        raw = RawData(images, labels[keep], classes, info)
    else:
        raw = load_idx(cfg.dataset, cfg.download, Path(download_dir))
    keep = stratified_first_n(raw.labels, cfg.max_images)
    images = conform(raw.images[keep], cfg.image_size, cfg.channels)
    info = {
        **raw.info,
        "classes": raw.classes,
        "n_images": len(keep),
        "image_shape": list(images.shape[1:]),
        "settings": {
            "image_size": cfg.image_size,
            "channels": cfg.channels,
            "max_images": cfg.max_images,
        },
    }
    return RawData(images, raw.labels[keep], raw.classes, info)


def load_digits() -> RawData:
    """sklearn's bundled 1797 real 8x8 digits (offline), 0..16 scaled to uint8 0..255."""
    import sklearn
    from sklearn.datasets import load_digits as sklearn_digits

    d = sklearn_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    info = {
        "dataset": "digits",
        "source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
    }
    return RawData(images, d.target.astype(np.int64), [str(i) for i in range(10)], info)


def load_idx(name: str, dl: DownloadConfig, download_dir: Path) -> RawData:
    """Fetch (or reuse) the IDX files of `dl.splits`, verify them, and concatenate in that order."""
    spec = IDX_SPECS[name]
    images, labels, files = [], [], []
    for split in dl.splits:
        fetched = [
            fetch_file(
                remote,
                download_dir,
                dl.mirrors,
                retries=dl.retries,
                backoff_seconds=dl.backoff_seconds,
                timeout_seconds=dl.timeout_seconds,
            )
            for remote in spec.files[split]
        ]
        x, y = read_idx_pair(fetched[0].path, fetched[1].path)
        images.append(x)
        labels.append(y)
        files += [{"name": f.name, "md5": f.md5, "bytes": f.size, "url": f.url} for f in fetched]
    info = {"dataset": name, "splits": list(dl.splits), "files": files}
    return RawData(np.concatenate(images), np.concatenate(labels), list(spec.classes), info)


def stratified_first_n(labels: np.ndarray, n: int | None) -> np.ndarray:
    """Indices (in source order) of the first images of each class, class shares kept, total `n`."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = n * counts / counts.sum()
    floor = 1 if n >= len(classes) else 0
    take = np.maximum(np.minimum(np.floor(quota).astype(np.int64), counts), floor)
    while take.sum() > n:  # only after the at-least-one bump: trim the most over-served class
        take[np.argmax(np.where(take > floor, take - quota, -np.inf))] -= 1
    while take.sum() < n:  # hand out the remainder by largest shortfall
        take[np.argmax(np.where(take < counts, quota - take, -np.inf))] += 1
    keep = [np.flatnonzero(labels == c)[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(keep))


def conform(images: np.ndarray, image_size: int | None, channels: int | None) -> np.ndarray:
    """Convert channels (1<->3, ITU-R 601 luma like PIL) and resize to a square, as configured."""
    if channels and images.shape[1] != channels:
        if channels == 3:
            images = np.repeat(images, 3, axis=1)
        else:
            luma = np.tensordot(
                np.array([0.299, 0.587, 0.114]), images.astype(np.float64), ([0], [1])
            )
            images = np.round(luma).clip(0, 255).astype(np.uint8)[:, None]  # [N, 1, H, W]
    if image_size and images.shape[2:] != (image_size, image_size):
        images = np.stack([_resize(img, image_size) for img in images])
    return np.ascontiguousarray(images, dtype=np.uint8)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """[C, H, W] uint8 -> [C, size, size], bilinear (antialiased when shrinking)."""
    planes = [
        Image.fromarray(plane, "L").resize((size, size), Image.Resampling.BILINEAR)
        for plane in image
    ]
    return np.stack([np.asarray(p, dtype=np.uint8) for p in planes])


def write_raw(raw: RawData, out: Path) -> None:
    """images.npz then source.json, each atomically."""
    out = Path(out)
    classes = np.array(raw.classes, dtype=str)
    io.write_npz(out / "images.npz", images=raw.images, labels=raw.labels, classes=classes)
    io.write_json(out / "source.json", raw.info)


def read_raw(folder: Path) -> RawData:
    """Load what the download stage wrote, checking the array contract."""
    folder = Path(folder)
    path = folder / "images.npz"
    try:
        with np.load(path) as npz:
            images, labels, classes = npz["images"], npz["labels"], [str(c) for c in npz["classes"]]
        info = json.loads((folder / "source.json").read_text())
    except FileNotFoundError as exc:
        raise RawDataError(f"{exc.filename}: not found; run `dvc repro download` first") from None
    except (KeyError, ValueError, OSError) as exc:
        raise RawDataError(
            f"{folder}: unreadable download output ({exc}); rerun `dvc repro download`"
        ) from None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
        raise RawDataError(
            f"{path}: expected images uint8 [N, C, H, W] and labels [N], "
            f"got {images.dtype} {images.shape} and {labels.shape}; rerun `dvc repro download`"
        )
    return RawData(images, labels.astype(np.int64), classes, info)
