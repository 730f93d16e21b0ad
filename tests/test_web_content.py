"""What the pages show of stored data they cannot trust: huge error texts (capped, with a marker),
names with spaces at an end (used exactly), arguments and results Python cannot decode ("not
decodable", and the job can still be cancelled or skipped by a bulk re-queue), and no schema name
for strangers."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support import count, sql
from tests.test_web import TOKEN, web, web_q, worker  # noqa: F401 - fixtures

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


def archived(db_config, rid: str, task: str = "stored", status: str = "FAILED", **columns: str) -> None:
    """An archived job row written by SQL, as another producer or a hand edit would leave it."""
    names = ", ".join(columns)
    values = ", ".join(f"%({c})s" for c in columns)
    sql(db_config, f"""
        INSERT INTO {{schema}}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at
                                           {', ' + names if names else ''})
        VALUES ((SELECT coalesce(min(id), 0) - 1 FROM {{schema}}.job_archive), %(rid)s, %(task)s, %(status)s,
                now(), now(), now() {', ' + values if values else ''})
    """, {"rid": rid, "task": task, "status": status, **columns})


def test_a_huge_error_text_is_cut_with_a_visible_marker(worker, web, db_config):
    rid = str(uuid.uuid4())
    head = "Traceback (most recent call last):\n"
    archived(db_config, rid, error=head + "x" * (2_000_000 - len(head)))
    w = web()
    page = w.get(f"/jobs/{rid}")
    assert page.status_code == 200
    assert len(page.text) < 100_000, len(page.text)  # not a 4 MB page
    assert "[truncated: 1,936,000 more characters not shown]" in page.text
    assert "Traceback (most recent call last):" in page.text
    listed = w.get("/jobs?status=failed")
    assert listed.status_code == 200 and len(listed.text) < 50_000 and "Traceback" in listed.text


def test_names_with_spaces_at_an_end_are_used_exactly(worker, web, db_config):
    # Stored by SQL or another producer (queuer's own API refuses such names).
    for task in ("  spaced  ", "  spaced  ", "spaced"):
        sql(db_config, "INSERT INTO {schema}.job (rid, task_name) VALUES (gen_random_uuid(), %(t)s)", {"t": task})
    sql(db_config, """
        INSERT INTO {schema}.schedule (name, cron, task_name, next_run_at)
        VALUES (' nightly ', '0 3 * * *', 'double', now() + interval '1 day'),
               ('nightly', '0 4 * * *', 'double', now() + interval '1 day')
    """)
    w = web()
    spaced = w.get("/jobs?task=%20%20spaced%20%20&status=queued")
    assert spaced.status_code == 200 and spaced.text.count('<td class="name">  spaced  </td>') == 2
    assert '<td class="name">spaced</td>' not in spaced.text
    assert "task &#39;  spaced  &#39;" in spaced.text  # the filter says which name, spaces included
    plain = w.get("/jobs?task=spaced&status=queued")
    assert plain.text.count('<td class="name">spaced</td>') == 1 and "  spaced  </td>" not in plain.text
    overview = w.get("/").text
    assert "task=++spaced++" in overview  # the overview's links keep the spaces

    # A bulk cancel of the spaced name's jobs touches those two only, through its confirmation page.
    ask = w.post("/jobs/bulk", {"action": "cancel", "status": "queued", "task": "  spaced  "})
    assert "Cancel 2 jobs?" in ask.text
    fields = dict(HIDDEN.findall(ask.text))
    assert fields["task"] == "  spaced  "
    assert "Cancelled 2 jobs" in w.client.post("/jobs/bulk", data=fields).text
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = 'spaced'") == 1
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = '  spaced  '") == 0

    # Pause and resume act on the exact schedule.
    schedules = w.get("/schedules").text
    assert '<input type="hidden" name="name" value=" nightly ">' in schedules
    assert w.post("/schedules/action", {"name": " nightly ", "action": "pause"}).status_code == 303
    paused = dict(sql(db_config, "SELECT name, paused FROM {schema}.schedule WHERE name LIKE '%%nightly%%'"))
    assert paused == {" nightly ": True, "nightly": False}
    assert w.post("/schedules/action", {"name": " nightly ", "action": "resume"}).status_code == 303
    assert dict(sql(db_config, "SELECT name, paused FROM {schema}.schedule"))[" nightly "] is False
    assert w.post("/schedules/action", {"name": " nightly", "action": "pause"}).status_code == 404


def test_undecodable_arguments_and_results_show_why_and_the_job_can_still_be_acted_on(worker, web, db_config):
    deep = "[" * 2000 + "]" * 2000
    queued = worker.add_job("held", 1)
    sql(db_config, f"UPDATE {{schema}}.job SET parameters = '{deep}'::jsonb WHERE rid = %(rid)s", {"rid": queued.rid})
    fine = worker.add_job("held", 2)
    # Nested deep, but still readable: shown, up to the page's cap.
    readable = worker.add_job("held", 3)
    sql(db_config, "UPDATE {schema}.job SET parameters = %(p)s::json WHERE rid = %(rid)s",
        {"p": "[" * 900 + "]" * 900, "rid": readable.rid})
    ended_deep, ended_big, ended_fine = (str(uuid.uuid4()) for _ in range(3))
    archived(db_config, ended_deep, task="held", status="CANCELLED", parameters=deep)
    archived(db_config, ended_big, task="held", status="SUCCEEDED", results="9" * 5000)
    archived(db_config, ended_fine, task="held", status="CANCELLED", parameters="[7]")
    w = web()

    page = w.get(f"/jobs/{queued.rid}")
    assert page.status_code == 200 and "Cancel job" in page.text
    assert re.search(r'id="job-parameters">not decodable: RecursionError', page.text)
    assert "Stored arguments or result not decodable: RecursionError" in page.text
    listed = w.get("/jobs?status=queued&task=held")
    assert listed.status_code == 200 and listed.text.count("not decodable: RecursionError") == 1
    shown = w.get(f"/jobs/{readable.rid}")
    assert shown.status_code == 200 and "not decodable" not in shown.text
    assert re.search(r'id="job-parameters">\[\n  \[\n    \[', shown.text) and "more characters not shown]" in shown.text
    big = w.get(f"/jobs/{ended_big}")
    assert big.status_code == 200 and re.search(r'id="job-result">not decodable: ValueError', big.text)
    ended_list = w.get("/jobs?status=ended&task=held")
    assert ended_list.status_code == 200 and ended_list.text.count("not decodable:") == 2
    assert w.get(f"/jobs?rid={str(queued.rid)[:8]}").text.count("not decodable:") == 1
    assert w.get("/jobs?status=queued&task=held").text.count("not decodable:") == 1  # remembered, still right

    cancelled = w.post(f"/jobs/{queued.rid}/cancel")
    assert cancelled.status_code == 303
    assert sql(db_config, "SELECT status FROM {schema}.job_archive WHERE rid = %(r)s", {"r": queued.rid}) == [("CANCELLED",)]
    after = w.get(cancelled.headers["location"])
    assert after.status_code == 200 and "The job was cancelled." in after.text and "not decodable" in after.text

    # A bulk re-queue that includes it re-queues the others and says why it skipped it.
    ask = w.post("/jobs/bulk", {"action": "requeue", "status": "cancelled", "task": "held"})
    assert ask.status_code == 200 and "Re-queue 3 jobs?" in ask.text
    done = w.client.post("/jobs/bulk", data=dict(HIDDEN.findall(ask.text)))
    assert done.status_code == 200 and "Re-queued 1 job" in done.text and "2 skipped" in done.text
    assert done.text.count("cannot be decoded") == 2
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE origin_rid = %(r)s", {"r": ended_fine}) == 1
    single = w.post(f"/jobs/{ended_deep}/requeue")
    assert single.status_code == 409 and "cannot be decoded" in single.text
    worker.cancel_job(fine.rid)
    worker.cancel_job(readable.rid)


def test_strangers_do_not_see_the_schema_name(worker, web, db_config):
    schema = db_config.schema
    guarded = web(token=TOKEN, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    login = guarded.get("/login")
    assert login.status_code == 200 and schema not in login.text
    for answer in (guarded.get("/", headers={"Accept": "text/html"}), guarded.get("/jobs"),
                   guarded.client.post("/login", data={"token": TOKEN}),
                   web(_client={"client_host": "203.0.113.7"}).get("/"),
                   web(_client={"host": "rebound.example"}).get("/")):
        assert answer.status_code in (401, 403), answer.status_code
        assert schema not in answer.text
    signed = guarded.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert f"schema {schema}" in signed.text
    assert f"schema {schema}" in web().get("/").text  # this machine, without a token


def test_printing_is_capped_and_survives_any_depth():
    from queuer.payload.serialization import Undecodable
    from queuer.web.render import MAX_SHOWN, _capped, _pretty

    nested: list = []
    for _ in range(5000):  # deeper than any JSON printer goes
        nested = [nested]
    assert _pretty(nested) == "not shown: nested too deeply to print"
    assert _pretty(Undecodable("RecursionError: too deep")) == "not decodable: RecursionError: too deep"
    assert _pretty({"a": [1, "é"]}) == '{\n  "a": [\n    1,\n    "é"\n  ]\n}'
    long = _pretty(["x" * (2 * MAX_SHOWN)])
    assert len(long) < MAX_SHOWN + 100 and long.endswith(f"[truncated: {MAX_SHOWN + 8:,} more characters not shown]")
    assert _capped("short") == "short" and _capped(None) == ""
