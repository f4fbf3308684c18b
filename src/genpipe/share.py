"""Sharing pipeline results through the DVC remote, so that a teammate's `git pull` + `dvc pull`
(or `dvc repro --pull`) restores every stage without training, and nobody ever pulls half a run.

`push(root, stages, remote)` (what workers and `genpipe share` call):
1. outputs first: every object the workspace's dvc.lock names for those stages, the git-tracked
   outputs (metrics, plot tables) included, since a run record restores its stage only where all
   of them are on the remote; plus the objects of the stages' other local run records. Each is
   then checked on the remote by size: a transfer cut short (a full disk, a lost connection)
   leaves a truncated file under the object's final name, which is removed and sent again once.
2. then run records, only those whose every object is on the remote, each written under a
   temporary name and renamed (`dvc push --run-cache` sends every record, before the outputs).
3. outputs that did not arrive are a ShareError naming the remote and the cause (no space left
   there, or the connection), and the stages that got no run record.

`share(root, message)` (`make share`, `genpipe share`): refuses a stale pipeline or uncommitted
code, pushes, commits dvc.lock, params.yaml and the git-tracked outputs, and pushes that commit
to the code remote, in that order, so a commit on the code remote names only pushed outputs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

ALWAYS_CHANGED = "always changed"  # what DVC's status says of an always_changed stage


class ShareError(GenpipeError):
    """Results could not be shared; the message names the remote or file and what to do."""


@dataclass(frozen=True)
class Record:
    """One local run-cache record (.dvc/cache/runs/<xx>/<key>/<value>)."""

    path: Path
    relpath: str  # runs/<xx>/<key>/<value>
    stage: str
    objects: frozenset[Any]  # HashInfo of every output


def push(root: Path, stages: Sequence[str] | None = None, remote: str | None = None) -> None:
    """Outputs of `stages` (None: every stage of dvc.yaml), then their run records whose outputs
    all arrived, to `remote` (None: the default remote)."""
    from dvc.repo import Repo, lock_repo

    with Repo(str(root), _wait_for_lock=True) as repo, lock_repo(repo):
        selected = _stages(repo, stages)
        current = {hi for stage in selected for hi in _outputs(repo, stage)}
        records = [r for r in _records(repo, selected) if not _record_on_remote(repo, remote, r)]
        wanted = current | {hi for r in records for hi in r.objects}
        objects = _expand(repo, wanted)
        local = {hi for hi in objects if _local_odb(repo, hi).exists(hi.value)}
        _transfer(repo, remote, local)
        arrived = _verified(repo, remote, objects)
        if truncated := arrived.truncated:
            for hi in truncated:  # a cut transfer's remains: gone, then one more try
                with contextlib.suppress(OSError):
                    _remote_odb(repo, remote, hi).fs.remove(_remote_path(repo, remote, hi))
            _transfer(repo, remote, local & truncated)
            arrived = _verified(repo, remote, objects)
        complete = {hi for hi in wanted if _expand(repo, {hi}) <= arrived.ok}
        shared = [r for r in records if r.objects <= complete]
        for record in shared:
            _send_record(repo, remote, record)
        missing = current - complete
        if missing:
            late = sorted({s.name for s in selected if set(_outputs(repo, s)) & missing})
            raise ShareError(_failure(repo, remote, objects - arrived.ok, late))
        log.info(
            "shared %d output object(s) and %d run record(s) with DVC remote %s",
            len(objects),
            len(shared),
            _remote_url(repo, remote),
        )


def _stages(repo: Any, names: Sequence[str] | None) -> list[Any]:
    stages = [s for s in repo.index.stages if getattr(s, "name", None)]
    if names is None:
        return stages
    known = {s.name: s for s in stages}
    if unknown := [n for n in names if n not in known]:
        raise ShareError(f"no stage {', '.join(unknown)} in {repo.root_dir}/dvc.yaml")
    return [known[n] for n in names]


def _outputs(repo: Any, stage: Any) -> list[Any]:
    """The objects dvc.lock names for a stage's outputs. A git-tracked output reaches the cache
    only with its stage's run record (DVC commits it then); a stage DVC never run-caches (always
    changed, a persisted or a non-metric `cache: false` output) keeps its git-tracked outputs git's."""
    return [
        out.hash_info
        for out in stage.outs
        if out.hash_info
        and out.hash_info.value
        and (
            out.use_cache
            or (
                not stage.always_changed
                and _local_odb(repo, out.hash_info).exists(out.hash_info.value)
            )
        )
    ]


def _records(repo: Any, stages: Sequence[Any]) -> Iterator[Record]:
    """The local run records of these stages (matched by their output paths)."""
    import yaml
    from dvc_data.hashfile.hash_info import HashInfo

    by_outs = {frozenset(o.def_path for o in s.outs): s.name for s in stages if s.outs}
    runs = Path(repo.stage_cache.cache_dir)
    for path in sorted(runs.glob("*/*/*")):
        if path.name.startswith(".") or not path.is_file():
            continue
        with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
            entry = yaml.safe_load(path.read_text())
            outs = entry["outs"]
            stage = by_outs.get(frozenset(o["path"] for o in outs))
            if stage is None:
                continue
            objects = frozenset(
                HashInfo("md5" if o.get("hash") == "md5" else "md5-dos2unix", o["md5"])
                for o in outs
            )
            yield Record(path, path.relative_to(runs.parent).as_posix(), stage, objects)


def _local_odb(repo: Any, hi: Any) -> Any:
    return repo.cache.legacy if hi.name == "md5-dos2unix" else repo.cache.local


def _remote_odb(repo: Any, remote: str | None, hi: Any) -> Any:
    return repo.cloud.get_remote_odb(remote, "push", hash_name=hi.name)


def _remote_path(repo: Any, remote: str | None, hi: Any) -> str:
    return _remote_odb(repo, remote, hi).oid_to_path(hi.value)


def _expand(repo: Any, objects: Iterable[Any]) -> set[Any]:
    """Objects plus, for a directory, every file its manifest lists (from the local cache)."""
    from dvc_data.hashfile.tree import Tree

    found = set()
    for hi in objects:
        found.add(hi)
        if hi.isdir:
            with contextlib.suppress(FileNotFoundError, ValueError):
                found |= {oid for _, _, oid in Tree.load(_local_odb(repo, hi), hi)}
    return found


def _transfer(repo: Any, remote: str | None, objects: set[Any]) -> None:
    """DVC's own transfer (directory manifests after their files); failures are judged by
    `_verified`, which reads the remote, not by the transfer's log."""
    if not objects:
        return
    # DVC logs a traceback per failed file; the ShareError says what happened once
    quiet = [logging.getLogger(n) for n in ("dvc", "dvc_data", "dvc_objects", "asyncssh")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        repo.cloud.push(objects, remote=remote)
    except Exception as exc:  # a lost connection can abort the whole transfer
        log.debug("transfer to the DVC remote stopped: %s", exc)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


@dataclass(frozen=True)
class _Arrival:
    ok: set[Any]
    truncated: set[Any]


def _verified(repo: Any, remote: str | None, objects: Iterable[Any]) -> _Arrival:
    """Which objects are on the remote whole: present, with the local copy's size (an object
    missing locally counts when it is present). One batch per object kind: DVC's filesystem asks
    for them concurrently."""
    ok, truncated = set(), set()
    kinds: dict[str, list[Any]] = {}
    for hi in objects:
        kinds.setdefault(hi.name, []).append(hi)
    for kind in kinds.values():
        odb = _remote_odb(repo, remote, kind[0])
        try:
            found = odb.fs.info([odb.oid_to_path(hi.value) for hi in kind], return_exceptions=True)
        except Exception:  # no connection at all: none of them is known to be there
            continue
        for hi, info in zip(kind, found, strict=True):
            if isinstance(info, BaseException):  # not there, or the remote out of reach
                continue
            local = _local_odb(repo, hi).oid_to_path(hi.value)
            if not os.path.exists(local) or os.path.getsize(local) == info["size"]:
                ok.add(hi)
            else:
                truncated.add(hi)
    return _Arrival(ok, truncated)


def _record_on_remote(repo: Any, remote: str | None, record: Record) -> bool:
    odb = repo.cloud.get_remote_odb(remote, "push --run-cache", hash_name="md5-dos2unix")
    with contextlib.suppress(OSError):
        return odb.fs.exists(odb.fs.join(odb.path, *record.relpath.split("/")))
    return False


def _send_record(repo: Any, remote: str | None, record: Record) -> None:
    """Upload under a temporary name, then rename: a reader never sees half a record."""
    odb = repo.cloud.get_remote_odb(remote, "push --run-cache", hash_name="md5-dos2unix")
    fs = odb.fs
    dest = fs.join(odb.path, *record.relpath.split("/"))
    tmp = fs.join(fs.parent(dest), f".{record.path.name}.tmp{os.getpid()}")
    fs.makedirs(fs.parent(dest), exist_ok=True)
    fs.put_file(str(record.path), tmp)
    fs.mv(tmp, dest)


def _remote_url(repo: Any, remote: str | None) -> str:
    return repo.cloud.get_remote(remote, "push").fs.unstrip_protocol(
        repo.cloud.get_remote(remote, "push").path
    )


def _remote_name(repo: Any, remote: str | None) -> str:
    return remote or repo.config["core"].get("remote") or "?"


def _failure(repo: Any, remote: str | None, missing: set[Any], stages: list[str]) -> str:
    """The ShareError's message: the remote, the cause, what was withheld, what to do."""
    name, url = _remote_name(repo, remote), _remote_url(repo, remote)
    need = sum(
        os.path.getsize(p)
        for hi in missing
        if os.path.exists(p := _local_odb(repo, hi).oid_to_path(hi.value))
    )
    head = f"dvc push to remote {name!r} ({url}) did not complete: "
    tail = (
        f"{len(missing)} object(s) did not arrive, so no run record was pushed for "
        f"{', '.join(stages)}"
    )
    free, error = _free_space(repo, remote)
    if error is not None:
        return (
            f"{head}lost the connection to the remote ({error}); {tail}. Check the remote "
            "(`make services-status` for the team's), then share again"
        )
    if free is not None and free < max(need, 1):
        return (
            f"{head}no space left on the remote ({free} bytes free, {need} bytes still to "
            f"send); {tail}. Free space there, then share again"
        )
    return f"{head}{tail} ({need} bytes; {free} bytes free there). Share again to retry"


def _free_space(repo: Any, remote: str | None) -> tuple[int | None, str | None]:
    """(bytes free where the remote keeps its files, None) or (None, why it cannot be reached).
    An SSH remote is asked over SFTP (statvfs), the protocol DVC itself speaks to it."""
    import shutil

    config = repo.config["remote"][_remote_name(repo, remote)]
    parts = urlsplit(config["url"])
    if parts.scheme in ("", "file"):
        try:
            return shutil.disk_usage(parts.path or config["url"]).free, None
        except OSError as exc:
            return None, str(exc)
    if parts.scheme != "ssh":
        return None, None
    import asyncio

    async def statvfs() -> int:
        import asyncssh

        key = config.get("keyfile")
        async with (
            asyncssh.connect(
                parts.hostname,
                port=parts.port or 22,
                username=config.get("user") or parts.username,
                client_keys=[key] if key else (),
                known_hosts=None,
                connect_timeout=15,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            attrs = await sftp.statvfs(parts.path)
            return attrs.bavail * attrs.frsize

    try:
        return asyncio.run(asyncio.wait_for(statvfs(), 30)), None
    except Exception as exc:  # refused, timed out, reset: the remote is out of reach
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- the user command: push, then commit and push the commit -----------------------------------


def share(
    root: Path, message: str, remote: str | None = None, git_remote: str | None = None
) -> str:
    """Push the results, commit what names them, push the commit; returns what was done."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stale = {
            name: reasons
            for name, reasons in repo.status().items()
            if [r for r in reasons if r != ALWAYS_CHANGED]
        }
        tracked = [
            "dvc.lock",
            "params.yaml",
            *sorted(out.def_path for s in repo.index.stages for out in s.outs),
        ]
        if not stale:
            # The registry snapshot may predate this checkout's own promotion: settle it (the
            # stages after `champions` rerun without training), so the shared dvc.lock names the
            # registry as it is and a teammate's `dvc repro` reruns nothing but the snapshot.
            repo.reproduce()
    if stale:
        raise ShareError(
            f"the pipeline in {root} is not up to date ({', '.join(sorted(stale))}): its "
            "dvc.lock does not describe these outputs. Run `dvc repro`, then share"
        )
    changed, other = _git_changes(root, tracked)
    if other:
        shown = ", ".join(other[:8]) + (f" and {len(other) - 8} more" if len(other) > 8 else "")
        raise ShareError(
            f"uncommitted changes outside the pipeline's results in {root} ({shown}): the "
            "shared dvc.lock would name code nobody else has. Commit them (or git stash), then share"
        )
    push(root, None, remote)
    if changed:
        _git(root, "add", "--", *changed)
        _git(root, "commit", "-q", "-m", message)
    target, branch = _push_target(root, git_remote)
    _git(root, "push", "-q", target, f"HEAD:refs/heads/{branch}")
    commit = _git(root, "rev-parse", "--short", "HEAD")
    return (
        f"shared: outputs and run records on the DVC remote; commit {commit} "
        f"({'new' if changed else 'unchanged'}) pushed to git remote {target!r} branch {branch}"
    )


def _git(root: Path, *args: str, strip: bool = True) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        timeout=300,
    )
    if done.returncode != 0:
        raise ShareError(f"`git {' '.join(args)}` in {root} failed: {done.stderr.strip()}")
    return done.stdout.strip() if strip else done.stdout


def _git_changes(root: Path, tracked: Sequence[str]) -> tuple[list[str], list[str]]:
    """(changed paths that a share commits, other changed paths); ignored files are neither."""
    out = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", strip=False)
    ours, other = [], []
    entries = iter(out.split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":
            next(entries, None)
        inside = any(path == t or path.startswith(t.rstrip("/") + "/") for t in tracked)
        (ours if inside else other).append(path)
    return sorted(ours), sorted(other)


def _push_target(root: Path, git_remote: str | None) -> tuple[str, str]:
    """(git remote, branch): the branch's upstream, else orchestration.git_remote."""
    branch = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    if git_remote:
        return git_remote, branch
    with contextlib.suppress(ShareError):
        upstream = _git(root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
        remote, _, merge = upstream.partition("/")
        return remote, merge or branch
    from genpipe.config import load_params

    name = load_params(root / "params.yaml").orchestration.git_remote
    remotes = _git(root, "remote").split()
    if name not in remotes:
        raise ShareError(
            f"branch {branch} of {root} has no upstream and no git remote {name!r} "
            "(orchestration.git_remote): clone from $GENPIPE_CODE_REMOTE_URL, or "
            "`make services-git-remote`, then share again"
        )
    return name, branch
