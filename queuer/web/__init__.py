"""``queuer web``: the page an operator keeps open (``pip install 'queuer[web]'``).

Server-rendered pages (Starlette + Jinja2, served by Uvicorn) with a little
plain JavaScript for the overview's refresh; the charts are inline SVG drawn
on the server. Modules:

- ``params``: every query parameter and form field, validated (a 400 otherwise);
- ``queries``: the SQL reads of the pages (keyset pagination, no count over the archive);
- ``actions``: cancel, re-queue, stop, schedules, bulk, through the Queuer's own API;
- ``security``: the tokens, the session cookie, CSRF, loopback-only without a token;
- ``throttle``: failed tokens answered late, per client and server-wide;
- ``proxy``: X-Forwarded-* from trusted proxies only, the public origin;
- ``store``: the web UI's tables (sessions epoch, signed-out sessions, the audit log);
- ``charts``: the overview's two charts as SVG shapes;
- ``app``: the routes and the guard middleware; ``server``: Uvicorn in the foreground or in a thread.
"""

from __future__ import annotations

MISSING_EXTRA = "the web UI needs its extra: pip install 'queuer[web]'"


def extra_installed() -> bool:
    """Whether starlette, jinja2 and uvicorn can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("starlette", "jinja2", "uvicorn"))
