"""Fetch files over HTTP(S) from an ordered list of mirrors, verified by MD5.

A file reaches its final name only after its checksum matched: bytes are streamed into a temp
file next to the target (genpipe.io.atomic_path), so a crash, a truncated response or a corrupt
mirror never leaves a half file behind. A file already present with the right MD5 is reused.

Per mirror, transient failures (connection errors, timeouts, 5xx, truncated bodies) are retried
with exponential backoff; permanent ones (404 and other 4xx, a wrong checksum from a complete
download) move straight on to the next mirror, since asking again would get the same answer.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import socket
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from genpipe import io
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


class DownloadError(GenpipeError):
    """A file could not be fetched from any mirror; the message lists every URL tried."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str


@dataclass(frozen=True)
class Fetched:
    name: str
    path: Path
    md5: str
    size: int
    url: str | None  # None: reused from the output folder (already verified by MD5)


class _Attempt(Exception):
    """One failed attempt; `retry` says whether asking the same mirror again could help."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def mirror_url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def fetch_file(
    remote: RemoteFile,
    folder: Path,
    mirrors: list[str],
    *,
    retries: int = 3,
    backoff_seconds: float = 0.5,
    timeout_seconds: float = 30.0,
) -> Fetched:
    """Return `folder/remote.name` with a verified MD5, downloading it only if needed."""
    target = Path(folder) / remote.name
    if target.is_file():
        if md5_of(target) == remote.md5:
            log.info("%s: present with the right MD5, not fetching again", target)
            return Fetched(remote.name, target, remote.md5, target.stat().st_size, None)
        log.warning("%s: present but its MD5 is wrong; removing it and fetching again", target)
        target.unlink()
    if not mirrors:
        raise DownloadError(f"{remote.name}: no mirrors configured; set data.download.mirrors")

    results: list[str] = []
    for base in mirrors:
        url = mirror_url(base, remote.name)
        for attempt in range(retries + 1):
            try:
                size = _download(url, target, remote.md5, timeout_seconds)
            except _Attempt as failure:
                results.append(f"{url} (attempt {attempt + 1}): {failure}")
                log.warning("%s: %s", url, failure)
                if not failure.retry or attempt == retries:
                    break
                time.sleep(backoff_seconds * 2**attempt)
            else:
                log.info("%s: fetched %d bytes from %s, MD5 verified", remote.name, size, url)
                return Fetched(remote.name, target, remote.md5, size, url)
    tried = "\n".join(f"  - {line}" for line in results)
    raise DownloadError(
        f"could not download {remote.name} (expected MD5 {remote.md5}) into {folder}; "
        f"every mirror failed:\n{tried}\n"
        "Check data.download.mirrors in params.yaml (and the network), then run again."
    )


def _download(url: str, target: Path, expected_md5: str, timeout: float) -> int:
    """Stream `url` into a temp file, verify it, and rename it to `target`; return its size."""
    with io.atomic_path(target) as tmp:
        h = hashlib.md5()
        size = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                declared = resp.headers.get("Content-Length")
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
        except urllib.error.HTTPError as exc:
            raise _Attempt(f"HTTP {exc.code} {exc.reason}", retry=exc.code >= 500) from None
        except urllib.error.URLError as exc:
            missing = isinstance(exc.reason, FileNotFoundError)  # a file:// mirror without it
            raise _Attempt(_describe_reason(exc.reason), retry=not missing) from None
        except TimeoutError:
            raise _Attempt(f"timed out after {timeout:g}s", retry=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Attempt(f"transfer failed ({type(exc).__name__}: {exc})", retry=True) from None
        if declared is not None and int(declared) != size:
            raise _Attempt(
                f"truncated: got {size} of the {declared} bytes announced by Content-Length",
                retry=True,
            )
        actual = h.hexdigest()
        if actual != expected_md5:
            hint = (
                " (the gzip stream ends early: the file is truncated)"
                if _gzip_truncated(tmp)
                else ""
            )
            raise _Attempt(
                f"checksum mismatch{hint}: expected MD5 {expected_md5}, "
                f"got {actual} ({size} bytes)",
                retry=False,
            )
    return size


def _describe_reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the mirror up and the port right?)"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, FileNotFoundError):
        return f"not found ({reason})"
    if isinstance(reason, socket.gaierror):
        return f"host name not resolved ({reason})"
    return f"unreachable ({reason})"


def _gzip_truncated(path: Path) -> bool:
    """True if `path` starts like gzip but its stream stops before the end marker."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return False
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(_CHUNK):
                pass
    except EOFError:
        return True
    except (OSError, zlib.error):
        return False
    return False
