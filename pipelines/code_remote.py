"""The code a worker runs: the controller's commit, which the worker clones from a git remote.

A dispatched stage runs the code of the flow run's commit, never whatever a worker has checked out:
the child flow's pull step clones that commit (pipelines/deploy_stages.py). So before it sends a
stage away, the flow makes sure the commit is what the controller runs and that workers can get
it: the checkout is clean (apart from what DVC and the flow write: dvc.lock, params.yaml, the
git-tracked metrics and plots), and the commit is on the remote `orchestration.git_remote`.

The team services (`make services-up`) serve a bare repo over their sshd, with the same key as
the DVC remote (`make services-git-remote` adds it to a checkout; `make push-code` pushes).
`git_ssh_command` is how genpipe's own git calls (this check, the worker's clone) use that key.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from genpipe.errors import GenpipeError

GIT_TIMEOUT_SECONDS = 120.0


class CodeError(GenpipeError):
    """The commit cannot be sent to workers: a dirty checkout, no remote, or not pushed."""


@dataclass(frozen=True)
class CodeRef:
    """The commit every dispatched stage runs, and where workers clone it from."""

    commit: str
    remote: str  # the git remote's name in the controller's checkout
    url: str  # what workers clone (the same URL must work from every worker)


def git_ssh_command(environ: Mapping[str, str]) -> str | None:
    """`ssh` with the team key and the services' host key, for git over the services' sshd.

    From `make -s services-env`: GENPIPE_DVC_REMOTE_KEYFILE (the key that logs in to the sshd
    behind both remotes) and GENPIPE_SSH_KNOWN_HOSTS. The user's own known_hosts stays in the list,
    so a remote elsewhere (a git forge) still verifies. None when either is unset.
    """
    key, known = environ.get("GENPIPE_DVC_REMOTE_KEYFILE"), environ.get("GENPIPE_SSH_KNOWN_HOSTS")
    if not key or not known:
        return None
    return shlex.join(
        [
            "ssh",
            "-i",
            key,
            "-o",
            f"UserKnownHostsFile={known} ~/.ssh/known_hosts",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
        ]
    )


def git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` for a git process: never prompt; the team key unless GIT_SSH_COMMAND is set."""
    env = {**environ, "GIT_TERMINAL_PROMPT": "0"}
    command = git_ssh_command(environ)
    if command and "GIT_SSH_COMMAND" not in environ:
        env["GIT_SSH_COMMAND"] = command
    return env


def _git(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["git", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env=git_env(os.environ),
        timeout=GIT_TIMEOUT_SECONDS,
    )
    if check and done.returncode != 0:
        raise CodeError(
            f"`git {' '.join(args)}` failed in {project}: {done.stderr.strip() or done.stdout}"
        )
    return done


def dirty_paths(project: Path, allowed: Collection[str]) -> list[str]:
    """Changed or untracked (not ignored) files, other than the `allowed` project paths (files,
    or folders: everything under them).

    Untracked files are listed one by one: after a run, a new folder of plot tables (all of them
    allowed) would otherwise show up as the folder alone, which no allowed path names."""
    out = _git(project, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    paths = []
    entries = iter(out.split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":  # a rename or copy: the next field is the source path
            next(entries, None)
        if not any(_under(path, a) for a in allowed):
            paths.append(path)
    return sorted(paths)


def _under(path: str, allowed: str) -> bool:
    path, allowed = path.rstrip("/"), allowed.rstrip("/")
    return path == allowed or path.startswith(allowed + "/")


def check_code(project: Path, remote: str, allowed_dirty: Collection[str]) -> CodeRef:
    """The commit workers will run; refuses a dirty checkout or a commit not on `remote`."""
    inside = _git(project, "rev-parse", "--is-inside-work-tree", check=False)
    if inside.returncode != 0:
        raise CodeError(
            f"{project} is not a git checkout: workers clone the flow run's commit, so the "
            "controller must run from one (git init && git add -A && git commit)"
        )
    commit = _git(project, "rev-parse", "HEAD").stdout.strip()
    dirty = dirty_paths(project, allowed_dirty)
    if dirty:
        shown = ", ".join(dirty[:8]) + (f" and {len(dirty) - 8} more" if len(dirty) > 8 else "")
        raise CodeError(
            f"the checkout {project} has uncommitted changes ({shown}), and workers run commit "
            f"{commit[:12]} as committed. Commit them (or git stash), push (make push-code) and "
            "run again; only dvc.lock, params.yaml and the stages' git-tracked outputs may differ"
        )
    got = _git(project, "remote", "get-url", remote, check=False)
    if got.returncode != 0:
        raise CodeError(
            f"the checkout {project} has no git remote {remote!r} (orchestration.git_remote in "
            "params.yaml), which workers clone from. Add the team services' code repo with "
            f"`make services-git-remote`, or `git remote add {remote} <url>`, then `make push-code`"
        )
    url = got.stdout.strip()
    if not on_remote(project, remote, commit):
        raise CodeError(
            f"commit {commit[:12]} is not on git remote {remote!r} ({url}), so workers cannot "
            f"clone it: push it (`make push-code`, or `git push {remote} HEAD`) and run again"
        )
    return CodeRef(commit, remote, url)


def on_remote(project: Path, remote: str, commit: str) -> bool:
    """Whether some ref of `remote` contains `commit` (asks the remote, fetches tips we lack)."""
    listed = _git(project, "ls-remote", remote, check=False)
    if listed.returncode != 0:
        raise CodeError(
            f"cannot reach git remote {remote!r} from {project}: {listed.stderr.strip()}"
        )
    tips = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    if commit in tips:
        return True
    unknown = [t for t in tips if not _has_commit(project, t)]
    if unknown:  # pushed by someone else since our last fetch: get them, then ask git
        _git(project, "fetch", "--quiet", "--no-tags", remote, *unknown, check=False)
    return any(
        _git(project, "merge-base", "--is-ancestor", commit, tip, check=False).returncode == 0
        for tip in tips
        if _has_commit(project, tip)
    )


def _has_commit(project: Path, sha: str) -> bool:
    return _git(project, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0


def push_head(project: Path, remote: str) -> str:
    """`git push <remote> HEAD:<current branch>` with the team key; returns the pushed commit."""
    branch = _git(project, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if branch.returncode != 0:
        raise CodeError(
            f"{project} is on a detached HEAD: check out a branch to push (git switch -c <name>)"
        )
    _git(project, "push", "--quiet", remote, f"HEAD:refs/heads/{branch.stdout.strip()}")
    return _git(project, "rev-parse", "HEAD").stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.code_remote push`: push HEAD to orchestration.git_remote."""
    import argparse
    import sys

    from genpipe.config import load_params
    from genpipe.settings import project_root

    p = argparse.ArgumentParser(prog="python -m pipelines.code_remote")
    p.add_argument("command", choices=["push", "check"])
    args = p.parse_args(argv)
    project = project_root()
    try:
        remote = load_params(project / "params.yaml").orchestration.git_remote
        if args.command == "push":
            commit = push_head(project, remote)
            print(f"pushed {commit[:12]} to git remote {remote!r}")
        else:
            ref = check_code(project, remote, {"dvc.lock", "params.yaml"})
            print(f"workers can clone {ref.commit[:12]} from {ref.url}")
    except GenpipeError as exc:
        print(f"genpipe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
