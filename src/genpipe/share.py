"""Sharing a checkout's results through the DVC remote: outputs first, then their run records.

PLACEHOLDER until issue 26's module lands (DECISIONS.md, "Sharing"): same signature, the minimum
issue 27's dispatch needs. A run record is pushed only after its outputs reached the remote, so a
record on the remote always restores (`dvc repro --pull`) instead of rerunning; the git-tracked
outputs (metrics, plot tables) go up as objects too, since a record restores them from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genpipe.errors import GenpipeError


def push(root: Path, stages: Sequence[str] | None = None, remote: str | None = None) -> None:
    """Push `stages`' outputs (None: the whole pipeline's), then the run record of each."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage
    from dvc.stage.cache import _can_hash, _get_cache_hash
    from dvc.stage.serialize import to_single_stage_lockfile

    where = remote or "the default DVC remote"
    with Repo(str(root), _wait_for_lock=True) as repo:
        # absolute: DVC reads targets relative to the working directory, not to `root`
        names = [f"{Path(root).resolve() / 'dvc.yaml'}:{n}" for n in stages] if stages is not None else None
        collected = (
            [s for name in names for s in repo.stage.collect(name)]
            if names is not None
            else [s for s in repo.index.stages if isinstance(s, PipelineStage)]
        )
        try:
            repo.push(targets=names, remote=remote)
            uncached = {o.hash_info for s in collected for o in s.outs if not o.use_cache}
            if uncached := {h for h in uncached if h}:
                repo.cloud.push(uncached, remote=remote)
            odb = repo.cloud.get_remote_odb(remote, "push --run-cache", hash_name="md5-dos2unix")
            for stage in collected:
                if not _can_hash(stage) or not all(o.hash_info for o in stage.outs):
                    continue
                record = to_single_stage_lockfile(stage)
                key = _get_cache_hash(dict(record), key=True)
                local = repo.stage_cache._get_cache_path(key, _get_cache_hash(record))
                if Path(local).exists():
                    target = odb.fs.join(odb.path, "runs", key[:2], key, Path(local).name)
                    odb.fs.makedirs(odb.fs.parent(target), exist_ok=True)
                    odb.fs.put_file(local, target)
        except GenpipeError:
            raise
        except Exception as exc:  # DVC's: no remote, unreachable, disk full, missing objects
            raise GenpipeError(f"sharing {root} through {where} failed: {exc}") from exc


def main() -> int:
    """`python -m genpipe.share`: push the whole pipeline's outputs and run records."""
    import sys

    from genpipe.settings import project_root

    try:
        push(project_root())
    except GenpipeError as exc:
        print(f"genpipe share: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
