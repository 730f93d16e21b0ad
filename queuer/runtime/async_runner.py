"""Running an ``async def`` task from a job thread, so that a cancel or timeout interrupts it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any

from queuer.database.forks import start_over_after_fork
from queuer.model.context import JobContext


class ThreadLoops:
    """One event loop per job thread, made on first use and reused by every async task it runs."""

    def __init__(self) -> None:
        self._local = threading.local()
        # Every loop made here, held apart from the threads' locals: a forked child drops the
        # other threads' locals, and a loop collected there would take its descriptors out of
        # the epoll instance it shares with this process's loop.
        self._loops: set[asyncio.AbstractEventLoop] = set()
        start_over_after_fork(self)

    def after_fork_in_child(self) -> None:
        """In a forked child (a suspect's process): loops of its own, made on first use. The parent's stay
        referenced, never run or closed here: their epoll instances are the parent's too."""
        self._local = threading.local()

    def run(self, context: JobContext, coroutine: Any) -> Any:
        """Run a task's coroutine on this thread's loop; a cancel or timeout interrupts it at its next await."""
        if loop_running_here():  # drain called from async code (an async test): not on its loop
            return run_coroutine_once(context, coroutine)
        return run_coroutine(self._loop(), context, coroutine)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            self._loops.add(loop)
        return loop

    def close(self) -> None:
        """Close the calling thread's event loop, if it has one (an open one warns when collected)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        self._local.loop = None
        if loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._loops.discard(loop)


def run_coroutine(loop: asyncio.AbstractEventLoop, context: JobContext, coroutine: Any) -> Any:
    """Run a task's coroutine to its end on ``loop``; ``context.cancel`` interrupts it at its next await.

    Tasks the coroutine started and left running are cancelled and awaited before
    this returns, as ``asyncio.run`` does: on a loop reused by the next job they
    would otherwise go on running inside it, as the ended job.
    """
    running = loop.create_task(coroutine)
    context.on_cancel(lambda: _cancel_soon(loop, running))
    try:
        return loop.run_until_complete(running)
    finally:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:
        pass  # the loop is closed: the coroutine ended long ago


def run_coroutine_once(context: JobContext, coroutine: Any) -> Any:
    """``run_coroutine`` on an event loop of its own, closed afterwards; in a thread of its own
    (with this thread's context variables) when this thread already runs an event loop."""
    if loop_running_here():
        return _in_a_thread_of_its_own(lambda: run_coroutine_once(context, coroutine))
    loop = asyncio.new_event_loop()
    try:
        return run_coroutine(loop, context, coroutine)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_a_thread_of_its_own(fn: Callable[[], Any]) -> Any:
    done: dict[str, Any] = {}

    def main() -> None:
        try:
            done["result"] = fn()
        except BaseException as exc:
            done["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(main,), name="queuer-async-task")
    thread.start()
    thread.join()
    if "error" in done:
        raise done["error"]
    return done["result"]
