"""Entry point of a measured subprocess: `python -m bench.worker MODULE:FUNCTION JSON_PARAMS`.

Calls `bench.MODULE.FUNCTION(**params)`, which does its own setup, times its measured section
and returns a dict of figures; the worker adds its own peak RSS and prints the result as one
marked JSON line on stdout (the last one wins).
"""

from __future__ import annotations

import importlib
import json
import resource
import sys

from bench.harness import MARKER


def main(argv: list[str]) -> int:
    target, raw = argv[1], argv[2]
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(f"bench.{module_name}")
    result = dict(getattr(module, function_name)(**json.loads(raw)) or {})
    result["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sys.stdout.flush()
    sys.stdout.write("\n" + MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
