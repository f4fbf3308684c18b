"""The MNIST family over real HTTP on 127.0.0.1 (pooch downloads, torchvision reads): verified
downloads, and every failure mode cleanly.

Each failure test checks the message (file, URL, what happened) and that the output folder holds
no half file: nothing at the target name, no temp files, no images.npz.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets.utils import calculate_md5 as md5_of

from genpipe.config.data import DataConfig
from genpipe.data.mnist import DownloadError, split_files
from genpipe.data.sources import load_source, read_raw, write_raw
from tests.params import section

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def mnist_config(*mirrors: str, retries: int = 0, **data: object) -> DataConfig:
    download = {"mirrors": list(mirrors), "retries": retries, "timeout_seconds": 10}
    return section("data", **{"dataset": "mnist", "download": download, **data})


def download(cfg: DataConfig, out: Path) -> None:
    """What the download stage does: load the source into `out`, then write images.npz."""
    write_raw(load_source(cfg, out), out)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mirror_copy(tmp_path: Path, mnist_files: Path) -> Path:
    """A writable copy of the MNIST t10k files, to damage before serving."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name in (IMAGES, LABELS):
        shutil.copy(mnist_files / name, folder / name)
        (folder / name).chmod(0o644)
    return folder


def test_md5s_of_shared_files_match_the_spec(mnist_files: Path) -> None:
    sums = dict(line.split()[::-1] for line in (mnist_files / "MD5SUMS").read_text().splitlines())
    assert dict(split_files("mnist", "t10k")) == sums


def test_real_download_of_mnist_t10k(tmp_path: Path, mnist_files: Path, serve_dir) -> None:
    base = serve_dir(mnist_files)
    out = tmp_path / "raw"
    download(mnist_config(base, image_size=32, max_images=1000), out)

    assert files_in(out) == sorted([IMAGES, LABELS, "images.npz", "source.json"])
    assert md5_of(str(out / IMAGES)) == "9fb629c4189551a2d022fa330f9573f3"
    raw = read_raw(out)
    assert raw.images.shape == (1000, 1, 32, 32) and raw.images.dtype == np.uint8
    assert set(np.unique(raw.labels).tolist()) == set(range(10))
    assert raw.info["files"][0] == {
        "name": IMAGES,
        "md5": "9fb629c4189551a2d022fa330f9573f3",
        "bytes": 1648877,
        "url": base + IMAGES,
    }

    # Present with the right MD5: reused, even with every mirror down.
    again = load_source(mnist_config(f"http://127.0.0.1:{closed_port()}/"), out)
    assert len(again.labels) == 10000
    assert all(f["url"] is None for f in again.info["files"])


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting_server() -> Iterator[Callable[[type, Path], tuple[str, dict[str, int]]]]:
    """Factory: serve a folder with a handler class; returns (base URL, hits per path)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(handler: type, folder: Path) -> tuple[str, dict[str, int]]:
        hits: dict[str, int] = {}

        def make(*args: object) -> http.server.BaseHTTPRequestHandler:
            return handler(*args, directory=str(folder), hits=hits)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _Counted(_CountingHandler):
    def __init__(self, *args: object, hits: dict[str, int], **kwargs: object) -> None:
        self.hits = hits
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        self.respond()

    def respond(self) -> None:
        super().do_GET()


def test_flipped_byte_is_a_checksum_error_after_the_retries(
    tmp_path: Path, mirror_copy: Path, counting_server
) -> None:
    data = bytearray((mirror_copy / IMAGES).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (mirror_copy / IMAGES).write_bytes(bytes(data))
    base, hits = counting_server(_Counted, mirror_copy)
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(base, retries=1), out)
    message = str(err.value)
    assert f"could not download {IMAGES}" in message
    assert base + IMAGES in message
    assert "expected MD5 9fb629c4189551a2d022fa330f9573f3" in message
    assert md5_of(str(mirror_copy / IMAGES)) in message  # what the mirror served
    assert hits == {f"/{IMAGES}": 2}  # pooch retries a bad checksum too
    assert files_in(out) == []


class _Lying(_Counted):
    """Announces the full Content-Length, sends half, closes: a connection dropped mid-file."""

    def respond(self) -> None:
        body = Path(self.directory, self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True


def test_a_transfer_cut_short_is_retried_then_reported(
    tmp_path: Path, mnist_files: Path, counting_server
) -> None:
    base, hits = counting_server(_Lying, mnist_files)
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(base, retries=1), out)
    assert f"{base}{IMAGES}: ChunkedEncodingError" in str(err.value)
    assert hits == {f"/{IMAGES}": 2}
    assert files_in(out) == []


def test_first_mirror_404_second_serves(tmp_path: Path, mnist_files: Path, serve_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    dead, good = serve_dir(empty), serve_dir(mnist_files)
    out = tmp_path / "raw"
    download(mnist_config(dead, good), out)
    raw = read_raw(out)
    assert [f["url"] for f in raw.info["files"]] == [good + IMAGES, good + LABELS]
    assert len(raw.labels) == 10000


def test_404_on_every_mirror_lists_every_url(tmp_path: Path, serve_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    first, second = serve_dir(empty), serve_dir(empty) + "sub/"
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(first, second), out)
    message = str(err.value)
    assert f"{first}{IMAGES}: HTTPError: 404" in message
    assert f"{second}{IMAGES}: HTTPError: 404" in message
    assert "data.download.mirrors" in message
    assert files_in(out) == []


def test_connection_refused(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{closed_port()}/"
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(base), out)
    assert f"{base}{IMAGES}: ConnectionError" in str(err.value)
    assert "Connection refused" in str(err.value)
    assert files_in(out) == []


class _Flaky(_Counted):
    def respond(self) -> None:
        if self.hits[self.path] == 1:
            self.send_error(503, "busy")
        else:
            super().respond()


def test_transient_503_is_retried(tmp_path: Path, mnist_files: Path, counting_server) -> None:
    base, hits = counting_server(_Flaky, mnist_files)
    out = tmp_path / "raw"
    download(mnist_config(base, retries=1), out)
    assert hits == {f"/{IMAGES}": 2, f"/{LABELS}": 2}
    assert md5_of(str(out / LABELS)) == "ec29112dd5afa0611ce80d1b7f02629c"


def test_stale_file_with_wrong_md5_is_replaced(
    tmp_path: Path, mnist_files: Path, serve_dir
) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / LABELS).write_bytes(b"stale")
    load_source(mnist_config(serve_dir(mnist_files)), out)
    assert md5_of(str(out / LABELS)) == "ec29112dd5afa0611ce80d1b7f02629c"


def test_file_mirrors(tmp_path: Path, mnist_files: Path) -> None:
    missing, local = (tmp_path / "nowhere").as_uri() + "/", mnist_files.as_uri()
    raw = load_source(mnist_config(missing, local, retries=3, max_images=50), tmp_path / "raw")
    assert raw.info["files"][1]["url"] == f"{local}/{LABELS}"
    assert raw.images.shape == (50, 1, 28, 28)
