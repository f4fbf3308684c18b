"""The IDX format of MNIST-style datasets, parsed with numpy.

An IDX file is: two zero bytes, a dtype code, the number of dimensions, one big-endian uint32
per dimension, then the data in C order. Every check here exists because a truncated or
mislabelled file would otherwise come out as a silently wrong array.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genpipe.errors import GenpipeError

# IDX dtype code -> numpy dtype (multi-byte types are big-endian)
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(GenpipeError):
    """An IDX file is corrupt or not what was expected; the message names the file."""


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode raw (uncompressed) IDX bytes into an array of the declared dtype and shape."""
    if len(data) < 4:
        raise IdxError(f"{name}: only {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IdxError(
            f"{name}: bad IDX magic number {data[:4].hex()} (expected 0000 + a dtype code + ndim); "
            "the file is corrupt or not IDX"
        )
    dtype, ndim = _DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: truncated header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxError(
            f"{name}: header declares shape {shape} ({expected} data bytes) "
            f"but the file holds {len(data) - header}; it is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed (`.gz`) or not."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise IdxError(f"{path}: not found; run the download stage again") from None
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxError(
            f"{path}: not a valid gzip file ({exc}); delete it and download again"
        ) from None
    return parse_idx(raw, str(path))


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 [N, 1, H, W] and labels as int64 [N] from an IDX images/labels pair."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxError(
            f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1:
        raise IdxError(f"{labels_path}: expected labels [N], got shape {labels.shape}")
    if len(images) != len(labels):
        raise IdxError(
            f"{images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels; the pair does not belong together"
        )
    return images[:, None], labels.astype(np.int64)
