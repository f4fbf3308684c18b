"""Where images come from: sklearn digits, the MNIST family over HTTP, or an image folder.

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
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from genpipe import io
from genpipe.config.data import DataConfig
from genpipe.errors import GenpipeError

if TYPE_CHECKING:
    import torch

# torch and torchvision are imported where they are used: digits, the default source, and the
# prepare stage (which only reads data/raw) need neither.

log = logging.getLogger(__name__)


FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg")


class RawDataError(GenpipeError):
    """data/raw is missing or malformed; the message names the file."""


class FolderSourceError(GenpipeError):
    """The image folder is missing, empty, or holds files that cannot be read."""


@dataclass(frozen=True)
class RawData:
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]
    classes: list[str]
    info: dict = field(default_factory=dict)  # provenance, written as source.json


def load_source(cfg: DataConfig, download_dir: Path) -> RawData:
    """The configured source, capped and conformed; IDX files are cached in `download_dir`."""
    if cfg.dataset == "digits":
        raw = load_digits()
    elif cfg.dataset == "folder":
        assert cfg.folder is not None  # guaranteed by DataConfig
        raw = load_folder(cfg.folder, cfg.max_images, cfg.image_size, cfg.channels)
        raw = RawData(raw.images, raw.labels, raw.classes, {"dataset": cfg.name, **raw.info})
    else:
        from genpipe.data import mnist

        images, labels, info = mnist.load(cfg.dataset, cfg.download, Path(download_dir))
        info = {"dataset": cfg.dataset, "splits": list(cfg.download.splits), **info}
        raw = RawData(images, labels.astype(np.int64), mnist.DATASETS[cfg.dataset][1], info)
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


def load_folder(
    root: Path, max_images: int | None, image_size: int | None, channels: int | None
) -> RawData:
    """A class-per-folder tree read by torchvision's ImageFolder (classes: the sorted sub-folder
    names; files: PNG/JPEG, in sorted order; `load_rgb` decodes). `channels` null: 1 if every
    image is grayscale (R = G = B), else 3; `image_size` null: every image must have the same
    size. All unreadable files are reported in one error."""
    import torch
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.v2 import functional as F

    try:
        tree = ImageFolder(str(root), loader=load_rgb, is_valid_file=_image_file)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise FolderSourceError(
            f"data.folder {root}: {exc}; point it at a class-per-folder tree ({root}/<class>/*.png)"
        ) from None
    labels = np.asarray(tree.targets, dtype=np.int64)
    keep = stratified_first_n(labels, max_images)
    decoded, errors = [], {}
    for i in keep:
        try:
            image, _ = tree[i]
        except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises on bad files
            errors[tree.samples[i][0]] = f"{type(exc).__name__}: {exc}"
            continue
        decoded.append(F.to_dtype(image, torch.uint8, scale=True))  # [3, H, W]
    if errors:
        listing = "\n".join(f"  - {path}: {why}" for path, why in errors.items())
        raise FolderSourceError(
            f"{len(errors)} of {len(keep)} image files could not be read:\n{listing}\n"
            "Fix or remove these files, then run again."
        )
    sizes = {tuple(x.shape[1:]) for x in decoded}
    if image_size is None and len(sizes) > 1:
        examples = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)[:4])
        raise FolderSourceError(
            f"data.folder {root}: images have {len(sizes)} different sizes, e.g. {examples}; "
            "set data.image_size in params.yaml to resize them all to one square size"
        )
    gray = [bool((x == x[:1]).all()) for x in decoded]
    channels = channels or (1 if all(gray) else 3)
    images = np.concatenate(
        [
            conform((x[:1] if g else x)[None].numpy(), image_size, channels)
            for x, g in zip(decoded, gray, strict=True)
        ]
    )
    info = {"folder": str(root), "n_files": len(labels)}
    return RawData(images, labels[keep], list(tree.classes), info)


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


def load_rgb(path: str) -> torch.Tensor:
    """ImageFolder's loader: one file as RGB [3, H, W] in [0, 1], EXIF orientation applied,
    transparent pixels over white, 16-bit grayscale scaled (not clipped) to [0, 1].

    Pillow decodes, as in torchvision's default loader: torchvision.io's PNG decoder takes the
    process down on a corrupt compressed stream instead of raising.
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I"):  # 16/32-bit integer grayscale
            return (
                torch.from_numpy(np.asarray(img, np.float32) / 65535).clamp(0, 1).expand(3, -1, -1)
            )
        rgba = F.to_dtype(F.pil_to_tensor(img.convert("RGBA")), torch.float32, scale=True)
    color, alpha = rgba.split([3, 1])
    return color * alpha + (1 - alpha)


def _image_file(path: str) -> bool:
    return path.lower().endswith(FOLDER_EXTENSIONS) and not Path(path).name.startswith(".")


def conform(images: np.ndarray, image_size: int | None, channels: int | None) -> np.ndarray:
    """uint8 [N, C, H, W] to `channels` (torchvision's grayscale <-> RGB) and to a square
    `image_size` (bilinear, antialiased), as configured."""
    resize = image_size and tuple(images.shape[2:]) != (image_size, image_size)
    if not resize and not (channels and images.shape[1] != channels):
        return np.ascontiguousarray(images, dtype=np.uint8)
    import torch
    from torchvision.transforms.v2 import functional as F

    x = torch.from_numpy(np.ascontiguousarray(images))
    if channels and x.shape[1] != channels:
        x = F.grayscale_to_rgb(x) if channels == 3 else F.rgb_to_grayscale(x)
    if resize:
        x = F.resize(x, [image_size, image_size], antialias=True)  # bilinear
    return np.ascontiguousarray(x.numpy(), dtype=np.uint8)


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
