"""A workflow's page: its graph as inline SVG (nodes and arrows, or layer boxes for a large one), its jobs,
the cancel button (CSRF, read-only and audit like every action), the job page's links to its workflow and
its parents, and the WAITING status in the lists and the overview."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import pytest

from queuer import BatchJob, JobStatus
from tests.support import sql
from tests.test_web import TOKEN, WEIRD, _encode, web, web_q, worker  # noqa: F401 - fixtures

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

READ_TOKEN = "read-only-token-for-the-web-tests"
NODE = re.compile(r'<a class="node (\w+)" href="/jobs/([0-9a-f-]{36})" data-rid="[0-9a-f-]{36}">\s*<title>[^<]*</title>'
                  r'\s*<rect x="([\d.]+)" y="([\d.]+)"')
EDGE = re.compile(r'<path class="edge" d="([^"]+)"')


def step(n: str) -> str:
    return n


def path(workflow_id: str) -> str:
    return "/workflows/" + quote(workflow_id, safe="")


@pytest.fixture
def producer(make_queuer, worker):
    """A Queuer that adds workflows and runs nothing: their jobs stay QUEUED and WAITING (the started
    worker of the web fixture has no task "step")."""
    q = make_queuer(name="producer")
    q.add_task(step)
    return q


def diamond(q, workflow_id: str = "w1"):
    wf = q.workflow(workflow_id)
    a = wf.add_job(step, "a")
    b = wf.add_job(step, "b", depends_on=[a])
    c = wf.add_job(step, "c", depends_on=[a])
    d = wf.add_job(step, "d", depends_on=[b, c])
    wf.commit()
    return a, b, c, d


def test_a_diamond_is_drawn_node_by_node_with_its_arrows_statuses_and_table(producer, web):
    a, b, c, d = diamond(producer)
    page = web().get("/workflows/w1")
    assert page.status_code == 200, page.text
    html = page.text
    svg = html[html.index('<svg class="workflow-graph'):html.index("</svg>", html.index('<svg class="workflow-graph'))]
    nodes = {uuid.UUID(rid): (status, float(x), float(y)) for status, rid, x, y in NODE.findall(svg)}
    assert set(nodes) == {a.rid, b.rid, c.rid, d.rid}
    assert svg.count('<a class="node ') == 4 and len(EDGE.findall(svg)) == 4
    assert nodes[a.rid][0] == "queued" and {nodes[r][0] for r in (b.rid, c.rid, d.rid)} == {"waiting"}
    # Layered left to right by the longest path from the root; B before C (the order added).
    assert nodes[a.rid][1] < nodes[b.rid][1] == nodes[c.rid][1] < nodes[d.rid][1]
    assert nodes[b.rid][2] < nodes[c.rid][2]
    assert nodes[a.rid][2] == nodes[d.rid][2]  # both centred beside the taller middle layer
    for rid in (a.rid, b.rid, c.rid, d.rid):
        assert f"…{str(rid)[-8:]} · " in svg  # each node names its job, by the random end of its rid
    # Every arrow runs from a parent's right side to a child's left side, neighbouring layers only.
    ends = {(round(float(m[0]), 1), round(float(m[1]), 1), round(float(m[2]), 1), round(float(m[3]), 1))
            for m in (re.match(r"M([\d.]+),([\d.]+) C.* ([\d.]+),([\d.]+)$", e).groups() for e in EDGE.findall(svg))}
    from queuer.web.graph import NODE_HEIGHT, NODE_WIDTH

    def edge(p, ch):
        return tuple(round(v, 1) for v in (nodes[p][1] + NODE_WIDTH, nodes[p][2] + NODE_HEIGHT / 2,
                                           nodes[ch][1], nodes[ch][2] + NODE_HEIGHT / 2))

    assert ends == {edge(a.rid, b.rid), edge(a.rid, c.rid), edge(b.rid, d.rid), edge(c.rid, d.rid)}
    assert 'marker-end="url(#arrow)"' in svg
    # The status of the whole and its counts, the table with each job's parents, nothing the CSP would block.
    assert re.search(r'id="workflow-status"><span class="badge running">RUNNING', html)
    assert "1 queued</span>" in html and "3 waiting</span>" in html and "4 jobs:" in html
    table = html[html.index('id="workflow-jobs"'):]
    assert table.count('<td class="rid">') == 4
    row_d = table[table.index(f'href="/jobs/{d.rid}"'):].split("</tr>")[0]
    assert f'href="/jobs/{b.rid}"' in row_d and f'href="/jobs/{c.rid}"' in row_d
    assert " style=" not in html and "<script>" not in html and "<style" not in html
    assert 'id="cancel-workflow"' in html


def test_unknown_and_invalid_ids_and_hostile_ones_are_escaped(producer, web):
    w = web()
    unknown = w.get("/workflows/no-such-workflow")
    assert unknown.status_code == 404 and "404 · Not found" in unknown.text and "no-such-workflow" in unknown.text
    evil = "<script>alert(1)</script>"
    missing = w.get(path(evil))
    assert missing.status_code == 404 and "<script>alert" not in missing.text and "&lt;script&gt;" in missing.text
    for bad in ("/workflows/", "/workflows/%20lead", "/workflows/trail%20", "/workflows/" + "x" * 201,
                "/workflows/a%00b", "/workflows/a%09b", "/workflows/w1?x=1", "/workflows/w1?notice=bogus"):
        answer = w.get(bad)
        assert answer.status_code == 400, (bad, answer.status_code)
        assert "<script" not in answer.text.replace('<script src="/static/app.js" defer></script>', "")
    assert w.get("/workflows/" + "x" * 200).status_code == 404  # the longest id that can exist
    assert w.get("/workflows/a%0Ab").status_code == 404  # no route takes a line break
    # An id with "/", "?", "#" and markup is one workflow: its page, its links and its cancel find it. (The test
    # client decodes a path twice, so "%" is left to the browser test, through Uvicorn.)
    odd = 'orders/42?x=1#top <b>"&'
    _, b, _, _ = diamond(producer, odd)
    page = w.get(path(odd))
    assert page.status_code == 200 and page.text.count('<a class="node ') == 4
    assert "orders/42?x=1#top &lt;b&gt;&#34;&amp;" in page.text and "<b>" not in page.text
    job_page = w.get(f"/jobs/{b.rid}").text
    link = re.search(r'<a id="job-workflow" href="([^"]+)">', job_page).group(1)
    assert link == path(odd) and w.get(link).status_code == 200
    assert w.post(path(odd) + "/cancel").status_code == 303
    assert producer.get_workflow(odd).status is JobStatus.CANCELLED
    # A workflow whose id ends in "/cancel" still has a page (a GET never cancels).
    diamond(producer, "x/cancel")
    assert w.get("/workflows/x%2Fcancel").status_code == 200
    assert w.get("/workflows/x/cancel").status_code == 200
    assert producer.get_workflow("x/cancel").status is JobStatus.RUNNING
    # Odd values anywhere are a 400 or a 404, never a 500.
    for value in WEIRD:
        assert w.get("/workflows/" + _encode(value)).status_code in (200, 400, 404), value
        assert w.post("/workflows/" + _encode(value) + "/cancel").status_code in (303, 400, 404, 409), value


def test_cancel_workflow_is_an_audited_csrf_guarded_action_refused_to_readers(producer, web, db_config):
    a, b, c, d = diamond(producer)
    diamond(producer, "w2")
    # A reader (token or read-only server) sees no button, and its POST is refused.
    reader = web(token=TOKEN, read_token=READ_TOKEN)
    read_header = {"Authorization": f"Bearer {READ_TOKEN}"}
    shown = reader.get("/workflows/w1", headers=read_header)
    assert shown.status_code == 200 and "Cancel workflow" not in shown.text and 'method="post"' not in shown.text
    refused = reader.client.post("/workflows/w1/cancel", headers=read_header)
    assert refused.status_code == 403 and "QUEUER_WEB_READ_TOKEN" in refused.text
    read_only = web(read_only=True)
    assert "Cancel workflow" not in read_only.get("/workflows/w1").text
    assert read_only.post("/workflows/w1/cancel").status_code == 403
    # Without its CSRF field, or from another site, nothing happens either.
    w = web()
    assert w.client.post("/workflows/w1/cancel", data={}).status_code == 403
    assert w.client.post("/workflows/w1/cancel", data={"csrf": w.csrf()},
                         headers={"Origin": "http://evil.example"}).status_code == 403
    assert producer.get_workflow("w1").counts() == {JobStatus.QUEUED: 1, JobStatus.WAITING: 3}

    done = w.post("/workflows/w1/cancel")
    assert done.status_code == 303 and done.headers["location"] == "/workflows/w1?notice=workflow-cancelled"
    info = producer.get_workflow("w1")
    assert info.status is JobStatus.CANCELLED and info.counts() == {JobStatus.CANCELLED: 4}
    assert producer.get_workflow("w2").counts() == {JobStatus.QUEUED: 1, JobStatus.WAITING: 3}  # untouched
    after = w.get(done.headers["location"]).text
    assert "The workflow&#39;s jobs that had not ended were cancelled." in after
    assert re.search(r'id="workflow-status"><span class="badge cancelled">CANCELLED', after)
    assert after.count('<a class="node cancelled"') == 4 and "Cancel workflow" not in after
    again = w.post("/workflows/w1/cancel")
    assert again.status_code == 409 and "already ended" in again.text
    assert w.post("/workflows/no-such/cancel").status_code == 404
    assert w.post("/workflows/%20x/cancel").status_code == 400

    # Recorded as the other actions are: what was done, and what an operator was refused (a 404, a 409);
    # a request refused before the action (reader, read-only, CSRF, a malformed id) is only logged.
    rows = sql(db_config, "SELECT credential, action, target, rids, outcome FROM {schema}.web_audit ORDER BY id")
    assert [(r[0], r[1], r[2], r[4].split(":")[0]) for r in rows] == [
        ("loopback (no token)", "cancel-workflow", "workflow w1", "done"),
        ("loopback (no token)", "cancel-workflow", "workflow w1", "refused (409)"),
        ("loopback (no token)", "cancel-workflow", "workflow no-such", "refused (404)"),
    ]
    assert set(rows[0][3]) == {a.rid, b.rid, c.rid, d.rid} and rows[0][4] == "done: 4 jobs cancelled"
    audit = w.get("/audit?action=cancel-workflow").text
    assert "workflow w1" in audit and "4 jobs cancelled" in audit
    assert "workflow w1" in w.get(f"/audit?rid={d.rid}").text  # each job's audit link finds it
    producer.cancel_workflow("w2")


def test_a_job_page_links_its_workflow_parents_and_dependents(producer, web, db_config):
    a, b, c, d = diamond(producer)
    w = web()
    page = w.get(f"/jobs/{d.rid}").text
    assert '<a id="job-workflow" href="/workflows/w1">w1</a>' in page
    parents = page[page.index('id="job-depends-on"'):].split("</dd>")[0]
    assert parents.index(f'href="/jobs/{b.rid}"') < parents.index(f'href="/jobs/{c.rid}"')  # in depends_on order
    assert "waiting for 2 of them to end" in parents and parents.count('class="badge waiting"') == 2
    root = w.get(f"/jobs/{a.rid}").text
    assert 'id="job-depends-on"' not in root and 'href="/workflows/w1"' in root
    children = root[root.index('id="job-dependents"'):].split("</dd>")[0]
    assert f'href="/jobs/{b.rid}"' in children and f'href="/jobs/{c.rid}"' in children
    plain = producer.add_job(step, "alone")
    alone = w.get(f"/jobs/{plain.rid}").text
    assert "job-workflow" not in alone and "job-depends-on" not in alone and "job-dependents" not in alone
    # A parent pruned from the archive is still named, as such.
    producer.cancel_workflow("w1")
    sql(db_config, "DELETE FROM {schema}.job_archive WHERE rid = %(r)s", {"r": b.rid})
    assert "(pruned)" in w.get(f"/jobs/{d.rid}").text
    assert "(not in this workflow, or pruned)" in w.get("/workflows/w1").text


def test_waiting_jobs_in_the_lists_the_filter_and_the_overview(producer, web, web_q):
    from queuer.web.reads import WebReads

    _, b, c, d = diamond(producer)
    w = web()
    listed = w.get("/jobs?status=waiting")
    assert listed.status_code == 200
    assert set(re.findall(r'<a href="/jobs/([0-9a-f-]{36})" title=', listed.text)) == {str(b.rid), str(c.rid), str(d.rid)}
    assert '<a href="/jobs?status=waiting" class="here">Waiting</a>' in listed.text
    assert listed.text.count("after the jobs it depends on") == 3  # not "due": nothing can claim them yet
    active = w.get("/jobs?status=active&task=step").text
    assert len(re.findall(r'<a href="/jobs/([0-9a-f-]{36})" title=', active)) == 4
    overview = w.get("/").text
    assert re.search(r'<a class="card waiting" href="/jobs\?status=waiting"><span class="figure">3</span>', overview)
    header = overview[overview.index('<table class="grid-table numbers" id="tasks">'):].split("</thead>")[0]
    body = overview[overview.index('<table class="grid-table numbers" id="tasks">'):].split("</table>")[0]
    row = body[body.index(">step</a>"):].split("</tr>")[0]
    # After the name's cell: one per status, then the Pause button's
    assert header.count("<th>") == 8 and row.count("<td") == 8 and row.count('<td class="actions">') == 1
    assert '<td class="waiting"><a href="/jobs?status=waiting&amp;task=step">3</a>' in row
    # Waiting for parents is not waiting in the queue: the depth chart counts the one queued job only.
    assert WebReads(web_q().db).overview().minutes[-1].depth == 1


def test_a_large_workflow_is_drawn_as_layer_boxes(producer, web):
    wf = producer.workflow("fan")
    root = wf.add_job(step, "root")
    pages = wf.add_jobs([BatchJob(step, [str(n)]) for n in range(248)], depends_on=[root])
    total = wf.add_job(step, "total", depends_on=pages)
    wf.commit()
    page = web().get("/workflows/fan")
    assert page.status_code == 200
    html = page.text
    assert '<a class="node ' not in html and html.count('<g class="layer-box">') == 3
    assert len(EDGE.findall(html)) == 2  # root's layer to the pages', the pages' to the total's
    assert "248 jobs</text>" in html and "248 waiting</text>" in html and "1 queued</text>" in html
    assert "250 jobs:" in html and len(page.text) < 300_000
    assert html[html.index('id="workflow-jobs"'):].count('<td class="rid">') == 250
    total_row = html[html.index(f'<a href="/jobs/{total.rid}" title='):].split("</tr>")[0]
    assert total_row.count('class="rid"') == 10 and "and 238 more" in total_row  # a fan-in names ten parents


def test_layout_is_bounded_for_deep_chains_and_survives_cycles():
    from queuer.web.graph import MAX_COLUMNS, depths, layout

    rids = [uuid.uuid4() for _ in range(1000)]
    chain = [{"rid": r, "task_name": "link", "status": "WAITING", "depends_on": [rids[i - 1]] if i else []}
             for i, r in enumerate(rids)]
    graph = layout(chain)
    assert graph.layers == 1000 and graph.layers_per_box == 25 and len(graph.boxes) == MAX_COLUMNS
    assert len(graph.edges) == MAX_COLUMNS - 1 and not graph.nodes
    # A skip (a → c beside a → b → c) goes up into the lane above the nodes, not through b.
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    small = layout([{"rid": a, "task_name": "a", "status": "SUCCEEDED", "depends_on": []},
                    {"rid": b, "task_name": "b", "status": "RUNNING", "depends_on": [a]},
                    {"rid": c, "task_name": "c", "status": "WAITING", "depends_on": [b, a, a]}])
    assert [n.rid for n in sorted(small.nodes, key=lambda n: n.x)] == [a, b, c]
    assert len(small.edges) == 2 + 1 and sum(" V" in e.d for e in small.edges) == 1
    # Rows written by hand may form a cycle, or name a parent that is not there: no hang, every job drawn.
    x, y, z = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cyclic = [{"rid": x, "task_name": "x", "status": "WAITING", "depends_on": [y]},
              {"rid": y, "task_name": "y", "status": "WAITING", "depends_on": [x]},
              {"rid": z, "task_name": "z", "status": "QUEUED", "depends_on": [uuid.uuid4(), z]}]
    assert depths(cyclic) == {z: 0, x: 1, y: 1}
    assert len(layout(cyclic).nodes) == 3
    assert layout([]).nodes == [] and layout([]).layers == 0
