"""The code a worker runs: the controller's commit, which workers fetch from a git remote.

Before it sends a stage away, the flow makes sure the commit is what the controller runs and that
workers can get it: the checkout is clean (apart from what DVC and the flow write), and the
commit is on the remote `orchestration.git_remote`. The team services serve a bare repo over
their sshd with the DVC remote's key (`make services-git-remote` adds it, `make push-code`
pushes); `git_env` is how genpipe's git calls (these checks, a worker's fetch) use that key.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from genpipe.errors import GenpipeError


class CodeError(GenpipeError):
    """The commit cannot be sent to workers: a dirty checkout, no remote, or not pushed."""


@dataclass(frozen=True)
class CodeRef:
    commit: str
    url: str  # what workers fetch (the same URL must work from every worker)


def git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` for git: never prompt; over ssh, the team key (GENPIPE_DVC_REMOTE_KEYFILE) and
    the services' host key (GENPIPE_SSH_KNOWN_HOSTS), unless GIT_SSH_COMMAND is set."""
    env = {**environ, "GIT_TERMINAL_PROMPT": "0"}
    key, known = environ.get("GENPIPE_DVC_REMOTE_KEYFILE"), environ.get("GENPIPE_SSH_KNOWN_HOSTS")
    if key and known and "GIT_SSH_COMMAND" not in environ:
        env["GIT_SSH_COMMAND"] = shlex.join(
            ["ssh", "-i", key, "-o", f"UserKnownHostsFile={known} ~/.ssh/known_hosts", "-o",
             "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        )  # fmt: skip
    return env


def _git(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["git", "-C", str(project), *args],
        capture_output=True, text=True, env=git_env(os.environ), timeout=120,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise CodeError(f"`git {' '.join(args)}` failed in {project}: {done.stderr.strip()}")
    return done


def dirty_paths(project: Path, allowed: Collection[str]) -> list[str]:
    """Changed or untracked files other than the `allowed` paths (files, or folders: all under
    them); untracked files one by one, so a new folder of allowed outputs is not named whole."""
    out = _git(project, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    entries, paths = iter(out.split("\0")), []
    for entry in entries:
        if not entry:
            continue
        if entry[0] in "RC":  # a rename or copy: the next field is the source path
            next(entries, None)
        path = entry[3:].rstrip("/")
        if not any(path == a.rstrip("/") or path.startswith(a.rstrip("/") + "/") for a in allowed):
            paths.append(path)
    return sorted(paths)


def check_code(project: Path, remote: str, allowed_dirty: Collection[str]) -> CodeRef:
    """The commit workers will run; refuses a dirty checkout or a commit not on `remote`."""
    if _git(project, "rev-parse", "--is-inside-work-tree", check=False).returncode != 0:
        raise CodeError(
            f"{project} is not a git checkout: workers run the flow run's commit, so the "
            "controller must run from one (git init && git add -A && git commit)"
        )
    commit = _git(project, "rev-parse", "HEAD").stdout.strip()
    if dirty := dirty_paths(project, allowed_dirty):
        shown = ", ".join(dirty[:8]) + (f" and {len(dirty) - 8} more" if len(dirty) > 8 else "")
        raise CodeError(
            f"the checkout {project} has uncommitted changes ({shown}), and workers run commit "
            f"{commit[:12]} as committed. Commit them (or git stash), push (make push-code) and "
            "run again; only dvc.lock, params.yaml and the stages' outputs may differ"
        )
    got = _git(project, "remote", "get-url", remote, check=False)
    if got.returncode != 0:
        raise CodeError(
            f"the checkout {project} has no git remote {remote!r} (orchestration.git_remote in "
            "params.yaml), which workers fetch from. Add the team services' code repo with "
            f"`make services-git-remote`, or `git remote add {remote} <url>`, then `make push-code`"
        )
    url = got.stdout.strip()
    if not on_remote(project, remote, commit):
        raise CodeError(
            f"commit {commit[:12]} is not on git remote {remote!r} ({url}), so workers cannot "
            f"fetch it: push it (`make push-code`, or `git push {remote} HEAD`) and run again"
        )
    return CodeRef(commit, url)


def on_remote(project: Path, remote: str, commit: str) -> bool:
    """Whether some branch or tag of `remote` contains `commit` (fetches tips we lack)."""
    listed = _git(project, "ls-remote", remote, check=False)
    if listed.returncode != 0:
        raise CodeError(f"cannot reach git remote {remote!r} from {project}: {listed.stderr}")
    tips = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    if commit in tips:
        return True

    def known(sha: str) -> bool:
        return _git(project, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0

    if unknown := [t for t in tips if not known(t)]:  # pushed by someone else since our fetch
        _git(project, "fetch", "--quiet", "--no-tags", remote, *unknown, check=False)
    return any(
        _git(project, "merge-base", "--is-ancestor", commit, tip, check=False).returncode == 0
        for tip in tips
        if known(tip)
    )


def push_head(project: Path, remote: str) -> str:
    """`git push <remote> HEAD:<current branch>` with the team key; returns the pushed commit."""
    branch = _git(project, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if branch.returncode != 0:
        raise CodeError(f"{project} is on a detached HEAD: check out a branch (git switch -c NAME)")
    _git(project, "push", "--quiet", remote, f"HEAD:refs/heads/{branch.stdout.strip()}")
    return _git(project, "rev-parse", "HEAD").stdout.strip()


def main() -> int:
    """`python -m pipelines.code_remote` (`make push-code`): push HEAD to orchestration.git_remote."""
    import sys

    from genpipe.config import load_params
    from genpipe.settings import project_root

    project = project_root()
    try:
        remote = load_params(project / "params.yaml").orchestration.git_remote
        print(f"pushed {push_head(project, remote)[:12]} to git remote {remote!r}")
    except GenpipeError as exc:
        print(f"genpipe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
