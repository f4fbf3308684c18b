"""The commit workers run: the checkout must be clean (but for what runs write) and its commit on
`orchestration.git_remote` (`make push-code`); `git_env` gives git the team's ssh key.
"""

from __future__ import annotations

import os
import shlex
import string
import subprocess
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

from genpipe.errors import GenpipeError


class CodeError(GenpipeError):
    """The commit cannot reach workers: a dirty checkout, no remote, not pushed, a git failure."""


def git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` for git: never prompt; over ssh, the team key (GENPIPE_DVC_REMOTE_KEYFILE) and
    the services' host key (GENPIPE_SSH_KNOWN_HOSTS), unless GIT_SSH_COMMAND is set. A set one
    gets its $VARIABLES expanded: DVC's git (dulwich) runs it without a shell."""
    env = {**environ, "GIT_TERMINAL_PROMPT": "0"}
    key, known = environ.get("GENPIPE_DVC_REMOTE_KEYFILE"), environ.get("GENPIPE_SSH_KNOWN_HOSTS")
    if command := environ.get("GIT_SSH_COMMAND"):
        env["GIT_SSH_COMMAND"] = string.Template(command).safe_substitute(environ)
    elif key and known:
        options = [f"UserKnownHostsFile={known} ~/.ssh/known_hosts", "StrictHostKeyChecking=yes",
                   "BatchMode=yes", "ConnectTimeout=15"]  # fmt: skip
        env["GIT_SSH_COMMAND"] = shlex.join(["ssh", "-i", key, *(f"-o{o}" for o in options)])
    return env


def dvc_git_env(environ: Mapping[str, str], folder: Path) -> dict[str, str]:
    """git_env for DVC's own git (`dvc exp push`, `pull`): dulwich reads the ssh command only from
    core.sshCommand of the user's and the system's git config, no longer from GIT_SSH_COMMAND
    (jelmer/dulwich#2209, from 1.2.1 on); so the command also goes into a system config of ours,
    in `folder` (GIT_CONFIG_SYSTEM), that includes the machine's."""
    from dulwich.config import ConfigFile

    env, path = git_env(environ), folder / "genpipe-ssh.gitconfig"
    system = environ.get("GIT_CONFIG_SYSTEM", "/etc/gitconfig")
    if not (command := env.get("GIT_SSH_COMMAND")) or system == str(path):
        return env
    config = ConfigFile()
    if Path(system).is_file():
        config.set((b"include",), b"path", system.encode())
    config.set((b"core",), b"sshCommand", command.encode())
    folder.mkdir(parents=True, exist_ok=True)
    config.write_to_path(str(path))
    return {**env, "GIT_CONFIG_SYSTEM": str(path)}


def git(project: Path, *args: str, check: bool = True, timeout: float = 120) -> str:
    """stdout of `git -C project args`; "" for a failure when not `check`."""
    done = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True,
                          env=git_env(os.environ), timeout=timeout)  # fmt: skip
    if check and done.returncode != 0:
        raise CodeError(f"`git {' '.join(args)}` failed in {project}: {done.stderr.strip()}")
    return done.stdout.rstrip() if done.returncode == 0 else ""


def check_code(project: Path, remote: str, allowed_dirty: Collection[str]) -> tuple[str, str]:
    """(commit, remote URL) workers will run; refuses a dirty checkout (but for `allowed_dirty`:
    files, or folders and all under them) or an unpushed commit."""
    if not git(project, "rev-parse", "--is-inside-work-tree", check=False):
        raise CodeError(
            f"{project} is not a git checkout: workers run the flow run's commit, so the "
            "controller must run from one (git init && git add -A && git commit)"
        )
    commit = git(project, "rev-parse", "HEAD")
    excludes = [f":(exclude,literal){p}" for p in allowed_dirty]
    status = ("status", "--porcelain", "--untracked-files=all", "--", ".", *excludes)
    if dirty := git(project, *status):
        paths = [line[3:] for line in dirty.splitlines()]
        shown = ", ".join(paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
        raise CodeError(
            f"the checkout {project} has uncommitted changes ({shown}), and workers run commit "
            f"{commit[:12]} as committed. Commit them (or git stash), push (make push-code) and "
            "run again; only dvc.lock, params.yaml and the stages' outputs may differ"
        )
    if not (url := git(project, "remote", "get-url", remote, check=False)):
        raise CodeError(
            f"the checkout {project} has no git remote {remote!r} (orchestration.git_remote in "
            "params.yaml), which workers fetch from. Add the team services' code repo with "
            f"`make services-git-remote`, or `git remote add {remote} <url>`, then `make push-code`"
        )
    git(project, "fetch", "--quiet", "--no-tags", remote)  # what the remote holds now
    if not git(project, "branch", "--remotes", "--contains", commit, "--list", f"{remote}/*"):
        raise CodeError(
            f"commit {commit[:12]} is not on git remote {remote!r} ({url}), so workers cannot "
            f"fetch it: push it (`make push-code`, or `git push {remote} HEAD`) and run again"
        )
    return commit, url


def push_head(project: Path, remote: str) -> str:
    """`git push <remote> HEAD:<current branch>` with the team key; returns the pushed commit."""
    if not (branch := git(project, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)):
        raise CodeError(f"{project} is on a detached HEAD: check out a branch (git switch -c NAME)")
    git(project, "push", "--quiet", remote, f"HEAD:refs/heads/{branch}")
    return git(project, "rev-parse", "HEAD")


def main() -> int:
    """`python -m pipelines.code_remote` (`make push-code`): push HEAD to orchestration.git_remote."""
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
