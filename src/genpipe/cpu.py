"""How many CPU threads a stage's torch may use: its share of the cores this process may run on.

The cores are the affinity mask capped by the cgroup's CPU quota (a container, a CI runner, a
systemd slice: the quota is what the scheduler enforces, whatever the mask says). Several genpipe
processes often compute on the same cores at once (the flow's parallel trainings, pytest-xdist
workers, a worker running two stages); whoever starts them sets `GENPIPE_CPU_SHARE` to how many,
and each then takes cores // share threads. More threads than cores makes OpenMP's threads wait on
each other at every operation, which costs far more than the threads gain.

Cores are also shared with whatever else runs on the machine: the stage CLIs make OpenMP's idle
threads sleep rather than spin (genpipe.stages._cli.passive_wait).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from genpipe.errors import GenpipeError

SHARE_ENV = "GENPIPE_CPU_SHARE"


def _quota(path: Path, v2: bool) -> float | None:
    """CPUs allowed by one cgroup's quota file(s), None when unlimited or unreadable."""
    try:
        if v2:  # cpu.max: "<quota> <period>" or "max <period>"
            quota, period = (path / "cpu.max").read_text().split()
        else:  # cpu.cfs_quota_us is -1 when unlimited
            quota = (path / "cpu.cfs_quota_us").read_text()
            period = (path / "cpu.cfs_period_us").read_text()
        allowed = int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):  # no such file; "max"
        return None
    return allowed if allowed > 0 else None


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """CPUs this process's cgroup quota allows (the tightest along its hierarchy); None: no quota.

    Reads /proc/self/cgroup under `root`: a cgroup v1 hierarchy that holds the `cpu` controller,
    else the v2 one. Each level from the mount point down to the process's own cgroup is read;
    levels a container's view does not show are skipped.
    """
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    hierarchies = dict(line.split(":", 2)[1:] for line in lines if line.count(":") >= 2)
    v1 = next((p for ctl, p in hierarchies.items() if "cpu" in ctl.split(",")), None)
    if v1 is not None:
        cgroup, mount, v2 = v1, root / "sys/fs/cgroup/cpu", False
    elif "" in hierarchies:
        cgroup, mount, v2 = hierarchies[""], root / "sys/fs/cgroup", True
    else:
        return None
    relative = PurePosixPath(cgroup).relative_to("/")
    limits = [_quota(mount / level, v2) for level in [*relative.parents, relative]]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def usable_cores(root: Path = Path("/")) -> int:
    """Cores this process may use: its affinity mask, capped by the cgroup quota (rounded down)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.floor(limit))
    return max(1, cores)


def cpu_share(environ: Mapping[str, str]) -> int:
    """How many genpipe compute processes share this process's cores (GENPIPE_CPU_SHARE, default 1)."""
    value = environ.get(SHARE_ENV, "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise GenpipeError(
            f"{SHARE_ENV}={value!r} is not a positive whole number of processes; "
            f"unset it (`unset {SHARE_ENV}`) or set how many genpipe processes share the cores"
        )
    return int(value)


def thread_count(requested: int, cores: int, share: int) -> int:
    """`requested` when set (> 0), else an even split of the cores, at least one thread each."""
    if requested > 0:
        return requested
    return max(1, cores // share)


def stage_threads(requested: int, environ: Mapping[str, str] = os.environ) -> int | None:
    """The intra-op threads a stage should run with: `runtime.cpu_threads` when set, else None
    when the user set OMP_NUM_THREADS (torch already follows it), else this process's share."""
    if requested <= 0 and "OMP_NUM_THREADS" in environ:
        return None
    return thread_count(requested, usable_cores(), cpu_share(environ))


def share_env(processes: int, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """GENPIPE_CPU_SHARE for `processes` started at once, each beside the others, by a process
    that already shares its cores `cpu_share(environ)` ways (a CI runner, an outer launcher)."""
    return {SHARE_ENV: str(cpu_share(environ) * max(1, processes))}
