"""Web sessions and tokens: sign-out revokes, the epoch ends every session, sessions are bound to the
server's mode and the token's kind, the read-only token, and the audit log of every UI action."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support import sql, wait_until
from tests.test_web import TOKEN, Web, web, web_q, worker  # noqa: F401 - fixtures

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

READ_TOKEN = "read-only-token-for-the-web-tests"
HTML = {"Accept": "text/html"}


def sign_in(w: Web, token: str = TOKEN) -> str:
    """Sign a client in through the form; the session cookie's value."""
    answer = w.client.post("/login", data={"csrf": w.csrf("/login"), "token": token, "next": "/"})
    assert answer.status_code == 303, answer.text
    cookie = w.client.cookies.get("queuer_session")
    assert cookie
    return cookie


def with_cookie(w: Web, cookie: str) -> Web:
    """The same client with only this session cookie, as a replay from another machine would carry it."""
    w.client.cookies.clear()
    w.client.cookies.set("queuer_session", cookie)
    return w


def replay_post(w: Web, url: str):
    """A form POST with a valid CSRF pair (the login page hands one to anyone) and whatever cookie the client has."""
    return w.client.post(url, data={"csrf": w.csrf("/login")})


def audit_rows(db_config) -> list[tuple]:
    return sql(db_config, "SELECT action, client, credential, target, rids, outcome FROM {schema}.web_audit ORDER BY id")


def test_sign_out_revokes_the_cookie_everywhere_and_the_epoch_ends_every_session(worker, web, web_q, db_config):
    from click.testing import CliRunner

    from queuer.cli import main
    from queuer.web.settings import WebSettings
    from tests.support import db_env

    a, b = web(token=TOKEN), web(token=TOKEN)
    cookie_a, cookie_b = sign_in(a), sign_in(b)
    assert cookie_a != cookie_b
    assert a.get("/").status_code == 200 and b.get("/").status_code == 200
    # Another server on the schema (or this one after a restart) with the same token and mode honours it.
    other = Web(web_q(), WebSettings(token=TOKEN))
    assert with_cookie(other, cookie_a).get("/").status_code == 200

    signed_out = a.post("/logout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login?notice=signed-out"
    # The cookie it ended is refused wherever it is replayed: here, and on the other server.
    replayed = with_cookie(a, cookie_a).get("/", headers=HTML)
    assert replayed.status_code == 401 and 'name="token"' in replayed.text
    assert with_cookie(other, cookie_a).get("/jobs").status_code == 401
    assert replay_post(with_cookie(other, cookie_a), f"/jobs/{uuid.uuid4()}/cancel").status_code == 401
    assert b.get("/").status_code == 200  # another browser's session goes on

    # The operator bumps the epoch: every session ends, on every server, without a restart.
    env = db_env(db_config)
    revoked = CliRunner().invoke(main, ["web", "--revoke-sessions"], env=env)
    assert revoked.exit_code == 0 and "sessions epoch 2" in revoked.output, revoked.output
    assert b.get("/").status_code == 401
    assert with_cookie(other, cookie_b).get("/").status_code == 401
    assert sql(db_config, "SELECT session_epoch FROM {schema}.web_state") == [(2,)]
    # Signing in again works, in the new epoch.
    c = web(token=TOKEN)
    cookie_c = sign_in(c)
    assert cookie_c.split(".")[2] == "2" and c.get("/").status_code == 200  # kind.mode.epoch.issued.id.mac
    assert CliRunner().invoke(main, ["web", "--revoke-sessions"], env=env).exit_code == 0
    assert c.get("/").status_code == 401

    actions = [row[0] for row in audit_rows(db_config)]
    assert actions == ["sign-in", "sign-in", "sign-out", "revoke-sessions", "sign-in", "revoke-sessions"]
    revoke = audit_rows(db_config)[3]
    assert revoke[1].startswith("queuer web --revoke-sessions on ") and "database role" in revoke[2]
    assert revoke[5] == "done: sessions epoch is now 2"


def test_sessions_are_bound_to_the_servers_mode_and_to_their_token(worker, web):
    read_write, read_only = web(token=TOKEN), web(token=TOKEN, read_only=True)
    from_rw, from_ro = sign_in(read_write), sign_in(read_only)
    assert with_cookie(read_write, from_rw).get("/").status_code == 200
    assert with_cookie(read_only, from_ro).get("/").status_code == 200
    # Same token, same database: a read-only server's cookie does not act on a read-write one.
    assert with_cookie(read_write, from_ro).get("/").status_code == 401
    job = worker.add_job("held")
    refused = replay_post(with_cookie(read_write, from_ro), f"/jobs/{job.rid}/cancel")
    assert refused.status_code == 401 and worker.get_job(job.rid).status.value == "QUEUED"
    assert with_cookie(read_only, from_rw).get("/").status_code == 401
    # The mode written in the cookie cannot be edited: the MAC covers it.
    assert with_cookie(read_write, from_ro.replace(".ro.", ".rw.", 1)).get("/").status_code == 401
    # A new token ends the sessions of the old one.
    assert with_cookie(web(token="a-new-token-after-rotation"), from_rw).get("/").status_code == 401


def test_the_read_only_token_sees_everything_and_changes_nothing(worker, web, db_config):
    from queuer.web.security import TokenError, check_tokens

    running = worker.add_job("wait_for_cancel")
    ended = worker.add_job("double", 4)
    worker.wait_for_job_finished(ended.rid, 10)
    wait_until(lambda: worker.get_job(running.rid).status.value == "RUNNING", message="the job to start")
    reader = web(token=TOKEN, read_token=READ_TOKEN)
    cookie = sign_in(reader, READ_TOKEN)
    assert cookie.startswith("reader.rw.")
    for url in ("/", "/fragments/overview", "/jobs", "/jobs?status=ended", f"/jobs/{running.rid}",
                f"/jobs/{ended.rid}", "/schedules", "/audit"):
        page = reader.get(url)
        assert page.status_code == 200, url
        # The only form is the sign-out; no action button is shown.
        assert page.text.count('method="post"') == (0 if url == "/fragments/overview" else 1), url
        assert "Cancel job" not in page.text and "Re-queue" not in page.text and ">Stop<" not in page.text
    assert "read-only" in reader.get("/").text and "8" in reader.get(f"/jobs/{ended.rid}").text
    posts = ((f"/jobs/{running.rid}/cancel", {}), (f"/jobs/{ended.rid}/requeue", {}),
             (f"/workers/{worker.worker.rid}/stop", {}),
             ("/schedules/action", {"name": "every-night", "action": "pause"}),
             ("/jobs/bulk", {"action": "cancel", "status": "active", "confirm": "yes"}))
    for url, data in posts:
        answer = reader.post(url, data)
        assert answer.status_code == 403 and "QUEUER_WEB_READ_TOKEN" in answer.text, url
    # The same with the token as a Bearer header.
    bearer = web(token=TOKEN, read_token=READ_TOKEN)
    read_header = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert bearer.get("/jobs", headers=read_header).status_code == 200
    assert bearer.client.post(f"/jobs/{running.rid}/cancel", headers=read_header).status_code == 403
    assert worker.get_job(running.rid).status.value == "RUNNING"
    assert [s.paused for s in worker.get_schedules()] == [False]
    # Signing out works for a reader, and the operator's token still acts.
    assert reader.post("/logout").status_code == 303 and with_cookie(reader, cookie).get("/").status_code == 401
    operator = bearer.client.post(f"/jobs/{running.rid}/cancel", headers={"Authorization": f"Bearer {TOKEN}"})
    assert operator.status_code == 303 and worker.get_job(running.rid).status.value == "CANCELLED"
    assert [row[2] for row in audit_rows(db_config)] == ["reader session", "reader session", "operator token (Bearer)"]

    # A read token alone guards the server too: it shows, and nobody acts.
    alone = web(read_token=READ_TOKEN, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    assert alone.get("/").status_code == 401
    assert alone.get("/", headers=read_header).status_code == 200
    with pytest.raises(TokenError):
        check_tokens(TOKEN, TOKEN)
    with pytest.raises(TokenError):
        check_tokens(TOKEN, "short")


def test_every_action_is_in_the_audit_log_which_pages_by_keyset(worker, web, db_config):
    w = web(token=TOKEN, page_size=4, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    sign_in(w)
    running = worker.add_job("wait_for_cancel")
    wait_until(lambda: worker.get_job(running.rid).status.value == "RUNNING", message="the job to start")
    held = [worker.add_job("held", n) for n in range(3)]

    assert w.post(f"/jobs/{running.rid}/cancel").status_code == 303
    assert w.post(f"/jobs/{running.rid}/cancel").status_code == 409  # refused actions are recorded too
    requeued = w.post(f"/jobs/{running.rid}/requeue")
    new_rid = uuid.UUID(requeued.headers["location"].split("/")[2].split("?")[0])
    worker.cancel_job(new_rid)
    for action in ("pause", "resume", "trigger"):
        assert w.post("/schedules/action", {"name": "every-night", "action": action}).status_code == 303
    ask = w.post("/jobs/bulk", {"action": "cancel", "status": "queued", "task": "held"})
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', ask.text))
    assert "Cancelled 3 jobs" in w.client.post("/jobs/bulk", data=fields).text
    ask = w.post("/jobs/bulk", {"action": "requeue", "status": "cancelled", "task": "held"})
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', ask.text))
    assert "Re-queued 3 jobs" in w.client.post("/jobs/bulk", data=fields).text
    assert w.post(f"/workers/{worker.worker.rid}/stop").status_code == 303
    assert worker.wait_until_stopped(15)
    assert w.post("/logout").status_code == 303

    rows = audit_rows(db_config)
    assert [r[0] for r in rows] == ["sign-in", "cancel", "cancel", "requeue", "schedule-pause", "schedule-resume",
                                    "schedule-trigger", "bulk-cancel", "bulk-requeue", "stop-worker", "sign-out"]
    assert {r[1] for r in rows} == {"203.0.113.7"} and {r[2] for r in rows} == {"operator session"}
    by_action = {r[0]: r for r in rows}
    assert rows[1][4] == [running.rid] and rows[1][5] == "done"
    assert rows[2][5].startswith("refused (409)") and "already ended" in rows[2][5]
    assert by_action["requeue"][4] == [running.rid, new_rid]
    assert by_action["schedule-pause"][3] == "every-night"
    assert len(by_action["schedule-trigger"][4]) == 1
    assert set(by_action["bulk-cancel"][4]) == {j.rid for j in held} and by_action["bulk-cancel"][5] == "3 done, 0 skipped"
    assert "task held" in by_action["bulk-cancel"][3] and len(by_action["bulk-requeue"][4]) == 3
    assert by_action["stop-worker"][3].startswith(f"worker {worker.worker.rid}")

    # The page (for a new session: the last one signed out), newest first, a page at a time.
    sign_in(w)
    seen: list[str] = []
    url = "/audit"
    pages = 0
    while url:
        page = w.get(url)
        assert page.status_code == 200, page.text
        body = page.text.split('id="audit-list"', 1)[1] if 'id="audit-list"' in page.text else ""
        seen += re.findall(r'<span class="badge">([a-z-]+)</span>', body)
        found = re.search(r'<a href="(/audit\?[^"]+)" rel="next">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert pages == 3 and seen == ["sign-in", *reversed([r[0] for r in rows])]
    first = w.get("/audit").text
    assert 'href="/audit"' in first and "203.0.113.7" in first and "operator session" in first
    assert "every-night" in first or "every-night" in w.get("/audit?action=schedule-pause").text
    only = w.get("/audit?action=bulk-cancel").text
    assert only.count('<span class="badge">bulk-cancel</span>') == 1 and "task held" in only
    for_job = w.get(f"/audit?rid={running.rid}").text
    assert for_job.count('<span class="badge">') == 3  # two cancels and the re-queue
    assert f'href="/audit?rid={running.rid}"' in w.get(f"/jobs/{running.rid}").text
    for bad in ("/audit?action=drop", "/audit?rid=nope", "/audit?cursor=x", "/audit?cursor=99999999999999999999",
                "/audit?other=1"):
        assert w.get(bad).status_code == 400, bad


def test_the_audit_page_needs_a_sign_in_and_the_nav_links_it(worker, web):
    w = web(token=TOKEN, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    assert w.get("/audit").status_code == 401
    sign_in(w)
    assert 'href="/audit"' in w.get("/").text
    audit = w.get("/audit").text
    assert '<span class="badge">sign-in</span>' in audit and "203.0.113.7" in audit


def test_the_web_tables_come_with_an_upgrade_and_go_with_an_uninstall(db_config):
    from queuer.database.admin import grant_statements, verify
    from queuer.database.connection import connect
    from queuer.database.migrations import latest_version, migrate, uninstall

    tables = ("web_state", "web_session_revoked", "web_audit")
    present = "SELECT count(*) FROM unnest(%(t)s::text[]) AS t WHERE to_regclass(%(s)s || '.' || t) IS NOT NULL"
    with connect(db_config) as conn:
        assert migrate(conn, db_config.schema, target=6) == list(range(1, 7))
        assert sql(db_config, present, {"t": list(tables), "s": db_config.schema}) == [(0,)]
        assert migrate(conn, db_config.schema, target=7) == [7]  # an upgrade adds them
        assert migrate(conn, db_config.schema)[-1] == latest_version()
        assert sql(db_config, present, {"t": list(tables), "s": db_config.schema}) == [(3,)]
        assert sql(db_config, "SELECT session_epoch FROM {schema}.web_state") == [(1,)]
        assert verify(conn, db_config.schema, True) == []
        assert any("web_audit" in statement for statement in grant_statements(db_config.schema, "app_web"))
        uninstall(conn, db_config.schema)
        assert sql(db_config, present, {"t": list(tables), "s": db_config.schema}) == [(0,)]
        assert verify(conn, db_config.schema, False) == []
