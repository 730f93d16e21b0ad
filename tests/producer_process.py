"""A producer process for the partition test: adds a job every 0.1 s and reports each call.

Prints READY, then one line per call: "OK <rid> <seconds>" or "ERR <error class> <seconds> <message>".
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from queuer import new_queuer
from queuer.errors import QueuerError


def main() -> int:
    q = new_queuer("partitioned-producer", 1)
    print("READY", flush=True)
    i = 0
    while True:
        started = time.monotonic()
        try:
            job = q.add_job("noop", i)
            print(f"OK {job.rid} {time.monotonic() - started:.3f}", flush=True)
        except QueuerError as exc:
            message = str(exc).replace("\n", " ")[:200]
            print(f"ERR {type(exc).__name__} {time.monotonic() - started:.3f} {message}", flush=True)
        except Exception as exc:  # a raw driver error: the test fails on it
            print(f"RAW {type(exc).__name__} {time.monotonic() - started:.3f} {exc}", flush=True)
        i += 1
        time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
