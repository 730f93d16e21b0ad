"""The web UI in a real headless Chromium (Debian's chromium and chromium-driver, through Selenium).

The real server (Uvicorn in a thread) over a real worker: the overview shows
a job added meanwhile without a reload, a task paused from it shows its badge
until it is resumed, and a running job cancelled from its page ends
CANCELLED. Every page is saved as a screenshot under the test's
temporary directory; with QUEUER_WEB_SCREENSHOT=path the overview is also
written there (docs/web-overview.png in the README is made this way).
"""

from __future__ import annotations

import os
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest

import queuer
from queuer.model.options import OnError, Options
from tests.support import sql, wait_until

pytest.importorskip("starlette")
pytest.importorskip("selenium")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
                              ".ci/run installs them)"),
]


def chrome(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Without the background-networking flags Chromium stalls on a closed network.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1440,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, path: Path) -> Path:
    """The whole page, beyond the window's height (Chromium's DevTools capture)."""
    import base64

    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def text_of(driver, element_id: str) -> str:
    """An element's text, read in one script: the overview replaces its elements every second."""
    return driver.execute_script(
        "var e = document.getElementById(arguments[0]); return e ? e.innerText : ''", element_id)


def task_row_state(driver, task: str) -> tuple[bool, str]:
    """(whether the overview shows the task's paused badge, the label of its button), read in one script."""
    return tuple(driver.execute_script("""
        var row = document.querySelector('#tasks tr[data-task="' + CSS.escape(arguments[0]) + '"]');
        if (!row) return [false, ''];
        var button = row.querySelector('td.actions button');
        return [row.querySelector('.badge.paused') !== null, button ? button.textContent.trim() : ''];""", task))


def press_in_task_row(driver, task: str, label: str) -> None:
    """Click the task's button on the overview, whose rows the refresh replaces every second."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def press() -> bool:
        try:
            for row in driver.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]"):
                if row.get_attribute("data-task") == task:
                    button = row.find_element(By.CSS_SELECTOR, "td.actions button")
                    if button.text == label:
                        button.click()
                        return True
        except StaleElementReferenceException:
            pass
        return False

    wait_until(press, timeout=15, interval=0.05, message=f"the {label} button of {task}")


def seed_last_hour(db_config) -> None:
    """An hour of finished work, so the charts of the README's picture have a history to show."""
    sql(db_config, """
        INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, started_at, created_at, ended_at,
                                          attempts, error)
        SELECT -g, gen_random_uuid(), t.name,
               CASE WHEN random() < 0.04 THEN 'FAILED' WHEN random() < 0.015 THEN 'CANCELLED' ELSE 'SUCCEEDED' END,
               e.due, e.due + e.waited, e.due, e.due + e.waited + e.ran, 1,
               'TimeoutError: the SMTP server did not answer'
        FROM generate_series(1, 3000) AS g
        -- a busy spell twenty minutes ago: more jobs, and they wait longer
        CROSS JOIN LATERAL (SELECT 3500 * random() + 0 * g AS back) AS b
        CROSS JOIN LATERAL (SELECT CASE WHEN random() < 0.35 THEN 1080 + 420 * random() ELSE b.back END AS back) AS s
        CROSS JOIN LATERAL (
            SELECT now() - make_interval(secs => s.back + 30) AS due,
                   make_interval(secs => CASE WHEN s.back BETWEEN 1080 AND 1500 THEN 20 + 40 * random()
                                              ELSE 2 * random() END) AS waited,
                   make_interval(secs => 5 * random()) AS ran) AS e
        CROSS JOIN LATERAL (SELECT (ARRAY['resize_image', 'send_email', 'generate_report', 'sync_inventory'])
                                   [1 + floor(random() * 4 + 0 * g)::int] AS name) AS t
    """)
    sql(db_config, "UPDATE {schema}.job_archive SET error = NULL WHERE status <> 'FAILED'")
    sql(db_config, "ANALYZE {schema}.job_archive")


def test_overview_live_update_and_cancel_in_a_real_browser(make_queuer, db_config, tmp_path):
    from selenium.webdriver.common.by import By

    from queuer.web.server import WebServer, web_queuer
    from queuer.web.settings import WebSettings

    long_started = threading.Event()
    saw_cancel = threading.Event()

    q = make_queuer(max_concurrency=6, name="image-service")

    @q.task(name="resize_image")
    def resize_image(path: str, width: int = 640) -> dict:
        return {"path": path, "width": width}

    @q.task(name="send_email")
    def send_email(to: str) -> None:
        if to.endswith("@invalid"):
            raise ConnectionError(f"no MX record for {to.split('@')[1]}")

    @q.task(name="generate_report")
    def generate_report(month: str) -> None:
        long_started.set()
        if queuer.current_job().wait_cancelled(60):
            saw_cancel.set()

    q.add_task_with_name(lambda sku: sku, "sync_inventory")
    q.add_schedule("nightly-report", "0 3 * * *", "generate_report", "last-month")
    q.add_schedule("hourly-sync", "5 * * * *", "sync_inventory", "all")
    q.start()

    done = [q.add_job(resize_image, f"/photos/{n}.jpg", width=320) for n in range(8)]
    failed = q.add_job_with_options(Options(on_error=OnError(max_retries=0)), send_email, "ops@invalid")
    q.add_job_with_options(Options(execute_after=timedelta(hours=1)), resize_image, "/photos/later.jpg")
    long = q.add_job(generate_report, "2024-05")
    for job in (*done, failed):
        q.wait_for_job_finished(job.rid, 20)
    assert long_started.wait(20)
    picture = os.environ.get("QUEUER_WEB_SCREENSHOT")
    if picture:
        seed_last_hour(db_config)

    web_q = web_queuer(db_config, None)
    server = WebServer(web_q, WebSettings(refresh_seconds=1.0)).start()
    driver = chrome(tmp_path / "chromium-profile")
    try:
        # The overview: tasks, counts, the charts and the worker.
        driver.get(server.url + "/")
        tasks = text_of(driver, "tasks")
        assert "resize_image" in tasks and "send_email" in tasks and "generate_report" in tasks
        workers = text_of(driver, "workers")
        assert "image-service" in workers and "RUNNING" in workers and "alive" in workers
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
        shot = screenshot(driver, tmp_path / "overview.png")
        if picture:
            Path(picture).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, picture)

        # A job added meanwhile appears by itself: the page refreshes, it is not reloaded.
        driver.execute_script("window.notReloaded = true")
        q.add_job_with_options(Options(execute_after=timedelta(minutes=30)), "publish_feed", "sku-42")
        wait_until(lambda: "publish_feed" in text_of(driver, "tasks"), timeout=15,
                   message="the new task on the overview")
        assert driver.execute_script("return window.notReloaded === true")
        assert "updated" in text_of(driver, "refresh-status")

        # Pause a task from the overview (the page asks first): its row says paused, and no worker starts
        # its jobs; then Resume it.
        assert task_row_state(driver, "send_email") == (False, "Pause")
        press_in_task_row(driver, "send_email", "Pause")
        alert = driver.switch_to.alert
        assert "send_email" in alert.text and "every worker" in alert.text
        alert.accept()
        wait_until(lambda: task_row_state(driver, "send_email") == (True, "Resume"), timeout=15,
                   message="the paused badge on the overview")
        assert "The task is paused on every worker" in driver.page_source
        assert [(c.task_name, c.paused) for c in q.task_controls()] == [("send_email", True)]
        assert task_row_state(driver, "resize_image") == (False, "Pause")
        screenshot(driver, tmp_path / "task-paused.png")
        press_in_task_row(driver, "send_email", "Resume")
        wait_until(lambda: task_row_state(driver, "send_email") == (False, "Pause"), timeout=15,
                   message="the task resumed on the overview")
        assert "The task is resumed" in driver.page_source
        assert [(c.task_name, c.paused) for c in q.task_controls()] == [("send_email", False)]

        # The jobs pages.
        driver.get(server.url + "/jobs?status=ended")
        assert "send_email" in driver.find_element(By.ID, "job-list").text
        screenshot(driver, tmp_path / "jobs.png")
        driver.get(server.url + f"/jobs/{failed.rid}")
        assert "ConnectionError: no MX record for invalid" in driver.find_element(By.ID, "job-error").text
        screenshot(driver, tmp_path / "job-failed.png")
        # A form POSTs once: a second submit (a double click) while the first is on its way is dropped.
        sent = driver.execute_script("""
            var form = document.getElementById("requeue-job").form, sent = 0;
            window.addEventListener("submit", function (e) { if (!e.defaultPrevented) sent++; e.preventDefault(); });
            form.requestSubmit();
            form.requestSubmit();
            return sent;""")
        assert sent == 1
        driver.get(server.url + "/schedules")
        assert "nightly-report" in driver.find_element(By.ID, "schedules").text
        screenshot(driver, tmp_path / "schedules.png")

        # Cancel the running job from its page.
        driver.get(server.url + f"/jobs/{long.rid}")
        assert text_of(driver, "job-status") == "RUNNING"
        driver.find_element(By.ID, "cancel-job").click()
        try:
            wait_until(lambda: text_of(driver, "job-status") == "CANCELLED", timeout=15,
                       message="the job page to show CANCELLED")
        except AssertionError:
            print(driver.current_url, driver.page_source[-3000:])
            raise
        assert "The job was cancelled." in driver.page_source
        assert saw_cancel.wait(10), "the task was told it was cancelled"
        assert q.get_job(long.rid).status.value == "CANCELLED"
        screenshot(driver, tmp_path / "job-cancelled.png")
    finally:
        driver.quit()
        server.stop()
        web_q.stop()
    for name in ("overview", "task-paused", "jobs", "job-failed", "schedules", "job-cancelled"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
    print(f"\nscreenshots in {tmp_path}")


def step(name: str) -> str:
    return name


def test_a_workflow_page_in_a_real_browser(make_queuer, db_config, tmp_path):
    from selenium.webdriver.common.by import By

    from queuer.web.server import WebServer, web_queuer
    from queuer.web.settings import WebSettings

    # Nothing runs: the root stays QUEUED and the others WAITING until the page cancels them.
    q = make_queuer(name="producer")
    q.add_task(step)
    workflow_id = "nightly/report 100%"  # "/" and "%" reach the page through Uvicorn's decoding as they are
    wf = q.workflow(workflow_id)
    a = wf.add_job(step, "a")
    b = wf.add_job(step, "b", depends_on=[a])
    c = wf.add_job(step, "c", depends_on=[a])
    d = wf.add_job(step, "d", depends_on=[b, c])
    wf.commit()

    web_q = web_queuer(db_config, None)
    server = WebServer(web_q, WebSettings()).start()
    driver = chrome(tmp_path / "chromium-profile")
    try:
        # From a job's page to its workflow's, by its link.
        driver.get(server.url + f"/jobs/{d.rid}")
        assert driver.find_element(By.ID, "job-depends-on").text.count("WAITING") == 2
        driver.find_element(By.ID, "job-workflow").click()
        wait_until(lambda: driver.find_elements(By.ID, "workflow-graph"), timeout=15, message="the workflow page")
        assert workflow_id in driver.find_element(By.TAG_NAME, "h1").text

        nodes = driver.find_elements(By.CSS_SELECTOR, "svg#workflow-graph a.node")
        edges = driver.find_elements(By.CSS_SELECTOR, "svg#workflow-graph path.edge")
        assert len(nodes) == 4 and len(edges) == 4
        assert all(n.is_displayed() for n in nodes) and all(e.is_displayed() for e in edges)
        # Laid out left to right: the root, then B over C, then D; each node is a box of its own.
        boxes = {n.get_attribute("data-rid"): n.rect for n in nodes}
        ra, rb, rc, rd = (boxes[str(j.rid)] for j in (a, b, c, d))
        assert ra["x"] < rb["x"] == rc["x"] < rd["x"] and rb["y"] < rc["y"]
        assert all(r["width"] > 100 and r["height"] > 30 for r in boxes.values())
        # Coloured by status from the stylesheet (the CSP allows no inline style).
        fill = driver.execute_script(
            "return getComputedStyle(document.querySelector('a.node.waiting rect')).fill")
        assert fill == "rgb(251, 240, 220)"
        assert "1 queued" in driver.find_element(By.ID, "workflow-counts").text
        screenshot(driver, tmp_path / "workflow.png")

        # A node is a link to its job's page.
        next(n for n in nodes if n.get_attribute("data-rid") == str(b.rid)).click()
        wait_until(lambda: driver.current_url.endswith(f"/jobs/{b.rid}"), timeout=15, message="B's page")
        assert text_of(driver, "job-status") == "WAITING"
        driver.back()
        wait_until(lambda: driver.find_elements(By.ID, "cancel-workflow"), timeout=15, message="the workflow page")

        # Cancel the workflow (the page asks first): every job ends CANCELLED.
        driver.find_element(By.ID, "cancel-workflow").click()
        alert = driver.switch_to.alert
        assert workflow_id in alert.text
        alert.accept()
        wait_until(lambda: text_of(driver, "workflow-status") == "CANCELLED", timeout=15,
                   message="the workflow page to show CANCELLED")
        assert "were cancelled" in driver.page_source
        statuses = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#workflow-jobs .badge")]
        assert statuses == ["CANCELLED"] * 4
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg#workflow-graph a.node.cancelled")) == 4
        assert not driver.find_elements(By.ID, "cancel-workflow")
        assert q.get_workflow(workflow_id).counts() == {queuer.JobStatus.CANCELLED: 4}
        screenshot(driver, tmp_path / "workflow-cancelled.png")
    finally:
        driver.quit()
        server.stop()
        web_q.stop()
    print(f"\nscreenshots in {tmp_path}")
