"""torchrun as 2 nodes x 1 process, one node per namespace host, c10d rendezvous on node0.

python proto/torchrun/two_nodes.py MODE [--steps N] [--step-sleep S] [--fault-at-step K]
MODE: ok | plain-netns (no own hostname) | plain-netns-fixed | kill-worker | kill-agent-node |
      link-down | kill-worker-node0
Prints each node's exit code, the seconds from the fault to each exit, and the log tails.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.netns import NetnsLab  # noqa: E402

TORCHRUN = str(REPO / ".venv/bin/torchrun")
SCRIPT = str(REPO / "proto/torchrun/ddp_toy.py")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--step-sleep", type=float, default=0.0)
    ap.add_argument("--fault-at-step", type=int, default=5)
    ap.add_argument("--pg-timeout", type=float, default=0)
    ap.add_argument("--extra", default="", help="extra torchrun flags")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="torchrun-2n-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with NetnsLab(["node0", "node1"]) as lab:
        if args.mode.startswith("plain-netns"):
            # No /etc/netns/<ns>/hosts: every host sees the machine's /etc/hosts and hostname.
            import shutil

            for host in lab.hosts.values():
                shutil.rmtree(f"/etc/netns/{host.netns}")
        procs, logs = {}, {}
        for name in ("node0", "node1"):
            host = lab[name]
            endpoint = "node0:29400"
            extra = args.extra.split()
            if args.mode.startswith("plain-netns"):
                endpoint = f"{lab['node0'].address}:29400"
            if args.mode.startswith("plain-netns-fixed"):
                is_host = "1" if name == "node0" else "0"
                extra += [f"--local-addr={host.address}", f"--rdzv-conf=is_host={is_host}"]
                env_h = {**env, "GLOO_SOCKET_IFNAME": "eth0"}
                if args.mode == "plain-netns-fixed-noifname":
                    del env_h["GLOO_SOCKET_IFNAME"]
            else:
                env_h = env
            argv = [
                TORCHRUN,
                "--nnodes=2",
                "--nproc-per-node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={endpoint}",
                "--rdzv-id=toy",
                "--max-restarts=0",
                *extra,
                SCRIPT,
                "--steps",
                str(args.steps),
                "--step-sleep",
                str(args.step_sleep),
                "--pg-timeout",
                str(args.pg_timeout),
            ]
            logs[name] = tmp / f"{name}.log"
            if args.mode.startswith("plain-netns"):
                # Plain `ip netns exec`: the machine's hostname ("vm" -> 127.0.0.1) in both.
                import subprocess as sp

                out = open(logs[name], "ab")
                p = sp.Popen(
                    ["ip", "netns", "exec", host.netns, *argv],
                    stdout=out,
                    stderr=sp.STDOUT,
                    env=env_h,
                    cwd=tmp,
                    start_new_session=True,
                )
                lab.processes.append((host, p))
            else:
                p = host.popen(argv, log_path=logs[name], env=env_h, cwd=tmp)
            procs[name] = p
        t_start = time.monotonic()
        t_fault = None
        if args.mode in ("kill-worker", "kill-agent-node", "link-down", "kill-worker-node0"):
            victim = "node0" if args.mode == "kill-worker-node0" else "node1"
            pattern = re.compile(rf"rank \d step {args.fault_at_step}\b")
            while not pattern.search(logs[victim].read_text(errors="replace")):
                if time.monotonic() - t_start > 300:
                    sys.exit("fault step never reached")
                time.sleep(0.1)
            agent = procs[victim].pid
            workers = [p for p in lab[victim].pids() if p != agent]
            t_fault = time.monotonic()
            if args.mode in ("kill-worker", "kill-worker-node0"):
                # The worker: the python child of torchrun that prints "rank".
                children = subprocess.run(
                    ["pgrep", "-P", str(agent)], capture_output=True, text=True
                ).stdout.split()
                for c in children:
                    os.kill(int(c), signal.SIGKILL)
                print(f"SIGKILLed worker {children} of agent {agent} on {victim}")
            elif args.mode == "kill-agent-node":
                for pid in lab[victim].pids():
                    os.kill(pid, signal.SIGKILL)
                print(f"SIGKILLed every process on {victim} (agent {agent}, workers {workers})")
            else:
                lab[victim].link_down()
                print(f"link of {victim} down")
        ends = {}
        while len(ends) < 2:
            for name, p in procs.items():
                if name not in ends and p.poll() is not None:
                    ends[name] = (p.returncode, time.monotonic())
            if time.monotonic() - t_start > 900:
                print("still running after 900 s; giving up")
                break
            time.sleep(0.1)
        for name, (rc, t) in ends.items():
            since = t - (t_fault or t_start)
            print(f"== {name}: exit {rc}, {since:.1f} s after {'fault' if t_fault else 'start'}")
        for name in procs:
            print(f"---- {name} log tail ({logs[name]})")
            print("\n".join(logs[name].read_text(errors="replace").splitlines()[-25:]))


if __name__ == "__main__":
    main()
