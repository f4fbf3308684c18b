"""The `folder` source: an ImageFolder-style tree, one sub-folder per class, of PNG/JPEG files.

Decisions (documented in params.yaml too):
- classes are the sub-folder names in sorted order; label i is the i-th class; hidden entries
  and files that are not .png/.jpg/.jpeg are skipped (and counted in the log);
- `data.image_size` null keeps the source size, which then must be the same for every image
  (mixed sizes are an error asking for data.image_size: silently picking the first image's
  size would stretch the others). A set size resizes every image to a square, stretching
  non-square images (bilinear, antialiased when shrinking);
- `data.channels` null picks 1 if every image is grayscale and 3 as soon as one is colour;
- every unreadable file is reported, by path, in one error, so one run finds them all.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class FolderSourceError(GenpipeError):
    """The image folder is missing, empty, or holds files that cannot be read."""


def list_folder(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Image paths, their int64 labels and the class names of a class-per-folder tree."""
    root = Path(root)
    if not root.is_dir():
        raise FolderSourceError(
            f"data.folder {root}: not a folder; point it at a class-per-folder tree"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise FolderSourceError(
            f"data.folder {root}: no class sub-folders (expected {root}/<class>/*.png)"
        )
    paths: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in EXTENSIONS]
        skipped += len(files) - len(images)
        if not images:
            raise FolderSourceError(
                f"data.folder class {class_dir}: no {'/'.join(EXTENSIONS)} files"
            )
        paths += images
        labels += [label] * len(images)
    if skipped:
        log.warning("%s: skipped %d files that are not %s", root, skipped, "/".join(EXTENSIONS))
    return paths, np.asarray(labels, dtype=np.int64), [p.name for p in class_dirs]


def read_images(paths: list[Path], image_size: int | None, channels: int | None) -> np.ndarray:
    """Decode, convert, resize every file into uint8 [N, C, H, W]; report all failures at once."""
    errors: dict[Path, str] = {}
    headers: dict[Path, tuple[str, tuple[int, int]]] = {}
    for path in paths:
        try:
            with Image.open(path) as img:
                headers[path] = (img.mode, img.size)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            errors[path] = _reason(exc)
    channels = channels or _infer_channels({mode for mode, _ in headers.values()})
    size = (image_size, image_size) if image_size else _common_size(headers)
    arrays = []
    for path in paths:
        if path in errors:
            continue
        try:
            arrays.append(_decode(path, size, channels))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            errors[path] = _reason(exc)
    if errors:
        listing = "\n".join(f"  - {path}: {why}" for path, why in errors.items())
        raise FolderSourceError(
            f"{len(errors)} of {len(paths)} image files could not be read:\n{listing}\n"
            "Fix or remove these files, then run again."
        )
    return np.stack(arrays)


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_mode(img, "L" if channels == 1 else "RGB")
        if img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)  # [C, H, W]


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert to L or RGB, rescaling 16-bit/float grayscale instead of clipping it at 255."""
    if img.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" else max(float(values.max()), 1.0)
        img = Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8), "L")
    if img.mode in {"RGBA", "LA", "P", "PA"} and mode == "RGB":
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert(mode)


def _infer_channels(modes: set[str]) -> int:
    return 1 if modes <= _GRAY_MODES else 3


def _common_size(headers: dict[Path, tuple[str, tuple[int, int]]]) -> tuple[int, int]:
    sizes: dict[tuple[int, int], Path] = {}
    for path, (_, size) in headers.items():
        sizes.setdefault(size, path)
    if len(sizes) > 1:
        examples = ", ".join(f"{w}x{h} ({p.name})" for (w, h), p in list(sizes.items())[:4])
        raise FolderSourceError(
            f"images have {len(sizes)} different sizes, e.g. {examples}; "
            "set data.image_size in params.yaml to resize them all to one square size"
        )
    if not sizes:
        return (1, 1)  # every file failed; the caller reports them
    return next(iter(sizes))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
