"""A producer process for the partition test: adds a job every 0.1 s and reports each call.

Prints READY, then one line per call: "OK <rid> <seconds>" or "ERR <error class> <seconds> <message>".
With --async, the calls are the async client's, awaited in an event loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from queuer import Job, new_async_queuer, new_queuer
from queuer.errors import QueuerError


def main() -> int:
    if "--async" in sys.argv:
        return asyncio.run(main_async())
    q = new_queuer("partitioned-producer", 1)

    async def add(i: int) -> Job:
        return q.add_job("noop", i)

    return asyncio.run(produce(add))


async def main_async() -> int:
    aq = await new_async_queuer("partitioned-producer")

    async def add(i: int) -> Job:
        return await aq.add_job("noop", i)

    return await produce(add)


async def produce(add: Callable[[int], Awaitable[Any]]) -> int:
    print("READY", flush=True)
    i = 0
    while True:
        started = time.monotonic()
        try:
            job = await add(i)
            print(f"OK {job.rid} {time.monotonic() - started:.3f}", flush=True)
        except QueuerError as exc:
            message = str(exc).replace("\n", " ")[:200]
            print(f"ERR {type(exc).__name__} {time.monotonic() - started:.3f} {message}", flush=True)
        except Exception as exc:  # a raw driver error: the test fails on it
            print(f"RAW {type(exc).__name__} {time.monotonic() - started:.3f} {exc}", flush=True)
        i += 1
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
