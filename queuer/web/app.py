"""The web app: its routes, its middleware and its error pages, put together.

Handlers are async; every database call runs in Starlette's thread pool
through the Queuer (whose pool bounds the connections this server holds).
Around everything, outermost first: the security headers on every response
(``headers``), then the guard (``guard``: who is asking, and whether they may),
which also turns an unexpected exception into an ordinary 500 page.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from queuer.client.queuer import Queuer
from queuer.web.actions import Actions
from queuer.web.context import WebContext
from queuer.web.errors import EXPECTED, ErrorPages
from queuer.web.guard import GuardMiddleware
from queuer.web.headers import SecurityHeadersMiddleware
from queuer.web.pages import Pages
from queuer.web.settings import WebSettings
from queuer.web.signin import SignIn


def create_app(q: Queuer, settings: WebSettings | None = None) -> Starlette:
    """The web app over a Queuer made with ``install=False, register=False``."""
    web = WebContext(q, settings or WebSettings())
    pages, actions, signin, errors = Pages(web), Actions(web), SignIn(web), ErrorPages(web)
    routes = [
        Route("/", pages.overview, methods=["GET"]),
        Route("/fragments/overview", pages.overview_fragment, methods=["GET"]),
        Route("/jobs", pages.jobs, methods=["GET"]),
        Route("/jobs/bulk", actions.bulk, methods=["POST"]),
        Route("/jobs/{rid}", pages.job, methods=["GET"]),
        Route("/jobs/{rid}/cancel", actions.cancel, methods=["POST"]),
        Route("/jobs/{rid}/requeue", actions.requeue, methods=["POST"]),
        Route("/workers/{rid}/stop", actions.stop_worker, methods=["POST"]),
        # A workflow id may hold "/": the path converter takes it whole (its links encode it as %2F).
        Route("/workflows/{workflow_id:path}/cancel", actions.cancel_workflow, methods=["POST"]),
        Route("/workflows/{workflow_id:path}", pages.workflow, methods=["GET"]),
        Route("/tasks/action", actions.task, methods=["POST"]),
        Route("/schedules", pages.schedules, methods=["GET"]),
        Route("/schedules/action", actions.schedule, methods=["POST"]),
        Route("/audit", pages.audit, methods=["GET"]),
        Route("/login", signin.login_page, methods=["GET"]),
        Route("/login", signin.login, methods=["POST"]),
        Route("/logout", signin.logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(packages=[("queuer.web", "static")]), name="static"),
    ]
    # The exceptions the pages expect become their pages here; any other reaches the guard, which
    # answers a 500 page itself (Starlette's own handler would re-raise it and the server drop the connection).
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeadersMiddleware), Middleware(GuardMiddleware, web=web, errors=errors)],
        exception_handlers={kind: errors.on_error for kind in EXPECTED},
    )
    app.state.web = web
    return app
