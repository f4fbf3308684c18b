"""The MNIST family (mnist, fashion-mnist, kmnist): torchvision's file lists, MD5s and readers;
pooch's verified downloads.

torchvision's own `MNIST(download=True)` fetches all four files from its built-in mirrors; genpipe
fetches only `data.download.splits` from the mirrors in params.yaml, so it downloads with pooch
(retries, MD5 check, a temp file renamed only once verified) and reads with torchvision.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import KMNIST, MNIST, FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import check_integrity, extract_archive

from genpipe.config.data import DownloadConfig
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

# dataset -> (torchvision class: file names, MD5s, official mirror; class names)
DATASETS: dict[str, tuple[type[MNIST], list[str]]] = {
    "mnist": (MNIST, [str(i) for i in range(10)]),
    "fashion-mnist": (FashionMNIST, FashionMNIST.classes),
    "kmnist": (KMNIST, KMNIST.classes),
}


class DownloadError(GenpipeError):
    """A file could not be fetched from any mirror; the message lists every URL tried."""


def split_files(dataset: str, split: str) -> list[tuple[str, str]]:
    """(file name, MD5) of a split's images and labels, as torchvision lists them."""
    files = [(n, md5) for n, md5 in DATASETS[dataset][0].resources if n.startswith(f"{split}-")]
    return sorted(files, key=lambda f: "labels" in f[0])  # images first


def fetch(name: str, md5: str, folder: Path, dl: DownloadConfig) -> dict[str, Any]:
    """`folder/name` with a verified MD5: reused when present, else from the first mirror that
    serves it (each tried 1 + dl.retries times)."""
    import pooch

    target = folder / name
    if check_integrity(str(target), md5):
        log.info("%s: present with the right MD5, not fetching again", target)
        return {"name": name, "md5": md5, "bytes": target.stat().st_size, "url": None}
    failures = []
    for base in dl.mirrors:
        url = base.rstrip("/") + "/" + name
        fetcher = pooch.create(
            path=folder, base_url=base.rstrip("/") + "/", registry={name: f"md5:{md5}"},
            retry_if_failed=dl.retries,
        )  # fmt: skip
        try:
            fetcher.fetch(name, downloader=_downloader(url, dl.timeout_seconds))
        except Exception as exc:  # requests' and pooch's errors, a missing file:// file
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
            log.warning("%s: %s", url, failures[-1])
            continue
        return {"name": name, "md5": md5, "bytes": target.stat().st_size, "url": url}
    tried = "\n".join(f"  - {line}" for line in failures) or "  (no mirrors configured)"
    raise DownloadError(
        f"could not download {name} (expected MD5 {md5}) into {folder}; every mirror failed:\n"
        f"{tried}\nCheck data.download.mirrors in params.yaml (and the network), then run again."
    )


def _downloader(url: str, timeout: float) -> Any:
    import pooch

    if not url.startswith("file://"):
        return pooch.HTTPDownloader(progressbar=False, timeout=timeout)

    def copy(url: str, output_file: str, _pooch: object) -> None:  # pooch speaks no file://
        shutil.copyfile(urllib.parse.unquote(urllib.parse.urlparse(url).path), output_file)

    return copy


def load(dataset: str, dl: DownloadConfig, folder: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images uint8 [N, 1, H, W] and int64 labels of `dl.splits` in order, and their files."""
    images, labels, files = [], [], []
    for split in dl.splits:
        fetched = [fetch(name, md5, folder, dl) for name, md5 in split_files(dataset, split)]
        with tempfile.TemporaryDirectory() as tmp:
            x, y = (extract_archive(str(folder / f["name"]), tmp) for f in fetched)
            images.append(read_image_file(x).numpy()[:, None])
            labels.append(read_label_file(y).numpy())
        files += fetched
    return np.concatenate(images), np.concatenate(labels), {"files": files}
