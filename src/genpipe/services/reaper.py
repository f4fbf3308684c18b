"""supervisord event listener: SIGKILL what a service's process group left behind when its
leader exited or was stopped.

supervisord starts each service as a process group whose id is the leader's pid. When the leader
dies alone (kill -9 of the `mlflow server` wrapper), its children keep the group and the port;
killing the group lets supervisord's restart bind the port again. Standard library only: it runs
in supervisord's environment and must start fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _headers(line: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in line.split())


def main() -> int:
    stdin, stdout = sys.stdin, sys.stdout
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:  # supervisord is gone
            return 0
        headers = _headers(line)
        payload = _headers(stdin.read(int(headers["len"])).split("\n", 1)[0])
        pid = int(payload.get("pid", "0"))
        if pid > 1 and payload.get("processname") != "reaper":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                print(
                    f"{headers['eventname']} {payload.get('processname')}: killed group {pid}",
                    file=sys.stderr,
                    flush=True,
                )
        stdout.write("RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
