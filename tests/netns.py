"""A second "host" for fault tests: a network namespace joined to this one by a veth pair.

Processes started with ``IsolatedHost.popen`` reach this host's PostgreSQL
only through the veth pair, so ``partition()`` can drop every packet between
them (a ``blackhole`` queueing discipline on both ends: nothing is closed,
nothing answers, exactly like a host that lost power or its network) and
``heal()`` lets them through again.

The addresses are private ones inside namespaces this test makes itself; a
``blackhole`` route for their /24 keeps any late packet (a server retrying
towards an address whose link is gone) on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


class IsolatedHost:
    def __init__(self) -> None:
        tag = os.getpid() % 100000
        third = 20 + os.getpid() % 200
        self.namespace = f"queuer-test-{tag}"
        self.host_link = f"qh{tag}"
        self.guest_link = f"qg{tag}"
        self.subnet = f"10.231.{third}.0/24"
        self.host_address = f"10.231.{third}.1"  # this host, as the namespace sees it
        self.guest_address = f"10.231.{third}.2"
        self.partitioned = False
        self._made: list[str] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot make one (not root, no iproute2), or None."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        if not shutil.which("ip") or not shutil.which("tc"):
            return "needs iproute2 (ip, tc)"
        return None

    def create(self) -> IsolatedHost:
        try:
            _run("ip", "route", "add", "blackhole", self.subnet)
            self._made.append("route")
            _run("ip", "netns", "add", self.namespace)
            self._made.append("netns")
            _run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.guest_link)
            self._made.append("link")
            _run("ip", "link", "set", self.guest_link, "netns", self.namespace)
            _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            _run("ip", "link", "set", self.host_link, "up")
            self._in_guest("ip", "addr", "add", f"{self.guest_address}/30", "dev", self.guest_link)
            self._in_guest("ip", "link", "set", self.guest_link, "up")
            self._in_guest("ip", "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def _in_guest(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.namespace, *args)

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a process inside the namespace (same user, same files, its own network)."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, *args], **kwargs)

    def partition(self) -> None:
        """Drop every packet both ways; no socket is closed or reset."""
        _run("tc", "qdisc", "add", "dev", self.host_link, "root", "blackhole")
        self._in_guest("tc", "qdisc", "add", "dev", self.guest_link, "root", "blackhole")
        self.partitioned = True

    def heal(self) -> None:
        _run("tc", "qdisc", "del", "dev", self.host_link, "root")
        self._in_guest("tc", "qdisc", "del", "dev", self.guest_link, "root")
        self.partitioned = False

    def destroy(self) -> None:
        if "netns" in self._made:
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30)
        if "link" in self._made:
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=30)
        if "route" in self._made:
            subprocess.run(["ip", "route", "del", "blackhole", self.subnet], capture_output=True, timeout=30)
        self._made.clear()

    def __enter__(self) -> IsolatedHost:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
