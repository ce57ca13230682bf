"""A tiny process that starts the measured children, so their peak RSS is their own.

Linux keeps a process's peak RSS across `execve`, and a child started by `vfork` (as Python's
`subprocess` does) shares its parent's memory until then: the child's `ru_maxrss` starts at the
peak of the parent that spawned it. The benchmark driver grows large (it checks results with
DuckDB), so it never starts a measured child itself; it asks this process, which stays small
and uses a plain `fork`. Protocol: one JSON request per line on stdin, one JSON reply per line
on stdout. Standard library only; run as `python -S spawner.py`.
"""

import json
import os
import sys
import time
from typing import Any


def _child(request: dict[str, Any]) -> None:
    os.chdir(request["cwd"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.execvpe(request["argv"][0], request["argv"], request["env"])


def main() -> None:
    started: dict[int, float] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            start = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                try:
                    _child(request)
                finally:
                    os._exit(127)
            started[pid] = start
            reply: dict[str, float] = {"pid": pid}
        else:
            pid, status, usage = os.wait4(request["pid"], 0)
            reply = {
                "returncode": os.waitstatus_to_exitcode(status),
                "maxrss_kib": usage.ru_maxrss,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "wall_s": time.perf_counter() - started.pop(pid),
            }
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
