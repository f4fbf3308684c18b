"""The `folder` source (torchvision's ImageFolder and decode_image): class-per-folder PNG/JPEG
trees, grayscale, RGB, palette and transparent images, resized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genpipe.config.data import DataConfig
from genpipe.data.sources import FolderSourceError, load_source, read_raw, write_raw
from tests.params import section


def folder_config(root: Path, **data: object) -> DataConfig:
    return section("data", **{"dataset": "folder", "folder": str(root), **data})


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """`bright`: 4 grayscale 10x12 PNGs (white); `red`: 3 RGB 20x20 JPEGs (pure red)."""
    root = tmp_path / "images"
    (root / "bright").mkdir(parents=True)
    (root / "red").mkdir()
    for i in range(4):
        Image.new("L", (10, 12), 255).save(root / "bright" / f"{i}.png")
    for i in range(3):
        Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "red" / f"{i}.JPG", quality=95)
    (root / "red" / "notes.txt").write_text("not an image")  # skipped
    return root


def test_mixed_grayscale_and_rgb_become_rgb_at_image_size(image_tree: Path, tmp_path: Path) -> None:
    raw = load_source(folder_config(image_tree, image_size=16), tmp_path / "raw")
    assert raw.classes == ["bright", "red"]
    assert raw.images.shape == (7, 3, 16, 16) and raw.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.labels, [0, 0, 0, 0, 1, 1, 1])
    assert (raw.images[:4] == 255).all()  # grey white -> RGB white
    red = raw.images[4:].mean(axis=(0, 2, 3))
    assert red[0] > 245 and red[1] < 10 and red[2] < 10


def test_channels_1_converts_colour_to_luma(image_tree: Path, tmp_path: Path) -> None:
    raw = load_source(folder_config(image_tree, image_size=8, channels=1), tmp_path / "raw")
    assert raw.images.shape == (7, 1, 8, 8)
    assert abs(float(raw.images[4:].mean()) - 0.299 * 255) < 3  # ITU-R 601 luma of pure red


def test_palette_and_transparent_pngs_decode_as_they_look(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (6, 6), (0, 0, 255)).convert("P").save(root / "a" / "palette.png")
    Image.new("RGBA", (6, 6), (255, 0, 0, 0)).save(root / "a" / "clear.png")  # fully transparent
    raw = load_source(folder_config(root), tmp_path / "raw")
    assert raw.images.shape == (2, 3, 6, 6)
    assert (raw.images[0] == 255).all()  # transparent: the white background
    assert raw.images[1, :, 0, 0].tolist() == [0, 0, 255]  # the palette's blue, not its index


def test_max_images_keeps_every_class(image_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    write_raw(load_source(folder_config(image_tree, image_size=8, max_images=3), out), out)
    raw = read_raw(out)
    assert sorted(raw.labels.tolist()) == [0, 0, 1]
    assert raw.info["settings"]["max_images"] == 3


def test_mixed_sizes_need_image_size(image_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(FolderSourceError, match=r"2 different sizes.*set data\.image_size"):
        load_source(folder_config(image_tree), tmp_path / "raw")


def test_every_unreadable_file_is_named(image_tree: Path, tmp_path: Path) -> None:
    good = (image_tree / "bright" / "0.png").read_bytes()
    corrupt = bytearray(good)
    corrupt[-30:-12] = bytes(18)  # clobber the image data and its CRC
    (image_tree / "bright" / "corrupt.png").write_bytes(bytes(corrupt))
    (image_tree / "red" / "fake.jpeg").write_text("this is text, not a JPEG")
    out = tmp_path / "raw"
    with pytest.raises(FolderSourceError) as err:
        write_raw(load_source(folder_config(image_tree, image_size=8), out), out)
    message = str(err.value)
    assert "2 of 9 image files could not be read" in message
    assert str(image_tree / "bright" / "corrupt.png") in message
    assert str(image_tree / "red" / "fake.jpeg") in message
    assert not out.exists()


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FolderSourceError, match="No such file or directory"):
        load_source(folder_config(tmp_path / "nope"), tmp_path / "raw")
    (tmp_path / "tree" / "empty_class").mkdir(parents=True)
    with pytest.raises(FolderSourceError, match="no valid file for the classes empty_class"):
        load_source(folder_config(tmp_path / "tree"), tmp_path / "raw")
