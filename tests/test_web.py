"""The web UI through Starlette's test client, on a real PostgreSQL: every page and action,
the token, the session cookie, CSRF, read-only mode, hostile parameters, encrypted payloads
and keyset pagination."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta

import pytest

import queuer
from queuer.model.options import OnError, Options
from tests.support import count, sql, wait_until

pytest.importorskip("starlette")
pytest.importorskip("httpx")
# Newer Starlette prefers httpx2 for its test client; httpx works with every version this supports.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

TOKEN = "s3cret-token-for-the-web-tests"
CSRF_FIELD = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class Web:
    """A test client as a browser on this machine (or elsewhere), with the CSRF field at hand."""

    def __init__(self, q, settings, client_host: str = "127.0.0.1", host: str = "127.0.0.1") -> None:
        from starlette.testclient import TestClient

        from queuer.web.app import create_app

        self.client = TestClient(create_app(q, settings), base_url=f"http://{host}", client=(client_host, 50000),
                                 follow_redirects=False)

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def csrf(self, url: str = "/jobs", **kwargs) -> str:
        page = self.get(url, **kwargs)
        assert page.status_code == 200, page.text
        return CSRF_FIELD.search(page.text).group(1)

    def post(self, url: str, data: dict | None = None, csrf: bool = True, **kwargs):
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf(headers=kwargs.get("headers"))
        return self.client.post(url, data=form, **kwargs)


@pytest.fixture
def worker(make_queuer):
    """A started worker with a quick task, a failing one and one that runs until cancelled."""
    q = make_queuer(max_concurrency=4, name="web-worker")
    q.cancelled = threading.Event()

    @q.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    @q.task(name="explode")
    def explode() -> None:
        raise RuntimeError("the flux capacitor is empty")

    @q.task(name="wait_for_cancel")
    def wait_for_cancel() -> None:
        if queuer.current_job().wait_cancelled(30):
            q.cancelled.set()

    q.add_schedule("every-night", "0 3 * * *", "double", 21)
    q.start()
    return q


@pytest.fixture
def web_q(db_config):
    from queuer.web.server import web_queuer

    made = []

    def make(key: str | None = None):
        q = web_queuer(db_config, key)
        made.append(q)
        return q

    yield make
    for q in made:
        q.stop()


@pytest.fixture
def web(worker, web_q):
    """(make a Web client, the worker)."""
    from queuer.web.settings import WebSettings

    def make(**settings):
        key, client = settings.pop("key", None), settings.pop("_client", {})
        return Web(web_q(key), WebSettings(**settings), **client)

    return make


def test_every_page_renders_and_no_secret_is_on_any(worker, web, db_config):
    ok = worker.add_job("double", 21)
    bad = worker.add_job_with_options(Options(on_error=OnError(max_retries=0)), "explode")
    running = worker.add_job("wait_for_cancel")
    later = worker.add_job_with_options(Options(execute_after=timedelta(hours=1)), "double", 1)
    for job in (ok, bad):
        worker.wait_for_job_finished(job.rid, 10)
    wait_until(lambda: worker.get_job(running.rid).status.value == "RUNNING", message="the long job to start")
    cancelled = worker.cancel_job(later.rid)
    ended_params = "&since=2000-01-01T00:00:00Z&until=2999-01-01"

    w = web(token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    pages = ["/", "/fragments/overview", "/schedules", "/jobs", f"/jobs?status=ended{ended_params}",
             *(f"/jobs?status={s}" for s in ("queued", "scheduled", "running", "succeeded", "failed", "cancelled")),
             f"/jobs?task=double&status=succeeded{ended_params}", f"/jobs?rid={str(ok.rid)[:8]}",
             f"/jobs/{ok.rid}", f"/jobs/{bad.rid}", f"/jobs/{running.rid}", f"/jobs/{cancelled.rid}"]
    seen = {}
    for url in pages:
        response = w.get(url, headers=auth)
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
        assert TOKEN not in response.text, url
        seen[url] = response.text

    overview = seen["/"]
    assert 'data-refresh="/fragments/overview"' in overview and "/static/app.js" in overview
    for what in ("double", "explode", "wait_for_cancel", "web-worker", "alive (session held)", "Stop",
                 "Jobs ended per minute", "Queue depth", "<svg"):
        assert what in overview, what
    assert "<html" not in seen["/fragments/overview"] and "web-worker" in seen["/fragments/overview"]
    assert "every-night" in seen["/schedules"] and "0 3 * * *" in seen["/schedules"]
    assert str(running.rid)[:8] in seen["/jobs?status=running"]
    assert str(ok.rid)[:8] in seen[f"/jobs?rid={str(ok.rid)[:8]}"]
    assert "the flux capacitor is empty" in seen["/jobs?status=failed"]

    assert "42" in seen[f"/jobs/{ok.rid}"] and "Re-queue" in seen[f"/jobs/{ok.rid}"]
    failed_page = seen[f"/jobs/{bad.rid}"]
    assert "RuntimeError: the flux capacitor is empty" in failed_page and "Traceback (most recent call last)" in failed_page
    assert "Cancel job" in seen[f"/jobs/{running.rid}"] and "web-worker" in seen[f"/jobs/{running.rid}"]
    assert "CANCELLED" in seen[f"/jobs/{cancelled.rid}"]

    assert w.get("/static/app.js").status_code == 200  # static files need no token
    assert w.get("/static/app.css").headers["content-type"].startswith("text/css")
    missing = w.get("/no/such/page", headers=auth)
    assert missing.status_code == 404 and TOKEN not in missing.text
    assert w.get(f"/jobs/{uuid.uuid4()}", headers=auth).status_code == 404
    worker.cancel_job(running.rid)  # else the worker's stop waits out its timeout


HOSTILE = [
    "/jobs?status=bogus",
    "/jobs?status=queued&status=failed",
    "/jobs?order=id",
    "/jobs?task=" + "x" * 201,
    "/jobs?task=%00",
    "/jobs?task=a%0Ab",
    "/jobs?since=yesterday",
    "/jobs?since=2024-13-01",
    "/jobs?status=ended&since=2024-05-02&until=2024-05-01",
    "/jobs?rid=zzzzzzzz",
    "/jobs?rid=1234",
    "/jobs?rid=%27%3B%20DROP%20TABLE%20job%3B%20--",
    "/jobs?cursor=abc",
    "/jobs?cursor=99999999999999999999",
    "/jobs?status=ended&cursor=12",
    "/jobs?status=ended&cursor=1_2_3",
    "/jobs?status=ended&cursor=-99999999999999999_1",
    "/jobs?status=ended&cursor=1_99999999999999999999",
    "/jobs?" + "&".join(f"p{i}=1" for i in range(60)),
    "/jobs?task=" + "%C3%A9" * 250,
    "/jobs/not-a-uuid",
    "/jobs/1%20OR%201=1",
    "/?notice=%3Cscript%3Ealert(1)%3C/script%3E",
    "/?x=1",
    "/fragments/overview?since=1",
    "/schedules?name=x",
]


def test_bad_or_hostile_parameters_are_400_never_500(worker, web, db_config):
    worker.add_job("held", 1)  # no worker runs "held": it stays queued
    w = web()
    for url in HOSTILE:
        response = w.get(url)
        assert response.status_code == 400, (url, response.status_code, response.text[:300])
        assert "<script>alert" not in response.text
    # Values only ever travel as parameters: an injection attempt is a task name that matches nothing.
    quoted = w.get("/jobs?task=%27%20OR%201%3D1%20--&status=active")
    assert quoted.status_code == 200 and "No job matches." in quoted.text
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 1
    # Hostile forms too.
    assert w.post("/schedules/action", {"name": "every-night", "action": "drop"}).status_code == 400
    assert w.post("/schedules/action", {"name": "x" * 300, "action": "pause"}).status_code == 400
    assert w.post("/jobs/bulk", {"action": "cancel", "status": "nope"}).status_code == 400
    assert w.post("/jobs/not-a-uuid/cancel").status_code == 400
    assert w.post("/jobs/bulk", {"action": "cancel", "extra": "1"}).status_code == 400
    as_json = w.client.post("/schedules/action", json={"name": "every-night"})
    assert as_json.status_code == 400


# Values for every parameter and form field of every route: none may be a 500.
WEIRD = ["", " ", "x" * 401, "x" * 5000, "\x00", "\x7f", "a\nb", "\ud800", "\U0001F600", "-1", "0", "9" * 30,
         "-9223372036854775809", "1e309", "NaN", "'; DROP TABLE job; --", "%", "%zz", "<script>alert(1)</script>",
         "0_0", "_1", "1_2_3", "-0_-0", "99999999999999999_1", "-99999999999999999_1", "\u0661\u0662", "\u00b2",
         "0x10", "+1", "\uff11", "2024-01-01T00:00:00+99:00", "9999-12-31T23:59:59-14:00",
         "0001-01-01T00:00:00+14:00", "2024-02-30", "00000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
         "{12345678-1234-5678-1234-567812345678}", "//evil.example/x", "/\\evil.example", "https://evil.example",
         "ended", "pause", "yes"]


def _encode(value: str) -> str:
    from urllib.parse import quote_from_bytes

    return quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="")  # a lone surrogate too


def test_weird_values_anywhere_are_never_a_500(worker, web):
    job = worker.add_job("held", 1)
    w = web()
    pages = {"/": ["notice"], "/fragments/overview": [], "/jobs": ["status", "task", "since", "until", "rid", "cursor"],
             f"/jobs/{job.rid}": ["notice"], "/schedules": ["notice"], "/login": ["next"]}
    served = set()
    for path, names in pages.items():
        for name in [*names, "bogus"]:
            for value in WEIRD:
                for extra in ("", "&status=ended", "&status=failed") if name == "cursor" else ("",):
                    url = f"{path}?{_encode(name)}={_encode(value)}{extra}"
                    response = w.get(url)
                    assert response.status_code in (200, 303, 400), (url, response.status_code, response.text[:300])
                    served.add(response.status_code)
    for value in WEIRD[1:]:
        for path in ("/jobs/", "/workers/", "/schedules/", "/static/"):
            response = w.get(path + _encode(value))
            assert response.status_code in (400, 404, 405), (path, value, response.status_code)
    csrf = w.csrf()
    forms = {"/jobs/bulk": ["action", "status", "task", "since", "until", "rid", "confirm"],
             f"/jobs/{job.rid}/cancel": [], f"/jobs/{uuid.uuid4()}/requeue": [], f"/workers/{uuid.uuid4()}/stop": [],
             "/schedules/action": ["name", "action"], "/tasks/action": ["name", "action", "status"], "/logout": []}
    for path, names in forms.items():
        for name in [*names, "bogus"]:
            for value in WEIRD:
                body = f"csrf={csrf}&{_encode(name)}={_encode(value)}"
                if path == "/jobs/bulk" and name != "action":
                    body += "&action=requeue&status=cancelled"  # nothing is cancelled: never acts
                response = w.client.post(path, content=body.encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert response.status_code in (200, 303, 400, 404, 409), (path, body[:80], response.status_code)
        for body in (b"\xff\xfe", b"a=%ED%A0%80", b"&".join(b"a%d=1" % i for i in range(60)), b"x" * 20000):
            response = w.client.post(path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert response.status_code == 400, (path, body[:20], response.status_code)
    assert served == {200, 303, 400}
    assert worker.get_job(job.rid).status.value == "QUEUED"  # no form above acted on it
    assert worker.task_controls() == []  # nor paused a task


def _asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks) -> tuple[int, int]:
    """One request straight to the ASGI app, its body in chunks: (status, body bytes the app read).

    The test client reads a streamed body whole before the app sees it, and sends only a Content-Length
    it computed itself; a real server passes both through.
    """
    import asyncio

    read = 0
    chunks = iter(chunks)
    status: list[int] = []

    async def receive():
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"queue.example"), *headers], "client": ("203.0.113.7", 50000),
             "server": ("queue.example", 80)}
    asyncio.run(app(scope, receive, send))
    return status[0], read


def test_a_form_is_read_only_up_to_its_limit_before_anyone_signs_in(worker, web):
    from queuer.web.forms import MAX_FORM_BYTES

    app = web(token=TOKEN).client.app
    form = (b"content-type", b"application/x-www-form-urlencoded")
    # A chunked body (no Content-Length) to /login, which answers strangers: refused once past the limit,
    # not read whole into memory.
    endless = (b"x" * 65536 for _ in range(1000))
    status, read = _asgi(app, "POST", "/login", [form], endless)
    assert status == 400 and read <= MAX_FORM_BYTES + 65536
    # A Content-Length of other digits ("²".isdigit() is True, int("²") fails) is a 400, not a 500.
    for length in ("\u00b2".encode("latin-1"), b"-1", b"1e3", b"99999999999999999999"):
        assert _asgi(app, "POST", "/login", [form, (b"content-length", length)], [b""])[0] == 400, length
    # Traversal out of the static files (which need no token) reaches nothing else.
    for path in ("/static/../jobs", "/static/..%2fjobs", "/static//etc/passwd"):
        assert _asgi(app, "GET", path, [], [b""])[0] == 404, path
    assert _asgi(app, "GET", "/jobs", [], [b""])[0] == 401


def test_hostile_data_is_escaped_and_odd_options_still_render(worker, web, db_config):
    evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    # Rows another producer may have written: options whose extra or schedule is not an object.
    sql(db_config, """
        INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at, options,
                                          error, parameters, results)
        VALUES (1, '11111111-1111-1111-1111-111111111111', %(x)s, 'FAILED', now(), now(), now(),
                '{"extra": [1], "schedule": 5}', %(x)s, json_build_array(%(x)s::text), NULL),
               (2, '22222222-2222-2222-2222-222222222222', %(x)s, 'SUCCEEDED', now(), now(), now(),
                '{"extra": {"schedule": {"a": 1}}, "schedule": {"interval": "<b>"}}', NULL, '[]', to_jsonb(%(x)s::text)),
               (3, '33333333-3333-3333-3333-333333333333', 'plain', 'SUCCEEDED', now(), now(), now(),
                '"options"', NULL, '[]', 'null'),
               (4, '44444444-4444-4444-4444-444444444444', 'plain', 'SUCCEEDED', now(), now(), now(),
                '{"extra": "x", "schedule": {}}', NULL, '[]', 'null')
    """, {"x": evil})
    worker.add_schedule(evil[:60], "0 3 * * *", evil)
    sql(db_config, "UPDATE {schema}.worker SET name = %(x)s, host = %(x)s", {"x": evil})
    w = web()
    rids = [f"{n}" * 8 + "-" + "-".join([f"{n}" * 4] * 3) + "-" + f"{n}" * 12 for n in range(1, 5)]
    for url in ("/", "/fragments/overview", "/jobs?status=ended", "/jobs?status=failed", "/schedules",
                *(f"/jobs/{rid}" for rid in rids)):
        page = w.get(url)
        assert page.status_code == 200, (url, page.text[:300])
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, url
        if url != f"/jobs/{rids[2]}" and url != f"/jobs/{rids[3]}":
            assert "&lt;script&gt;alert(1)" in page.text, url
    assert "recurring: run 1" in w.get(f"/jobs/{rids[0]}").text
    assert "added from cron schedule" in w.get(f"/jobs/{rids[1]}").text
    assert "added directly" in w.get(f"/jobs/{rids[2]}").text and "added directly" in w.get(f"/jobs/{rids[3]}").text


def test_actions_cancel_requeue_stop_and_schedules(worker, web, db_config):
    w = web()
    running = worker.add_job("wait_for_cancel")
    wait_until(lambda: worker.get_job(running.rid).status.value == "RUNNING", message="the job to start")

    cancel = w.post(f"/jobs/{running.rid}/cancel")
    assert cancel.status_code == 303 and cancel.headers["location"] == f"/jobs/{running.rid}?notice=cancelled"
    assert worker.get_job(running.rid).status.value == "CANCELLED"
    assert worker.cancelled.wait(10), "the running task was told"
    page = w.get(cancel.headers["location"])
    assert "The job was cancelled." in page.text and 'id="job-status">CANCELLED' in page.text
    again = w.post(f"/jobs/{running.rid}/cancel")
    assert again.status_code == 409 and "already ended" in again.text

    requeued = w.post(f"/jobs/{running.rid}/requeue")
    assert requeued.status_code == 303 and requeued.headers["location"].endswith("?notice=requeued")
    new_rid = requeued.headers["location"].split("/")[2].split("?")[0]
    new = worker.get_job(new_rid)
    assert new.task_name == "wait_for_cancel" and new.origin_rid == running.rid
    assert f'href="/jobs/{running.rid}"' in w.get(f"/jobs/{new_rid}").text  # its origin, linked
    assert w.post(f"/jobs/{new_rid}/requeue").status_code == 409  # not ended
    assert w.post(f"/jobs/{uuid.uuid4()}/cancel").status_code == 404
    worker.cancel_job(new_rid)

    paused = w.post("/schedules/action", {"name": "every-night", "action": "pause"})
    assert paused.status_code == 303 and paused.headers["location"] == "/schedules?notice=paused"
    assert [s.paused for s in worker.get_schedules()] == [True]
    assert "Resume" in w.get("/schedules").text
    assert w.post("/schedules/action", {"name": "every-night", "action": "resume"}).status_code == 303
    assert [s.paused for s in worker.get_schedules()] == [False]
    triggered = w.post("/schedules/action", {"name": "every-night", "action": "trigger"})
    assert triggered.status_code == 303 and triggered.headers["location"].endswith("?notice=triggered")
    fired_rid = triggered.headers["location"].split("/")[2].split("?")[0]
    assert worker.wait_for_job_finished(fired_rid, 10).result == 42
    assert "added from cron schedule" in w.get(f"/jobs/{fired_rid}").text
    assert w.post("/schedules/action", {"name": "no-such", "action": "pause"}).status_code == 404

    stop = w.post(f"/workers/{worker.worker.rid}/stop")
    assert stop.status_code == 303 and stop.headers["location"] == "/?notice=stopping"
    wait_until(lambda: worker.get_worker(worker.worker.rid).status.value in ("STOPPING", "STOPPED"),
               message="the worker to stop")
    assert worker.wait_until_stopped(10)
    assert w.post(f"/workers/{uuid.uuid4()}/stop").status_code == 404


def test_bulk_cancel_and_requeue_ask_first_and_touch_only_the_selection(worker, web, db_config):
    held = [worker.add_job("held", n) for n in range(5)]  # no worker runs "held": they stay queued
    worker.add_job("other")
    w = web()

    ask = w.post("/jobs/bulk", {"action": "cancel", "status": "queued", "task": "held"})
    assert ask.status_code == 200 and "Cancel 5 jobs?" in ask.text
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = 'held'") == 5  # nothing yet
    late = worker.add_job("held", 99)  # arrives after the confirmation page: not part of the selection
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', ask.text))
    assert fields["confirm"] == "yes" and fields["until"]
    done = w.client.post("/jobs/bulk", data=fields)
    assert done.status_code == 200 and "Cancelled 5 jobs" in done.text
    assert {worker.get_job(j.rid).status.value for j in held} == {"CANCELLED"}
    assert worker.get_job(late.rid).status.value == "QUEUED"
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = 'other'") == 1

    ask = w.post("/jobs/bulk", {"action": "requeue", "status": "cancelled", "task": "held"})
    assert "Re-queue 5 jobs?" in ask.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', ask.text))
    assert "Re-queued 5 jobs" in w.client.post("/jobs/bulk", data=fields).text
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = 'held' AND origin_rid IS NOT NULL") == 5

    assert w.post("/jobs/bulk", {"action": "cancel", "status": "ended"}).status_code == 400
    assert w.post("/jobs/bulk", {"action": "requeue", "status": "queued"}).status_code == 400
    nothing = w.post("/jobs/bulk", {"action": "cancel", "status": "running", "task": "held"})
    assert "Nothing to do" in nothing.text


def test_csrf_guards_every_post(worker, web):
    w = web()
    job = worker.add_job("held")
    token = w.csrf()
    assert w.client.post(f"/jobs/{job.rid}/cancel", data={}).status_code == 403
    assert w.client.post(f"/jobs/{job.rid}/cancel", data={"csrf": "forged"}).status_code == 403
    assert w.client.post(f"/jobs/{job.rid}/cancel", data={"csrf": token},
                         headers={"Origin": "http://evil.example"}).status_code == 403
    stranger = web()  # another browser: its own cookie, so this page's token is not its own
    stranger.csrf()
    assert stranger.client.post(f"/jobs/{job.rid}/cancel", data={"csrf": token}).status_code == 403
    assert worker.get_job(job.rid).status.value == "QUEUED"
    cookie = w.client.cookies.get("queuer_csrf")
    assert cookie and token != cookie  # the field is a MAC of the cookie, not a copy
    fine = w.client.post(f"/jobs/{job.rid}/cancel", data={"csrf": token},
                         headers={"Origin": "http://127.0.0.1"})
    assert fine.status_code == 303 and worker.get_job(job.rid).status.value == "CANCELLED"


def test_token_bearer_login_form_and_loopback_only_without_it(worker, web, db_config):
    from queuer.web.security import TokenError, check_token
    from queuer.web.server import WebServerError, check_bind

    w = web(token=TOKEN, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    html = {"Accept": "text/html"}
    refused = w.get("/", headers=html)
    assert refused.status_code == 401 and 'name="token"' in refused.text  # the login form
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert w.get("/jobs").status_code == 401
    assert w.get("/", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert w.get("/", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert w.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    job = worker.add_job("held")
    # A script with the token needs no CSRF token: no browser sends that header for another site.
    scripted = w.client.post(f"/jobs/{job.rid}/cancel", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scripted.status_code == 303

    login_csrf = w.csrf("/login?next=/jobs%3Fstatus%3Dfailed")
    wrong = w.client.post("/login", data={"csrf": login_csrf, "token": "nope", "next": "/"})
    assert wrong.status_code == 401 and "That is not the token." in wrong.text
    assert w.client.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 403  # no CSRF field
    signed = w.client.post("/login", data={"csrf": login_csrf, "token": TOKEN, "next": "/jobs?status=failed"})
    assert signed.status_code == 303 and signed.headers["location"] == "/jobs?status=failed"
    session = w.client.cookies.get("queuer_session")
    assert session and TOKEN not in session
    page = w.get("/")
    assert page.status_code == 200 and "Sign out" in page.text and TOKEN not in page.text
    offsite = w.client.post("/login", data={"csrf": login_csrf, "token": TOKEN, "next": "//evil.example/x"})
    assert offsite.headers["location"] == "/"

    w.client.cookies.clear()
    w.client.cookies.set("queuer_session", session[:-3] + "abc")  # tampered
    assert w.get("/").status_code == 401
    w.client.cookies.clear()
    again = w.client.post("/login", data={"csrf": w.csrf("/login"), "token": TOKEN, "next": "/"})
    assert again.status_code == 303 and w.get("/").status_code == 200
    signed_out = w.post("/logout")
    assert signed_out.status_code == 303 and 'queuer_session=""' in signed_out.headers["set-cookie"]
    assert w.get("/").status_code == 401

    # Without a token: this machine only, under a loopback name only.
    assert web(_client={"client_host": "203.0.113.7"}).get("/").status_code == 403
    assert web(_client={"host": "rebound.example"}).get("/").status_code == 403
    assert web(_client={"host": "localhost:8080"}).get("/").status_code == 200
    assert web().get("/login").status_code == 303  # nothing to sign in to

    with pytest.raises(TokenError):
        check_token("short")
    with pytest.raises(TokenError):  # a Bearer header could never carry it
        check_token("pässwort-pässwort-pässwort")
    with pytest.raises(WebServerError):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", TOKEN)
    check_bind("::1", None)


def test_read_only_shows_no_action_and_refuses_every_post(worker, web, db_config):
    running = worker.add_job("wait_for_cancel")
    ended = worker.add_job("double", 2)
    worker.wait_for_job_finished(ended.rid, 10)
    wait_until(lambda: worker.get_job(running.rid).status.value == "RUNNING", message="the job to start")
    w = web(read_only=True)
    pages = [w.get(url).text for url in ("/", "/jobs", "/jobs?status=ended", f"/jobs/{running.rid}",
                                          f"/jobs/{ended.rid}", "/schedules")]
    for text in pages:
        assert "read-only" in text
        assert 'method="post"' not in text, text  # no action forms at all
    for url, data in ((f"/jobs/{running.rid}/cancel", {}), (f"/jobs/{ended.rid}/requeue", {}),
                      (f"/workers/{worker.worker.rid}/stop", {}),
                      ("/schedules/action", {"name": "every-night", "action": "pause"}),
                      ("/jobs/bulk", {"action": "cancel", "status": "active", "confirm": "yes"})):
        response = w.post(url, data)
        assert response.status_code == 403 and "--read-only" in response.text, url
    assert worker.get_job(running.rid).status.value == "RUNNING"
    assert worker.get_worker(worker.worker.rid).status.value == "RUNNING"
    assert [s.paused for s in worker.get_schedules()] == [False]
    worker.cancel_job(running.rid)


def test_encrypted_payloads_stay_encrypted_unless_asked(db_config, web_q, make_queuer):
    from queuer import new_queuer_with_db
    from queuer.payload.encryption import generate_key
    from queuer.web.settings import WebSettings

    key = generate_key()
    make_queuer()  # installs the schema
    producer = new_queuer_with_db("secret-producer", 1, key, db_config, register=False)
    try:
        job = producer.add_job("sign_contract", "ACME-4711", amount="1,000,000")
    finally:
        producer.stop()
    page = f"/jobs/{job.rid}"
    without_key = Web(web_q(), WebSettings()).get(page).text
    assert "encrypted" in without_key and "ACME-4711" not in without_key and key not in without_key
    with_key = Web(web_q(key), WebSettings()).get(page).text
    assert "encrypted" in with_key and "ACME-4711" not in with_key and key not in with_key
    shown = Web(web_q(key), WebSettings(show_encrypted=True)).get(page).text
    assert "ACME-4711" in shown and "1,000,000" in shown and "decrypted with this server" in shown
    assert key not in shown
    wrong = Web(web_q(generate_key()), WebSettings(show_encrypted=True)).get(page).text
    assert "ACME-4711" not in wrong and "a key this server does not hold" in wrong


def test_keyset_pages_cover_everything_once_in_order(worker, web, db_config):
    # 130 archived jobs, 40 of them ending at the very same instant: the id breaks the tie.
    sql(db_config, """
        INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at)
        SELECT g, gen_random_uuid(), 'bulk', CASE WHEN g % 10 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END,
               now() - interval '2 hours', now() - interval '2 hours',
               CASE WHEN g <= 40 THEN timestamptz '2024-05-01 12:00:00+00'
                    ELSE timestamptz '2024-05-01 12:00:00+00' + make_interval(secs => g) END
        FROM generate_series(1, 130) AS g
    """)
    for n in range(30):
        worker.add_job("held", n)
    w = web(page_size=25)

    def walk(url: str) -> list[str]:
        rids: list[str] = []
        while url:
            page = w.get(url)
            assert page.status_code == 200, page.text
            rids += re.findall(r'<a href="/jobs/([0-9a-f-]{36})" title=', page.text)
            found = re.search(r'<a href="(/jobs\?[^"]+)" rel="next">', page.text)
            url = found.group(1).replace("&amp;", "&") if found else ""
        return rids

    ended = walk("/jobs?status=ended&task=bulk")
    expected = [str(r[0]) for r in sql(db_config, "SELECT rid FROM {schema}.job_archive WHERE task_name = 'bulk' "
                                                  "ORDER BY ended_at DESC, id DESC")]
    assert ended == expected and len(set(ended)) == 130
    failed = walk("/jobs?status=failed")
    assert len(failed) == 13
    window = walk("/jobs?status=ended&since=2024-05-01T12:01:00Z&until=2024-05-01T12:02:00")
    assert len(window) == 60  # g = 60 .. 119
    queued = walk("/jobs?status=queued&task=held")
    assert len(queued) == 30 and len(set(queued)) == 30


def test_overview_counts_per_minute_and_queue_depth(worker, web_q, db_config):
    from queuer.web.reads import WebReads

    # Relative to the current minute's start, so that each job falls into a known minute of the chart;
    # not in a minute's last seconds, so that the overview below reads the same minute.
    wait_until(lambda: sql(db_config, "SELECT extract(second FROM now()) < 55")[0][0], timeout=10,
               interval=0.2, message="a minute's first 55 seconds")
    sql(db_config, """
        WITH m AS (SELECT date_trunc('minute', now()) AS now_minute)
        INSERT INTO {schema}.job_archive (id, rid, task_name, status, created_at, scheduled_at, started_at, ended_at)
        SELECT -g, gen_random_uuid(), 'chart', s.status,
               m.now_minute - make_interval(mins => s.due_ago), m.now_minute - make_interval(mins => s.due_ago),
               m.now_minute - make_interval(mins => s.start_ago) + interval '10 seconds',
               m.now_minute - make_interval(mins => s.end_ago) + interval '20 seconds'
        FROM m, (VALUES (1, 'SUCCEEDED', 31, 30, 30), (2, 'SUCCEEDED', 31, 30, 30), (3, 'FAILED', 31, 30, 30),
                        -- waited from 50 minutes ago until 20 minutes ago
                        (4, 'SUCCEEDED', 50, 20, 20),
                        (5, 'CANCELLED', 5, 5, 5),
                        (6, 'SUCCEEDED', 200, 199, 199)) AS s(g, status, due_ago, start_ago, end_ago)
    """)
    for n in range(3):
        worker.add_job("held", n)  # waiting now
    overview = WebReads(web_q().db).overview()
    by_ago = {59 - i: m for i, m in enumerate(overview.minutes)}
    assert len(overview.minutes) == 60
    assert (by_ago[30].succeeded, by_ago[30].failed) == (2, 1)
    assert by_ago[20].succeeded == 1 and by_ago[5].cancelled == 1
    assert sum(m.ended for m in overview.minutes) == 5  # the job of 200 minutes ago is outside the hour
    assert by_ago[45].depth == 1 and by_ago[21].depth == 1 and by_ago[19].depth == 0
    assert by_ago[0].depth == 3  # the three held jobs wait now
    chart = {t.task: t for t in overview.tasks}
    assert chart["chart"].get("SUCCEEDED") == 3 and chart["held"].get("QUEUED") == 3
    assert overview.archive_exact and overview.archive_estimate == 6


def test_the_queuer_web_command(worker, db_config):
    import signal
    import subprocess
    import sys
    import urllib.request

    from click.testing import CliRunner

    from queuer.cli import main
    from queuer.web.server import free_port
    from tests.support import ROOT, db_env, read_lines_until, stop_process

    env = db_env(db_config)
    runner = CliRunner()
    open_host = runner.invoke(main, ["web", "--host", "0.0.0.0"], env={**env, "QUEUER_WEB_TOKEN": ""})
    assert open_host.exit_code == 1 and "without a token" in open_host.output
    weak = runner.invoke(main, ["web"], env={**env, "QUEUER_WEB_TOKEN": "short"})
    assert weak.exit_code == 1 and "at least 16 characters" in weak.output
    no_key = runner.invoke(main, ["web", "--show-encrypted"], env={**env, "QUEUER_ENCRYPTION_KEY": ""})
    assert no_key.exit_code == 1 and "QUEUER_ENCRYPTION_KEY" in no_key.output

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "queuer", "web", "--port", str(port), "--read-only"],
                            env={**env, "QUEUER_WEB_TOKEN": ""}, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        read_lines_until(proc, lambda lines: any("Uvicorn running on" in line for line in lines), timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            body = page.read().decode()
        assert page.status == 200 and "web-worker" in body and "read-only" in body
    finally:
        code = stop_process(proc)
    # Uvicorn shuts down gracefully, then ends by the signal it was sent (as servers conventionally do).
    assert code in (0, -signal.SIGTERM)
    read_lines_until(proc, lambda lines: any("Finished server process" in line for line in lines), timeout=10)
