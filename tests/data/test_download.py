"""IDX datasets over real HTTP on 127.0.0.1: verified downloads, and every failure mode cleanly.

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

from genpipe.config.data import DataConfig
from genpipe.data.fetch import DownloadError, md5_of
from genpipe.data.sources import IDX_SPECS, load_source, read_raw, write_raw
from tests.params import section

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def mnist_config(*mirrors: str, retries: int = 0, **data: object) -> DataConfig:
    download = {
        "mirrors": list(mirrors),
        "retries": retries,
        "backoff_seconds": 0,
        "timeout_seconds": 10,
    }
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
    spec = {f.name: f.md5 for f in IDX_SPECS["mnist"].files["t10k"]}
    assert spec == sums


def test_real_download_of_mnist_t10k(tmp_path: Path, mnist_files: Path, serve_dir) -> None:
    base = serve_dir(mnist_files)
    out = tmp_path / "raw"
    download(mnist_config(base, image_size=32, max_images=1000), out)

    assert files_in(out) == sorted([IMAGES, LABELS, "images.npz", "source.json"])
    assert md5_of(out / IMAGES) == "9fb629c4189551a2d022fa330f9573f3"
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


def test_flipped_byte_is_a_checksum_error(tmp_path: Path, mirror_copy: Path, serve_dir) -> None:
    data = bytearray((mirror_copy / IMAGES).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (mirror_copy / IMAGES).write_bytes(bytes(data))
    base = serve_dir(mirror_copy)
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(base, retries=2), out)
    message = str(err.value)
    assert f"could not download {IMAGES}" in message
    assert base + IMAGES in message
    assert "expected MD5 9fb629c4189551a2d022fa330f9573f3" in message
    assert f"got {md5_of(mirror_copy / IMAGES)}" in message
    assert message.count("attempt") == 1, "a wrong checksum from a complete file is not retried"
    assert files_in(out) == []


def test_file_truncated_half_way(tmp_path: Path, mirror_copy: Path, serve_dir) -> None:
    data = (mirror_copy / IMAGES).read_bytes()
    (mirror_copy / IMAGES).write_bytes(data[: len(data) // 2])
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match="gzip stream ends early: the file is truncated"):
        download(mnist_config(serve_dir(mirror_copy)), out)
    assert files_in(out) == []


class _LyingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the full Content-Length, sends half, closes: a connection dropped mid-file."""

    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lying_server(mnist_files: Path) -> Iterator[str]:
    handler = type("H", (_LyingHandler,), {"body": (mnist_files / IMAGES).read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_content_length_mismatch_is_retried_then_reported(
    tmp_path: Path, lying_server: str
) -> None:
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(lying_server, retries=1), out)
    message = str(err.value)
    assert "truncated: got 824438 of the 1648877 bytes announced by Content-Length" in message
    assert "(attempt 2)" in message, "a truncated transfer is transient: it is retried"
    assert files_in(out) == []


def test_first_mirror_404_second_serves(tmp_path: Path, mnist_files: Path, serve_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    dead, good = serve_dir(empty), serve_dir(mnist_files)
    out = tmp_path / "raw"
    download(mnist_config(dead, good, retries=3), out)
    raw = read_raw(out)
    assert [f["url"] for f in raw.info["files"]] == [good + IMAGES, good + LABELS]
    assert len(raw.labels) == 10000


def test_404_on_every_mirror_lists_every_url(tmp_path: Path, serve_dir) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    first, second = serve_dir(empty), serve_dir(empty) + "sub/"
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(first, second, retries=3), out)
    message = str(err.value)
    assert f"{first}{IMAGES} (attempt 1): HTTP 404" in message
    assert f"{second}{IMAGES} (attempt 1): HTTP 404" in message
    assert "(attempt 2)" not in message, "404 is permanent: not retried"
    assert "data.download.mirrors" in message
    assert files_in(out) == []


def test_connection_refused(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{closed_port()}/"
    out = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download(mnist_config(base, retries=1), out)
    message = str(err.value)
    assert f"{base}{IMAGES} (attempt 1): connection refused" in message
    assert f"{base}{IMAGES} (attempt 2): connection refused" in message
    assert files_in(out) == []


def test_transient_503_is_retried(tmp_path: Path, mnist_files: Path) -> None:
    hits: dict[str, int] = {}

    class Flaky(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] = hits.get(self.path, 0) + 1
            if hits[self.path] == 1:
                self.send_error(503, "busy")
            else:
                super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    make: Callable[..., Flaky] = lambda *a: Flaky(*a, directory=str(mnist_files))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "raw"
        download(mnist_config(f"http://127.0.0.1:{server.server_address[1]}/", retries=1), out)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == {f"/{IMAGES}": 2, f"/{LABELS}": 2}
    assert md5_of(out / LABELS) == "ec29112dd5afa0611ce80d1b7f02629c"


def test_stale_file_with_wrong_md5_is_replaced(
    tmp_path: Path, mnist_files: Path, serve_dir
) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / LABELS).write_bytes(b"stale")
    load_source(mnist_config(serve_dir(mnist_files)), out)
    assert md5_of(out / LABELS) == "ec29112dd5afa0611ce80d1b7f02629c"


def test_file_mirrors(tmp_path: Path, mnist_files: Path) -> None:
    missing, local = (tmp_path / "nowhere").as_uri() + "/", mnist_files.as_uri()
    raw = load_source(mnist_config(missing, local, retries=3, max_images=50), tmp_path / "raw")
    assert raw.info["files"][1]["url"] == f"{local}/{LABELS}"
    assert raw.images.shape == (50, 1, 28, 28)
