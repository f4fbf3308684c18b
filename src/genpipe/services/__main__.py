"""python -m genpipe.services up|down|status|env|dvc-remote|git-remote|install [SERVICE...]

Run from the project root (or set GENPIPE_ROOT); settings come from params.yaml's `services:`
section and GENPIPE_SERVICES_* variables.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from genpipe.errors import GenpipeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genpipe.services", description="genpipe's shared team services"
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "env", "dvc-remote", "git-remote", "install"],
        help="up/down: start/stop; status: what runs and answers; env: client exports; "
        "dvc-remote: make the services' remote the default of a DVC repo; "
        "git-remote: add the services' code repo as the checkout's orchestration.git_remote; "
        "install: apt-get install the missing system packages (root)",
    )
    parser.add_argument("services", nargs="*", help="up/down only: a subset (default: all)")
    parser.add_argument(
        "--repo", type=Path, default=Path.cwd(), help="dvc-remote, git-remote: the checkout"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args)
    except GenpipeError as exc:
        print(f"genpipe.services: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from genpipe.services import manager, ssh, system
    from genpipe.services.settings import Layout, load_services_config

    if args.command == "install":
        installed = system.install_missing()
        print(f"installed {' '.join(installed)}" if installed else "all system packages present")
        return 0
    config = load_services_config()
    layout = Layout.of(config)
    if args.command == "up":
        manager.up(config, layout, args.services)
        print('clients: eval "$(make -s services-env)"  (or python -m genpipe.services env)')
    elif args.command == "down":
        manager.down(config, layout, args.services)
    elif args.command == "status":
        sup_pid, rows = manager.status(config, layout)
        print("\n".join(manager.format_status(sup_pid, rows, layout)))
        return 0 if sup_pid and all(row.healthy for row in rows) else 3
    elif args.command == "env":
        print("\n".join(manager.env_lines(config, layout)))
    elif args.command == "dvc-remote":
        url = ssh.configure_dvc_remote(config, layout, args.repo, dict(os.environ))
        print(f"default DVC remote {config.dvc_remote.name!r} of {args.repo}: {url}")
    elif args.command == "git-remote":
        from genpipe.config import load_params
        from genpipe.settings import project_root

        name = load_params(project_root() / "params.yaml").orchestration.git_remote
        url = ssh.configure_git_remote(config, layout, args.repo, name, dict(os.environ))
        print(f"git remote {name!r} of {args.repo}: {url} (push with `make push-code`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
