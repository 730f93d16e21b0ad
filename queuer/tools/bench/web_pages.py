"""How fast ``queuer web`` serves its pages over a large archive and a live queue."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from queuer.tools.bench.harness import Harness, Report, one

WEB_BAR_MS = 300.0  # a page of `queuer web` over a large archive renders within this


def web(bench: Harness, report: Report) -> None:
    """`queuer web` over real HTTP with --scale-rows archived jobs (ended over the last day) and a live queue."""
    from queuer.web import MISSING_EXTRA, extra_installed

    if not extra_installed():
        print(f"  web: skipped ({MISSING_EXTRA})", file=bench.out, flush=True)
        return
    import http.client
    from urllib.parse import urlencode

    from queuer.web.params import Cursor
    from queuer.web.server import WebServer, web_queuer

    s = bench.settings
    tasks = ["resize_image", "send_email", "generate_report", "sync_inventory", "charge_card", "index_document",
             "notify_slack", "export_csv"]
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        queries = q.db.queries
        with q.db.connection() as conn:
            # A million a day, as a busy service ends them: a larger archive is more days of
            # history, not more jobs in the last hour (which is what the overview charts).
            days = max(1, -(-s.scale_rows // 1_000_000))
            bench.partitions_since(conn, queries, days=days + 1)
            # One statement: 94 % succeeded, 5 % failed, 1 % cancelled, spread evenly over those days.
            conn.execute(queries.bench_web_fill_archive, {"tasks": tasks, "rows": s.scale_rows, "days": days})
            conn.execute(queries.bench_vacuum_job_archive)
        bench.fill(q, 2_000, task="held")  # a queue no worker of this bench takes
        q.start()  # and a live worker on the overview
        with q.db.connection() as conn:
            row = one(conn.execute(queries.bench_web_page_100_row))
            failed_rid = one(conn.execute(queries.bench_web_failed_rid))["rid"]
        page_100 = Cursor(row["id"], row["ended_at"]).encode()
        pages = [
            ("overview", "/"),
            ("overview refresh (fragment)", "/fragments/overview"),
            ("jobs: newest ended", "/jobs?status=ended"),
            ("jobs: failed", "/jobs?status=failed"),
            ("jobs: one task, succeeded", "/jobs?status=succeeded&task=send_email"),
            ("jobs: 100th page (keyset cursor)", f"/jobs?status=ended&cursor={page_100}"),
            ("jobs: an hour a day ago", "/jobs?" + urlencode({
                "status": "ended", "since": (row["ended_at"] - timedelta(hours=23)).isoformat(),
                "until": (row["ended_at"] - timedelta(hours=22)).isoformat()})),
            ("jobs: rid search", f"/jobs?rid={str(row['rid'])[:8]}"),
            ("jobs: active queue", "/jobs"),
            ("job page (failed, archived)", f"/jobs/{failed_rid}"),
        ]
        web_q = web_queuer(config, None)
        server = WebServer(web_q).start()
        try:
            http_conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for name, url in pages:
                times = []
                for attempt in range(12):
                    t0 = time.perf_counter()
                    http_conn.request("GET", url)
                    response = http_conn.getresponse()
                    response.read()
                    elapsed = time.perf_counter() - t0
                    if response.status != 200:
                        raise RuntimeError(f"GET {url}: HTTP {response.status}")
                    if attempt >= 2:  # the first two warm the server's and PostgreSQL's caches
                        times.append(elapsed * 1000)
                median, worst = statistics.median(times), max(times)
                verdict = "ok" if median < WEB_BAR_MS else f"OVER the {WEB_BAR_MS:.0f} ms bar"
                report.add(f"web {name}", median, "ms", f"median of {len(times)}, max {worst:.0f} ms; "
                           f"{s.scale_rows:,} archived; {verdict}", out=bench.out)
            http_conn.close()
        finally:
            server.stop()
            web_q.stop()
