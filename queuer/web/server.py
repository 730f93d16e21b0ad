"""Serving the app with Uvicorn: in the foreground (``queuer web``) or in a thread (tests, the bench)."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import uvicorn

from queuer.client.queuer import Queuer
from queuer.config.database import DatabaseConfiguration
from queuer.config.ports import free_port
from queuer.config.settings import WorkerSettings
from queuer.web.app import create_app
from queuer.web.proxy import parse_networks, parse_public_origin
from queuer.web.security import check_tokens, is_loopback_address
from queuer.web.settings import WebSettings
from queuer.web.store import WebStore


class WebServerError(Exception):
    """A server that must not start as asked (an open address without a token)."""


def check_bind(host: str, token: str | None) -> None:
    """Listen beyond loopback only with a token."""
    if token is None and not is_loopback_address(host):
        raise WebServerError(
            f"refusing to listen on {host} without a token: set QUEUER_WEB_TOKEN (every request must then carry "
            "it), or keep the default --host 127.0.0.1")


def web_queuer(config: DatabaseConfiguration, encryption_key: str | None) -> Queuer:
    """The server's Queuer: reads and acts on jobs; never alters the schema nor registers a worker."""
    from queuer.client.factory import new_queuer_with_db

    return new_queuer_with_db("queuer-web", 1, encryption_key, config, settings=WorkerSettings(),
                              install=False, register=False)


def _uvicorn_config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    # Forwarding headers are the app's to read (queuer.web.proxy: only from --trusted-proxy); Uvicorn's own
    # reading would believe any loopback peer, and so any proxy on this machine.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                          server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)


def serve(q: Queuer, settings: WebSettings, host: str, port: int, log_level: str = "info") -> None:
    """Run until SIGINT/SIGTERM (Uvicorn's own signal handling)."""
    check_bind(host, settings.token or settings.read_token)
    app_log = logging.getLogger("queuer.web")
    if not app_log.handlers and not logging.getLogger().handlers:
        # Failed sign-ins, refusals and the audit trail, beside Uvicorn's own lines.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        app_log.addHandler(handler)
        app_log.setLevel(logging.INFO)
    uvicorn.Server(_uvicorn_config(create_app(q, settings), host, port, log_level)).run()


class WebServer:
    """The app served by Uvicorn in a background thread: ``start()`` returns once it listens."""

    def __init__(self, q: Queuer, settings: WebSettings | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.settings = settings or WebSettings()
        check_bind(host, self.settings.token or self.settings.read_token)
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(_uvicorn_config(create_app(q, self.settings), host, self.port, "warning"))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def start(self, timeout: float = 10.0) -> WebServer:
        self._thread = threading.Thread(target=self._server.run, name="queuer-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise WebServerError(f"the web server stopped at start-up (is port {self.port} free?)")
            if time.monotonic() > deadline:
                raise WebServerError(f"the web server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def settings_from_env(read_only: bool, show_encrypted: bool, trusted_proxies: tuple[str, ...] = (),
                      public_origin: str | None = None) -> WebSettings:
    """Flags plus the environment: QUEUER_WEB_TOKEN and QUEUER_WEB_READ_TOKEN (checked: at least 16
    characters, not the same), QUEUER_WEB_TRUSTED_PROXIES (comma-separated) and QUEUER_WEB_PUBLIC_ORIGIN
    where no flag gives them."""
    token, read_token = check_tokens(os.environ.get("QUEUER_WEB_TOKEN"), os.environ.get("QUEUER_WEB_READ_TOKEN"))
    if not trusted_proxies:
        trusted_proxies = tuple(os.environ.get("QUEUER_WEB_TRUSTED_PROXIES", "").split(","))
    public_origin = public_origin or os.environ.get("QUEUER_WEB_PUBLIC_ORIGIN") or None
    try:
        networks = tuple(str(n) for n in parse_networks(trusted_proxies))
        origin = parse_public_origin(public_origin)
    except ValueError as exc:
        raise WebServerError(str(exc)) from None
    return WebSettings(read_only=read_only, show_encrypted=show_encrypted, token=token, read_token=read_token,
                       trusted_proxies=networks, public_origin=origin)


def revoke_sessions(q: Queuer, who: str) -> int:
    """End every web session of this schema (on every server, at once); return the new sessions epoch."""
    store = WebStore(q.db)
    epoch = store.bump_epoch()
    store.record(who, f"command line, database role {store.current_role()}", "revoke-sessions",
                 outcome=f"done: sessions epoch is now {epoch}")
    return epoch


__all__ = ["WebServer", "WebServerError", "check_bind", "free_port", "revoke_sessions", "serve", "settings_from_env",
           "web_queuer"]
