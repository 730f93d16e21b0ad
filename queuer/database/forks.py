"""Objects that must start over in a forked child (gunicorn --preload, multiprocessing)."""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class StartsOverAfterFork(Protocol):
    def after_fork_in_child(self) -> None: ...


def start_over_after_fork(obj: StartsOverAfterFork) -> None:
    """Call ``obj.after_fork_in_child()`` in every child forked from now on, while ``obj`` lives.

    It runs before any other code in the child, so a lock another thread held
    at the fork can be replaced before anyone waits on it forever. The hook
    keeps only a weak reference: it cannot be unregistered, and must not keep
    ``obj`` alive.
    """
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(obj)

    def in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.after_fork_in_child()

    os.register_at_fork(after_in_child=in_child)
