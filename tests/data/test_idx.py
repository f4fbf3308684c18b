"""IDX parsing: shape and dtype from the header, and clear errors for corrupt files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from genpipe.data.idx import IdxError, parse_idx, read_idx, read_idx_pair


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_parse_uint8_images() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = parse_idx(idx_bytes(images))
    assert parsed.dtype == np.uint8 and parsed.shape == (2, 3, 4)
    np.testing.assert_array_equal(parsed, images)


def test_parse_big_endian_int32() -> None:
    values = np.array([1, -2, 70000], dtype=np.int32)
    parsed = parse_idx(idx_bytes(values, code=0x0C))
    np.testing.assert_array_equal(parsed, values)
    assert parsed.dtype.isnative


def test_bad_magic_is_named() -> None:
    data = b"\x08\x03\x00\x00" + bytes(16)
    with pytest.raises(IdxError, match=r"labels\.idx: bad IDX magic number 08030000"):
        parse_idx(data, "labels.idx")


def test_size_mismatch_is_reported() -> None:
    data = idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    with pytest.raises(IdxError, match=r"declares shape \(10, 28, 28\).*truncated or corrupt"):
        parse_idx(data[:-100], "images.idx")
    with pytest.raises(IdxError, match="too short"):
        parse_idx(b"\x00\x00", "x")


def test_read_gzip_and_pair(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 7), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (tmp_path / "img.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "lab").write_bytes(idx_bytes(labels))  # plain, not gzipped
    x, y = read_idx_pair(tmp_path / "img.gz", tmp_path / "lab")
    assert x.shape == (5, 1, 6, 7) and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], images)
    np.testing.assert_array_equal(y, labels)

    (tmp_path / "short").write_bytes(idx_bytes(labels[:4]))
    with pytest.raises(IdxError, match=r"5 images but .*short holds 4 labels"):
        read_idx_pair(tmp_path / "img.gz", tmp_path / "short")


def test_truncated_gzip_is_named(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxError, match=r"t10k-images-idx3-ubyte\.gz: not a valid gzip file"):
        read_idx(path)


def test_real_mnist_t10k(mnist_files: Path) -> None:
    x, y = read_idx_pair(
        mnist_files / "t10k-images-idx3-ubyte.gz", mnist_files / "t10k-labels-idx1-ubyte.gz"
    )
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    assert set(np.unique(y).tolist()) == set(range(10))
    assert 0 < x.mean() < 60  # mostly black background
