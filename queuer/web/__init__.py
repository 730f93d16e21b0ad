"""``queuer web``: the page an operator keeps open (``pip install 'queuer[web]'``).

Server-rendered pages (Starlette + Jinja2, served by Uvicorn) with a little
plain JavaScript for the overview's refresh; the charts are inline SVG drawn
on the server. Modules:

- ``app``: puts the app together (routes, middleware, error pages);
- ``settings``: how a server runs; ``context``: what its parts share;
- ``headers``: the security headers on every response;
- ``guard``: forwarding headers, who is asking and whether they may (a 401/403 otherwise);
- ``pages``: the read-only views; ``actions``: the POSTs behind the buttons; ``signin``: sign in and out;
- ``graph``: a workflow's jobs as SVG shapes, layered by their longest path from a root;
- ``errors``: an exception as its page; ``render``: templates and their filters;
- ``params``: every query parameter and form field, validated (a 400 otherwise);
- ``forms``: a POSTed form read within its limit, its Origin and CSRF field checked;
- ``reads``: what the pages read (keyset pagination, no count over the archive; the SQL in
  ``database/sql/web.sql``); ``overview``: what the overview shows;
- ``operations``: cancel, re-queue, stop, schedules, bulk, a workflow's cancel, pausing a task, through the
  Queuer's own API;
- ``security``: the tokens, the session cookie, CSRF, loopback-only without a token;
- ``throttle``: failed tokens answered late, per client and server-wide;
- ``proxy``: X-Forwarded-* from trusted proxies only, the public origin;
- ``store``: the web UI's tables (sessions epoch, signed-out sessions, the audit log);
- ``charts``: the overview's two charts as SVG shapes;
- ``server``: Uvicorn in the foreground or in a thread.
"""

from __future__ import annotations

MISSING_EXTRA = "the web UI needs its extra: pip install 'queuer[web]'"


def extra_installed() -> bool:
    """Whether starlette, jinja2 and uvicorn can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("starlette", "jinja2", "uvicorn"))
