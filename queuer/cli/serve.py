"""Long-running servers: ``run`` (workers from a factory) and ``web`` (the web UI)."""

from __future__ import annotations

import os
from dataclasses import replace

import click

from queuer.cli.base import CliState, main, pass_state


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs QUEUER_WEB_TOKEN.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--read-only", is_flag=True, help="Pages only: no cancel, re-queue, stop or schedule buttons.")
@click.option("--show-encrypted", is_flag=True,
              help="Show encrypted arguments and results decrypted (needs QUEUER_ENCRYPTION_KEY).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDRESS",
              help="A reverse proxy (address or network) whose X-Forwarded-For/-Proto/-Host are believed; "
                   "repeatable (default: QUEUER_WEB_TRUSTED_PROXIES, comma-separated).")
@click.option("--public-origin", default=None, metavar="URL",
              help="The origin browsers use behind a proxy, e.g. https://queue.example.com "
                   "(default: QUEUER_WEB_PUBLIC_ORIGIN).")
@click.option("--revoke-sessions", is_flag=True,
              help="End every web session of this schema on every server (bump the sessions epoch), then exit.")
@pass_state
def web(state: CliState, host: str, port: int, read_only: bool, show_encrypted: bool,
        trusted_proxies: tuple[str, ...], public_origin: str | None, revoke_sessions: bool) -> None:
    """Serve the web UI (pip install 'queuer[web]'); QUEUER_WEB_TOKEN guards it."""
    from queuer.web import MISSING_EXTRA, extra_installed

    if not extra_installed():
        raise click.ClickException(MISSING_EXTRA)
    from queuer.web.security import TokenError
    from queuer.web.server import WebServerError, check_bind, serve, settings_from_env, web_queuer

    if revoke_sessions:
        import socket

        from queuer.web.server import revoke_sessions as revoke

        with state.queuer() as q:
            epoch = revoke(q, f"queuer web --revoke-sessions on {socket.gethostname()}")
        click.echo(f"ended every web session of schema {state.config().schema} (sessions epoch {epoch})")
        return
    try:
        settings = settings_from_env(read_only, show_encrypted, trusted_proxies, public_origin)
        check_bind(host, settings.token or settings.read_token)
    except (TokenError, WebServerError) as exc:
        raise click.ClickException(str(exc)) from None
    if show_encrypted and not os.environ.get("QUEUER_ENCRYPTION_KEY"):
        raise click.ClickException("--show-encrypted needs the key: set QUEUER_ENCRYPTION_KEY")
    config = state.config()
    if not os.environ.get("QUEUER_DB_STARTUP_WAIT"):
        config = replace(config, startup_wait=config.timeout)
    try:
        q = web_queuer(config, os.environ.get("QUEUER_ENCRYPTION_KEY") or None)
    except Exception as exc:  # unreachable database, schema not installed: one clear line
        raise click.ClickException(str(exc)) from None
    address = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in a URL
    click.echo(f"queuer web on http://{address}:{port} (schema {config.schema}"
               f"{', read-only' if read_only else ''}{', token required' if settings.token or settings.read_token else ''}"
               f"{', behind ' + ', '.join(settings.trusted_proxies) if settings.trusted_proxies else ''}); "
               "Ctrl-C stops it", err=True)
    with q:
        serve(q, settings, host, port)


@main.command()
@click.argument("factory")
@click.option("--max-concurrency", type=int, default=None, help="Override the factory's thread count.")
@click.option("--mode", type=click.Choice(["continuous", "drain"]), default="continuous", show_default=True)
@click.option("--restart-on-failure", is_flag=True, help="Call the factory again after a failure.")
@click.option("--restart-delay", default=5.0, show_default=True, help="Seconds before a restart.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--shutdown-on-listener-failure", is_flag=True,
              help="Stop when the LISTEN connection stays down (instead of polling on).")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port.")
@click.option("--app-dir", default=".", show_default=True,
              help="Directory put first on sys.path, where FACTORY's module is looked up.")
@click.option("--processes", default="1", show_default=True,
              help="Worker processes, each calling FACTORY (a number, or 'auto' for one per CPU): Python code on "
                   "more than one core.")
def run(factory: str, max_concurrency: int | None, mode: str, restart_on_failure: bool, restart_delay: float,
        log_level: str, shutdown_on_listener_failure: bool, metrics_port: int | None, app_dir: str,
        processes: str) -> None:
    """Run workers from FACTORY (module:function or module.function) until SIGTERM/SIGINT."""
    from queuer.supervisor.processes import process_count
    from queuer.supervisor.run import run_workers

    try:
        process_count(processes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--processes") from None
    raise SystemExit(run_workers(
        factory, processes, max_concurrency=max_concurrency, mode=mode, restart_on_failure=restart_on_failure,
        restart_delay=restart_delay, log_level=log_level, shutdown_on_listener_failure=shutdown_on_listener_failure,
        metrics_port=metrics_port, app_dir=app_dir))
