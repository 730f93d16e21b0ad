"""Steering tasks from the web UI: Pause and Resume on the overview and on a task's list of jobs (CSRF,
read-only, readers and the audit log like every action), and what the job pages say of snoozes and group
keys."""

from __future__ import annotations

import re
import time

import pytest

import queuer
from queuer import JobStatus, Options, Snooze
from tests.support import count, sql
from tests.test_web import TOKEN, web, web_q, worker  # noqa: F401 - fixtures

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

READ_TOKEN = "read-only-token-for-the-web-tests"


def task_row(html: str, task: str) -> str:
    """The overview's row of one task (its name as the page escapes it)."""
    start = html.index(f'<tr data-task="{task}">')
    return html[start:html.index("</tr>", start)]


def paused_names(q) -> list[str]:
    return [c.task_name for c in q.task_controls() if c.paused]


def test_pause_and_resume_a_task_from_the_overview(worker, web, db_config):
    w = web()
    first = worker.wait_for_job_finished(worker.add_job("double", 1).rid, 10)
    assert first.result == 2
    row = task_row(w.get("/").text, "double")
    assert 'class="badge paused"' not in row
    assert '<input type="hidden" name="action" value="pause">' in row and ">Pause</button>" in row
    assert 'data-confirm="Pause task double on every worker?' in row  # the page asks first

    paused = w.post("/tasks/action", {"name": "double", "action": "pause"})
    assert paused.status_code == 303 and paused.headers["location"] == "/?notice=task-paused"
    assert paused_names(worker) == ["double"]
    # The worker starts no job of it (it reads the controls again at once, and every second anyway).
    held = worker.add_job("double", 2)
    time.sleep(1.5)
    assert worker.get_job(held.rid).status is JobStatus.QUEUED
    page = w.get(paused.headers["location"]).text
    assert "The task is paused on every worker" in page
    row = task_row(page, "double")
    assert '<span class="badge paused"' in row and ">paused</span>" in row
    assert '<input type="hidden" name="action" value="resume">' in row and ">Resume</button>" in row
    assert "data-confirm" not in row  # resuming asks nothing
    assert page.count('class="badge paused"') == 1  # that task only
    # Pausing it again changes nothing and is no error (two operators may press at once).
    assert w.post("/tasks/action", {"name": "double", "action": "pause"}).status_code == 303

    resumed = w.post("/tasks/action", {"name": "double", "action": "resume"})
    assert resumed.status_code == 303 and resumed.headers["location"] == "/?notice=task-resumed"
    assert paused_names(worker) == []
    assert worker.wait_for_job_finished(held.rid, 10).result == 4
    page = w.get(resumed.headers["location"]).text
    assert "The task is resumed" in page and 'class="badge paused"' not in task_row(page, "double")

    # Recorded in the audit log, by task, and found by its filter.
    rows = sql(db_config, "SELECT credential, action, target, rids, outcome FROM {schema}.web_audit ORDER BY id")
    assert rows == [("loopback (no token)", "pause-task", "task double", [], "done"),
                    ("loopback (no token)", "pause-task", "task double", [], "done"),
                    ("loopback (no token)", "resume-task", "task double", [], "done")]
    audit = w.get("/audit?action=resume-task")
    assert audit.status_code == 200 and "task double" in audit.text
    assert '<option value="pause-task"' in w.get("/audit").text


def test_a_paused_task_without_jobs_stays_listed_and_odd_names_are_escaped_or_refused(worker, web, db_config):
    w = web()
    evil = "<script>alert(1)</script>\"'"
    worker.pause_task(evil)  # a valid name: printable, no space at an end
    worker.pause_task("nightly_export")  # no job at all: still listed, so that it can be resumed
    worker.set_task_limits("throttled", concurrency_limit=3, requests_per_second=2.5)
    page = w.get("/").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;" in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;"
    assert '<span class="badge paused"' in task_row(page, escaped)
    assert f'<input type="hidden" name="name" value="{escaped}">' in task_row(page, escaped)
    ghost = task_row(page, "nightly_export")
    assert '<span class="badge paused"' in ghost and ">Resume</button>" in ghost
    limited = task_row(page, "throttled")
    assert "limits: 3 at once, 2.5/s" in limited and 'class="badge paused"' not in limited
    assert w.post("/tasks/action", {"name": evil, "action": "resume"}).status_code == 303
    assert paused_names(worker) == ["nightly_export"]

    # A name stored by another producer with spaces at an end is listed, without a button: the
    # Queuer cannot pause it. Its POST, and every other name the Queuer refuses, is a 400.
    sql(db_config, "INSERT INTO {schema}.job (rid, task_name) VALUES (gen_random_uuid(), '  spaced  ')")
    spaced = task_row(w.get("/").text, "  spaced  ")
    assert "<form" not in spaced
    spaced_list = w.get("/jobs?status=queued&task=%20%20spaced%20%20").text
    assert 'id="pause-task"' not in spaced_list and 'id="task-control"' not in spaced_list
    for form in ({"name": "  spaced  ", "action": "pause"}, {"name": "", "action": "pause"},
                 {"name": "x" * 201, "action": "pause"}, {"action": "pause"}, {"name": "double"},
                 {"name": "double", "action": "stop"}, {"name": "double", "action": "pause", "status": "bogus"},
                 {"name": "double", "action": "pause", "extra": "1"}):
        answer = w.post("/tasks/action", form)
        assert answer.status_code == 400, (form, answer.status_code)
        assert "<script>alert" not in answer.text
    assert paused_names(worker) == ["nightly_export"]
    assert count(db_config, "SELECT count(*) FROM {schema}.web_audit WHERE action = 'pause-task'") == 0


def test_pause_and_resume_from_a_task_s_list_of_jobs(worker, web):
    w = web()
    page = w.get("/jobs?status=queued&task=held")  # no worker runs "held"
    assert page.status_code == 200
    assert 'id="pause-task"' in page.text and 'id="resume-task"' not in page.text
    assert '<input type="hidden" name="status" value="queued">' in page.text
    assert 'id="task-control"' not in w.get("/jobs?status=queued").text  # a list of every task: no button

    paused = w.post("/tasks/action", {"name": "held", "action": "pause", "status": "queued"})
    assert paused.status_code == 303
    assert paused.headers["location"] == "/jobs?status=queued&task=held&notice=task-paused"
    assert paused_names(worker) == ["held"]
    page = w.get(paused.headers["location"]).text
    control = page[page.index('id="task-control"'):page.index("</div>", page.index('id="task-control"'))]
    assert ">task paused</span>" in control and 'id="resume-task"' in control and 'id="pause-task"' not in control
    assert "The task is paused on every worker" in page

    resumed = w.post("/tasks/action", {"name": "held", "action": "resume", "status": "queued"})
    assert resumed.headers["location"] == "/jobs?status=queued&task=held&notice=task-resumed"
    assert paused_names(worker) == []
    assert ">task paused</span>" not in w.get(resumed.headers["location"]).text


def test_pause_and_resume_are_refused_to_readers_read_only_servers_and_forged_forms(worker, web, db_config):
    worker.add_job("held")
    worker.pause_task("paused_already")

    # A reader sees the badge and no button; its POST is refused.
    reader = web(token=TOKEN, read_token=READ_TOKEN)
    as_reader = {"Authorization": f"Bearer {READ_TOKEN}"}
    for url in ("/", "/jobs?status=queued&task=held", "/jobs?task=paused_already"):
        shown = reader.get(url, headers=as_reader)
        assert shown.status_code == 200 and 'method="post"' not in shown.text, url
    assert '<span class="badge paused"' in task_row(reader.get("/", headers=as_reader).text, "paused_already")
    for form in ({"name": "held", "action": "pause"}, {"name": "paused_already", "action": "resume"}):
        refused = reader.client.post("/tasks/action", data=form, headers=as_reader)
        assert refused.status_code == 403 and "QUEUER_WEB_READ_TOKEN" in refused.text
    # A read-only server too, even for its operator.
    read_only = web(read_only=True)
    assert 'method="post"' not in read_only.get("/").text
    assert 'method="post"' not in read_only.get("/jobs?task=paused_already").text
    refused = read_only.post("/tasks/action", {"name": "held", "action": "pause"})
    assert refused.status_code == 403 and "--read-only" in refused.text
    # Without the CSRF field, with a forged one, or from another site: nothing happens.
    w = web()
    csrf = w.csrf("/")
    for data, headers in (({}, {}), ({"csrf": "forged"}, {}), ({"csrf": csrf}, {"Origin": "http://evil.example"})):
        forged = w.client.post("/tasks/action", data={**data, "name": "held", "action": "pause"}, headers=headers)
        assert forged.status_code == 403, (data, headers)
    assert paused_names(worker) == ["paused_already"]
    # Refused before the action: logged, not in the audit log (as for every action).
    assert count(db_config, "SELECT count(*) FROM {schema}.web_audit") == 0

    # The operator's token as a Bearer header needs no CSRF field (a script), and is recorded as such.
    operator = web(token=TOKEN, read_token=READ_TOKEN)
    done = operator.client.post("/tasks/action", data={"name": "held", "action": "pause"},
                                headers={"Authorization": f"Bearer {TOKEN}"})
    assert done.status_code == 303 and sorted(paused_names(worker)) == ["held", "paused_already"]
    assert sql(db_config, "SELECT credential, action, target FROM {schema}.web_audit") == [
        ("operator token (Bearer)", "pause-task", "task held")]


def test_the_job_pages_show_snoozes_and_the_group_key(worker, web, make_queuer):
    snoozer = make_queuer(name="snoozer")

    @snoozer.task(name="patient")
    def patient() -> str:
        if queuer.current_job().attempt <= 2:
            raise Snooze(0)
        return "done"

    snoozer.start()
    tenant = "tenant <acme> & co"
    job = snoozer.add_job_with_options(Options(group_key=tenant, unique_key="report-7"), patient)
    done = snoozer.wait_for_job_finished(job.rid, 20)
    assert (done.status, done.snoozes, done.attempts) == (JobStatus.SUCCEEDED, 2, 3)
    plain = worker.wait_for_job_finished(worker.add_job("double", 4).rid, 10)

    w = web()
    page = w.get(f"/jobs/{job.rid}").text
    attempts = page[page.index("<dt>attempts</dt>"):].split("</dd>")[0]
    assert "3 of at most" in attempts and '<span id="job-snoozes">snoozed 2 times</span> (no retry spent)' in attempts
    assert '<dt>group key</dt><dd><code id="job-group-key">tenant &lt;acme&gt; &amp; co</code></dd>' in page
    assert "<dt>unique key</dt><dd><code>report-7</code></dd>" in page and "<acme>" not in page
    other = w.get(f"/jobs/{plain.rid}").text
    assert "job-snoozes" not in other and "job-group-key" not in other  # only when there is one

    listed = w.get("/jobs?status=succeeded").text
    row = listed[listed.index(f'<a href="/jobs/{job.rid}"'):].split("</tr>")[0]
    assert re.search(r'<td class="num">3/\d+ <span class="hint snoozes" title="snoozed 2 times[^"]*">\+2 snoozed</span>',
                     row)
    assert "snoozed" not in listed[listed.index(f'<a href="/jobs/{plain.rid}"'):].split("</tr>")[0]
