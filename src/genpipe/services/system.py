"""The system programs the services need, and the Debian packages that provide them."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from genpipe.services.settings import ServiceError

log = logging.getLogger(__name__)

# program -> Debian package
PACKAGES = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}
# Where Debian puts programs that are not on a user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/sbin")
_POSTGRES_DIRS = "/usr/lib/postgresql"
_POLICY = Path("/usr/sbin/policy-rc.d")


def find(program: str) -> Path | None:
    """`program` on PATH, else in /usr/sbin or the newest /usr/lib/postgresql/<N>/bin."""
    if found := shutil.which(program):
        return Path(found).resolve()
    dirs = list(_EXTRA_DIRS)
    versions = sorted(Path(_POSTGRES_DIRS).glob("*/bin"), key=lambda p: _version(p.parent.name))
    dirs += [str(p) for p in reversed(versions)]
    if found := shutil.which(program, path=os.pathsep.join(dirs)):
        return Path(found).resolve()
    return None


def _version(name: str) -> int:
    return int(name) if name.isdigit() else -1


def missing() -> dict[str, str]:
    """The programs not found, each with its package."""
    return {prog: pkg for prog, pkg in PACKAGES.items() if find(prog) is None}


def require() -> dict[str, Path]:
    """The path of every program, or a ServiceError saying which packages to install."""
    if absent := missing():
        packages = " ".join(sorted(set(absent.values())))
        raise ServiceError(
            f"not installed: {', '.join(sorted(absent))}. Install them with "
            f"`apt-get install {packages}` (as root), or run `make services-install`."
        )
    return {prog: find(prog) for prog in PACKAGES}  # type: ignore[misc]


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Keep the packages' own daemons (a system sshd on port 22, a postgres cluster) from
    starting during the install: Debian's invoke-rc.d asks /usr/sbin/policy-rc.d, 101 = deny.
    Container images usually ship one; otherwise one is in place for the install only."""
    if _POLICY.exists():
        yield
        return
    _POLICY.write_text(
        "#!/bin/sh\n# genpipe.services: no daemon starts during its apt-get install\nexit 101\n"
    )
    _POLICY.chmod(0o755)
    try:
        yield
    finally:
        _POLICY.unlink(missing_ok=True)


def install_missing() -> list[str]:
    """apt-get install the missing packages (root only); returns the packages installed.

    The services run their own sshd and postgres from the state folder; the packages' system
    services are not used (and, in a container, not started: policy-rc.d or no init).
    """
    absent = sorted(set(missing().values()))
    if not absent:
        return []
    if os.geteuid() != 0:
        raise ServiceError(
            f"missing Debian packages {' '.join(absent)}: run `sudo apt-get install {' '.join(absent)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # another apt-get (a second install at the same time) holds dpkg's lock: wait for it
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    cmd = ["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *absent]
    log.info("installing %s", " ".join(absent))
    with _no_service_starts():
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", *wait, "update", "-q"], env=env, capture_output=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise ServiceError(f"`{' '.join(cmd)}` failed:\n{done.stderr[-2000:]}")
    if still := missing():
        raise ServiceError(f"installed {' '.join(absent)} but still missing {', '.join(still)}")
    return absent
