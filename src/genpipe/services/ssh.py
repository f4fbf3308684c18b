"""The DVC remote: a folder of the state dir, served by a dedicated sshd (Debian openssh-server).

sshd runs in the foreground (-D) on its own port with its own config, host key and
authorized_keys in the state folder; it accepts only the generated client key of the user who
started it. DVC reaches it through the `dvc-ssh` plugin; the same server can serve
`git clone ssh://...` to other hosts.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from pathlib import Path

from genpipe.config import ServicesConfig
from genpipe.services.settings import Layout, ServiceError, url_host
from genpipe.services.supervisor import Program, venv_bin

_PRIVSEP_DIR = Path("/run/sshd")  # sshd under root insists on this (tmpfiles.d makes it at boot)


def host_key(layout: Layout) -> Path:
    return layout.ssh / "host_ed25519_key"


def client_key(layout: Layout) -> Path:
    return layout.ssh / "client_ed25519_key"


def known_hosts(layout: Layout) -> Path:
    return layout.ssh / "known_hosts"


def remote_url(config: ServicesConfig, layout: Layout) -> str:
    """ssh://<user>@<host>:<port>/<abs path of the remote folder>."""
    return (
        f"ssh://{getpass.getuser()}@{url_host(config.host)}:{config.dvc_remote.ssh_port}"
        f"{layout.dvc_remote}"
    )


def code_remote_url(config: ServicesConfig, layout: Layout) -> str:
    """ssh://<user>@<host>:<port>/<abs path of the bare code repo>: what workers clone."""
    return (
        f"ssh://{getpass.getuser()}@{url_host(config.host)}:{config.dvc_remote.ssh_port}"
        f"{layout.code_repo}"
    )


# HEAD of the bare repo follows the first branch pushed to it, so `git clone` checks that branch
# out (a bare repo's HEAD names `master` whatever the pushers call their branch).
_POST_RECEIVE = """#!/bin/sh
# written by genpipe.services: HEAD follows the pushed branch while it names none that exists
git rev-parse --quiet --verify HEAD >/dev/null && exit 0
while read old new ref; do
    case "$ref" in refs/heads/*) git symbolic-ref HEAD "$ref"; exit 0 ;; esac
done
"""


def init_code_repo(layout: Layout) -> None:
    """The bare git repo the same sshd serves (workers clone a flow run's commit from it, and
    teammates clone and pull). Serving any reachable commit lets a clone fetch a SHA no branch
    names."""
    if not (layout.code_repo / "HEAD").exists():
        tmp = layout.code_repo.with_name(layout.code_repo.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        for args in (
            ["init", "-q", "--bare", str(tmp)],
            ["-C", str(tmp), "config", "uploadpack.allowReachableSHA1InWant", "true"],
            ["-C", str(tmp), "config", "uploadpack.allowFilter", "true"],
        ):
            subprocess.run(["git", *args], check=True, capture_output=True)
        tmp.replace(layout.code_repo)
    hook = layout.code_repo / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(_POST_RECEIVE)
    hook.chmod(0o755)


def _keygen(ssh_keygen: Path, path: Path, comment: str) -> None:
    if path.exists():
        return
    tmp = path.with_name(path.name + ".new")
    for leftover in (tmp, tmp.with_name(tmp.name + ".pub")):
        leftover.unlink(missing_ok=True)
    subprocess.run(
        [str(ssh_keygen), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(tmp)],
        check=True,
        capture_output=True,
    )
    tmp.with_name(tmp.name + ".pub").replace(path.with_name(path.name + ".pub"))
    tmp.replace(path)


def prepare(config: ServicesConfig, layout: Layout, ssh_keygen: Path) -> None:
    """Keys, authorized_keys, known_hosts and sshd_config (rewritten on every start)."""
    _keygen(ssh_keygen, host_key(layout), "genpipe-services-host")
    _keygen(ssh_keygen, client_key(layout), f"genpipe-dvc-{getpass.getuser()}")
    authorized = layout.ssh / "authorized_keys"
    authorized.write_text(client_key(layout).with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    host_pub = host_key(layout).with_suffix(".pub").read_text().split()[:2]
    entry = f"[{config.host}]:{config.dvc_remote.ssh_port}"
    known_hosts(layout).write_text(f"{entry} {' '.join(host_pub)}\n")
    (layout.ssh / "sshd_config").write_text(
        f"""# written by genpipe.services on every start; edit params.yaml instead
Port {config.dvc_remote.ssh_port}
ListenAddress {config.host}
HostKey {host_key(layout)}
PidFile none
AuthorizedKeysFile {authorized}
AllowUsers {getpass.getuser()}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# the state folder may live under a world-writable parent such as /tmp; every key file is 0600
# in a 0700 folder that this program creates
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
# git's wire protocol v2 (git clone/fetch of the code repo) is negotiated through this variable
AcceptEnv GIT_PROTOCOL
Subsystem sftp internal-sftp
"""
    )
    if os.geteuid() == 0 and not _PRIVSEP_DIR.is_dir():
        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
    init_code_repo(layout)


def program(config: ServicesConfig, layout: Layout, sshd: Path) -> Program:
    """sshd in the foreground (-D), logging to stderr (-e) and so to its log file."""
    argv = [str(sshd), "-D", "-e", "-f", str(layout.ssh / "sshd_config")]
    return Program("sshd", argv, {}, layout.ssh)


def probe(host: str, port: int, timeout: float) -> str | None:
    """None if an SSH server greets on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            banner = sock.recv(64)
    except OSError as exc:
        return f"ssh://{url_host(host)}:{port}: {exc}"
    return None if banner.startswith(b"SSH-2.0-") else f"{host}:{port}: not an SSH server"


def configure_dvc_remote(
    config: ServicesConfig, layout: Layout, repo: Path, environ: dict[str, str]
) -> str:
    """Make the services' remote the default of the DVC repo at `repo` (in .dvc/config.local:
    the URL and the key path are this machine's). The URL and key come from the environment
    `make -s services-env` prints (GENPIPE_DVC_REMOTE_URL, GENPIPE_DVC_REMOTE_KEYFILE), so any
    checkout gets the team's; without them, from this checkout's services settings."""
    name = config.dvc_remote.name
    dvc = str(venv_bin() / "dvc")
    url = environ.get("GENPIPE_DVC_REMOTE_URL") or remote_url(config, layout)
    key = Path(environ.get("GENPIPE_DVC_REMOTE_KEYFILE") or client_key(layout))
    if not key.is_file():
        raise ServiceError(
            f"no DVC remote key at {key}: set GENPIPE_DVC_REMOTE_URL and GENPIPE_DVC_REMOTE_KEYFILE "
            '(eval "$(make -s services-env)" on the services host, or copy its key here and '
            "export its path), then `make services-dvc-remote` again"
        )
    for args in (
        ["remote", "add", "--local", "--force", "--default", name, url],
        ["remote", "modify", "--local", name, "keyfile", str(key)],
    ):
        done = subprocess.run([dvc, *args], cwd=repo, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"`dvc {' '.join(args)}` in {repo} failed: {done.stderr.strip()}")
    return url


def configure_git_remote(
    config: ServicesConfig, layout: Layout, repo: Path, name: str, environ: dict[str, str]
) -> str:
    """Add (or repoint) the git remote `name` of the checkout at `repo` to the services' code
    repo (GENPIPE_CODE_REMOTE_URL when set), so `make push-code` and the flow find it."""
    url = environ.get("GENPIPE_CODE_REMOTE_URL") or code_remote_url(config, layout)
    current = subprocess.run(
        ["git", "-C", str(repo), "remote", "get-url", name], capture_output=True, text=True
    )
    verb = "set-url" if current.returncode == 0 else "add"
    done = subprocess.run(
        ["git", "-C", str(repo), "remote", verb, name, url], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ServiceError(f"`git remote {verb} {name}` in {repo} failed: {done.stderr.strip()}")
    return url
