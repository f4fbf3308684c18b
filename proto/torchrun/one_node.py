"""torchrun as 1 node x 2 processes on the plain host; MODE ok | kill-rank1 (SIGKILL at step 5)."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
mode = sys.argv[1]
tmp = Path(tempfile.mkdtemp(prefix="torchrun-1n-"))
log = tmp / "torchrun.log"
argv = [
    str(REPO / ".venv/bin/torchrun"),
    "--standalone",
    "--nnodes=1",
    "--nproc-per-node=2",
    "--max-restarts=0",
    str(REPO / "proto/torchrun/ddp_toy.py"),
    "--steps",
    "40",
    "--step-sleep",
    "0.5" if mode != "ok" else "0",
]
env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
with open(log, "wb") as out:
    p = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True
    )
t0 = time.monotonic()
t_fault = None
try:
    if mode == "kill-rank1":
        while not re.search(r"rank 1 step 5\b", log.read_text(errors="replace")):
            time.sleep(0.1)
        pid = int(re.search(r"rank 1/2 pid (\d+)", log.read_text()).group(1))
        t_fault = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        print(f"SIGKILLed rank 1 (pid {pid})")
    rc = p.wait(timeout=600)
finally:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
print(
    f"torchrun exit {rc}, {time.monotonic() - (t_fault or t0):.1f} s after {'fault' if t_fault else 'start'}"
)
text = log.read_text(errors="replace").splitlines()
print(
    "\n".join(
        line for line in text if re.search(r"identical|max \||RuntimeError|exitcode|rank  ", line)
    )
)
