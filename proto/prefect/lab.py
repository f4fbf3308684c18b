"""Prefect dispatch across namespace hosts: prefect server + git daemon on ctl, process workers on
worker-a (genpipe-cpu), worker-b (genpipe-gpu), worker-c (genpipe-cpu), a parent flow on ctl.

python proto/prefect/lab.py SCENARIO [--seconds N] [--within S] [--heartbeat S] [--fault-tick K]
SCENARIO: ok | kill-worker-process | kill-host | link-down
Prints a timeline (seconds since the parent started) of child flow-run states, the parent's exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.netns import NetnsLab  # noqa: E402

BIN = REPO / ".venv/bin"
HERE = Path(__file__).resolve().parent
POOLS = {"worker-a": "genpipe-cpu", "worker-b": "genpipe-gpu", "worker-c": "genpipe-cpu"}


def log(t0: float, msg: str) -> None:
    print(f"[{time.monotonic() - t0:7.1f}s] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--within", type=int, default=60, help="zombie automation window, s")
    ap.add_argument("--heartbeat", type=int, default=30, help="PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
    ap.add_argument("--fault-tick", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=None, help="run_deployment timeout, s")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--quiet", action="store_true", help="children print nothing while working")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="prefect-proto-"))
    print("work dir", tmp)
    t0 = time.monotonic()
    with NetnsLab(["ctl", *POOLS]) as lab:
        ctl = lab["ctl"]
        dirs = {name: tmp / name for name in lab.hosts}
        for d in dirs.values():
            d.mkdir()
        api = "http://ctl:4200/api"
        base_env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp),
            "OMP_NUM_THREADS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": api,
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(args.heartbeat),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "GIT_TERMINAL_PROMPT": "0",
        }

        def env_for(name: str) -> dict[str, str]:
            return {**base_env, "PREFECT_HOME": str(dirs[name] / "prefect")}

        # --- ctl: the code repo (bare, served by git daemon) and a checkout to deploy from.
        bare, work = dirs["ctl"] / "repos" / "proto.git", dirs["ctl"] / "checkout"
        git = ["git", "-c", "user.email=p@p", "-c", "user.name=p"]
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        shutil.copytree(HERE / "repo", work)
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "proto"]):
            subprocess.run([*git, *cmd], cwd=work, check=True)
        subprocess.run(
            [*git, "push", "-q", str(bare), "HEAD:refs/heads/main"], cwd=work, check=True
        )
        subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=bare, check=True)
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
        ).stdout.strip()
        ctl.popen(
            [
                "git",
                "-c",
                "uploadpack.allowFilter=true",
                "-c",
                "uploadpack.allowAnySHA1InWant=true",
                "daemon",
                "--reuseaddr",
                "--export-all",
                f"--base-path={dirs['ctl'] / 'repos'}",
                "--listen=0.0.0.0",
                "--port=9418",
                str(dirs["ctl"] / "repos"),
            ],
            log_path=dirs["ctl"] / "git-daemon.log",
        )
        ctl.popen(
            ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200", "--no-ui"],
            log_path=dirs["ctl"] / "server.log",
            env=env_for("ctl"),
            cwd=dirs["ctl"],
        )
        lab.wait_port(ctl, 9418)
        lab.wait_port(ctl, 4200, timeout=180)
        ctl.run(
            [
                "python",
                "-c",
                "import urllib.request as u,time\nfor i in range(120):\n"
                "  try: u.urlopen('http://ctl:4200/api/health'); break\n"
                "  except Exception: time.sleep(1)",
            ],
            env=env_for("ctl"),
        )
        log(t0, f"server and git daemon up on ctl ({ctl.address}); commit {commit[:12]}")

        for pool in sorted(set(POOLS.values())):
            ctl.run(
                ["prefect", "work-pool", "create", pool, "--type", "process"], env=env_for("ctl")
            )
        ctl.run(["prefect", "--no-prompt", "deploy", "--all"], env=env_for("ctl"), cwd=work)
        ctl.run(
            ["python", str(HERE / "repo" / "zombie_automation.py"), str(args.within)],
            env=env_for("ctl"),
        )
        dep = json.loads(
            ctl.run(
                [
                    "python",
                    "-c",
                    (
                        "import json;from prefect import get_client\n"
                        "with get_client(sync_client=True) as c:\n"
                        " d=c.read_deployment_by_name('stage/cpu');print(json.dumps(d.pull_steps))"
                    ),
                ],
                env=env_for("ctl"),
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        log(t0, f"pools, deployments, zombie automation ready; stored pull steps: {dep}")

        workers = {}
        for name, pool in POOLS.items():
            workers[name] = lab[name].popen(
                ["prefect", "worker", "start", "--pool", pool, "--name", name, "--limit", "1"],
                log_path=dirs[name] / "worker.log",
                env=env_for(name),
                cwd=dirs[name],
            )
        time.sleep(3)

        # --- the parent flow run, on ctl.
        plan = {"a": "stage/cpu", "b": "stage/gpu"}
        parent_cmd = [
            "python",
            "-c",
            (
                "import sys, json; sys.path.insert(0, '.')\nfrom stages import pipeline\n"
                f"print('RESULT', json.dumps(pipeline(commit={commit!r}, plan={plan!r}, "
                f"seconds={args.seconds}, timeout={args.timeout!r}, quiet={args.quiet!r})))"
            ),
        ]
        t_parent = time.monotonic()
        parent = ctl.popen(
            parent_cmd, log_path=dirs["ctl"] / "parent.log", env=env_for("ctl"), cwd=work
        )
        log(t0, "parent flow started on ctl")

        t_fault, victim = None, None
        # Quiet children print only their first line: fault `fault_tick` seconds after it.
        pattern = re.compile(r"stage a on " if args.quiet else rf"stage a tick {args.fault_tick}\b")
        seen: dict[str, str] = {}
        os.environ.update(
            {
                "PREFECT_API_URL": f"http://{ctl.address}:4200/api",
                "PREFECT_HOME": str(tmp / "driver-prefect"),
            }
        )
        from prefect import get_client

        def poll() -> None:
            with get_client(sync_client=True) as client:
                for run in client.read_flow_runs():
                    key = f"{run.name} ({run.id.hex[:8]}, {(run.labels or {}).get('prefect.worker.name', '-')})"
                    state = run.state.name if run.state else "?"
                    if seen.get(key) != state:
                        seen[key] = state
                        log(
                            t_parent,
                            f"flow run {key}: {state}"
                            + (
                                f" - {run.state.message[:150]}"
                                if run.state
                                and run.state.message
                                and state not in ("Running", "Scheduled", "Pending")
                                else ""
                            ),
                        )

        while parent.poll() is None:
            poll()
            if args.scenario != "ok" and t_fault is None:
                for name in POOLS:
                    if pattern.search((dirs[name] / "worker.log").read_text(errors="replace")):
                        victim = lab[name]
                if victim is not None:
                    if args.quiet:
                        time.sleep(args.fault_tick)
                    t_fault = time.monotonic()
                    if args.scenario == "kill-worker-process":
                        os.kill(workers[victim.name].pid, signal.SIGKILL)
                        log(
                            t_parent,
                            f"FAULT: SIGKILL worker process {workers[victim.name].pid} on {victim.name}; left on host: "
                            + subprocess.run(
                                [
                                    "ps",
                                    "-o",
                                    "pid,pgid,args",
                                    "-p",
                                    ",".join(map(str, victim.pids())),
                                ],
                                capture_output=True,
                                text=True,
                            ).stdout.replace("\n", " | ")[:400],
                        )
                    elif args.scenario == "kill-host":
                        pids = victim.pids()
                        for pid in pids:
                            os.kill(pid, signal.SIGKILL)
                        log(t_parent, f"FAULT: SIGKILL every process on {victim.name} {pids}")
                    elif args.scenario == "link-down":
                        victim.link_down()
                        log(t_parent, f"FAULT: link of {victim.name} down")
            if time.monotonic() - t_parent > 900:
                log(t_parent, "parent still running after 900 s; giving up")
                break
            time.sleep(1)
        poll()
        log(
            t_parent,
            f"parent exited {parent.returncode}"
            + (f", {time.monotonic() - t_fault:.1f} s after the fault" if t_fault else ""),
        )
        out = (dirs["ctl"] / "parent.log").read_text(errors="replace")
        print("---- parent log (filtered)")
        print(
            "\n".join(
                line
                for line in out.splitlines()
                if re.search(r"RESULT|StageFailed|Finished|Crashed|Failed|retry|Retry", line)
            )[-3000:]
        )
        with get_client(sync_client=True) as client:
            for run in client.read_flow_runs():
                if run.name and run.state:
                    pass
            arts = client.read_artifacts()
            for art in arts:
                print("artifact", art.key, art.data)
        if args.scenario == "link-down" and victim is not None:
            victim.link_up()
            time.sleep(10)
            poll()
            log(t_parent, "after link up again")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
