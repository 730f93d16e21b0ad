"""The `queuer` command against a real PostgreSQL, failure modes included."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

from queuer.cli import main
from tests.support import ROOT, count, db_env, sql, wait_until


@pytest.fixture
def cli(db_config):
    runner = CliRunner()
    env = db_env(db_config)

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def test_every_command_has_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    commands = [line.split()[0] for line in result.output.split("Commands:")[1].strip().splitlines()]
    assert {"install", "uninstall", "upgrade", "verify", "durability", "autovac", "queue", "jobs", "job",
            "cancel", "retry", "workers", "schedules", "prune", "listen", "dashboard", "run", "demo",
            "bench"} <= set(commands)
    for command in commands:
        sub = runner.invoke(main, [command, "--help"])
        assert sub.exit_code == 0 and "Usage:" in sub.output, command


def test_install_verify_uninstall(cli, db_config):
    assert cli("verify").exit_code == 1  # nothing installed yet
    result = cli("install")
    assert result.exit_code == 0 and "installed schema" in result.output
    assert cli("verify").exit_code == 0
    assert cli("verify", "--expect", "absent").exit_code == 1
    upgraded = cli("upgrade")
    assert upgraded.exit_code == 0 and "applied nothing" in upgraded.output
    result = cli("uninstall", "--yes")
    assert result.exit_code == 0
    missing = cli("verify")
    assert missing.exit_code == 1 and f"missing table: {db_config.schema}.job" in missing.output
    assert cli("verify", "--expect", "absent").exit_code == 0


def test_durability_switches_without_losing_rows(cli, db_config):
    assert cli("install", "--durability", "balanced").exit_code == 0
    job = "SELECT relpersistence FROM pg_class WHERE oid = to_regclass(%s)"
    # The archive is partitioned: its partitions hold its rows and their persistence.
    archive = "SELECT array_agg(DISTINCT c.relpersistence) FROM pg_inherits AS i JOIN pg_class AS c " \
              "ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)"

    def persistence() -> tuple[str, list[str]]:
        return (sql(db_config, job, (f'"{db_config.schema}".job',))[0][0],
                sql(db_config, archive, (f'"{db_config.schema}".job_archive',))[0][0])

    assert persistence() == ("p", ["u"])
    sql(db_config, "INSERT INTO {schema}.job (rid, task_name) VALUES (gen_random_uuid(), 'keep-me')")
    dry = cli("durability", "volatile", "--dry-run")
    assert "SET UNLOGGED" in dry.output and "would switch" in dry.output
    assert persistence()[0] == "p"
    assert cli("durability", "volatile").exit_code == 0
    assert persistence() == ("u", ["u"])
    assert cli("durability", "durable").exit_code == 0
    assert persistence() == ("p", ["p"])
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = 'keep-me'") == 1
    assert cli("durability", "balanced").exit_code == 0
    # A partition made later follows the newest one.
    sql(db_config, "SELECT * FROM {schema}.archive_maintain(86400, 5)")
    assert persistence() == ("p", ["u"])


def test_autovac_apply_and_rollback(cli, db_config):
    cli("install")
    options = "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class " \
              "WHERE oid = to_regclass(%s)"
    assert "autovacuum_vacuum_scale_factor" in cli("autovac", "--dry-run").output
    assert sql(db_config, options, (f'"{db_config.schema}".job',))[0][0] == ""
    assert cli("autovac").exit_code == 0
    assert "autovacuum_vacuum_scale_factor=0.01" in sql(db_config, options, (f'"{db_config.schema}".job',))[0][0]
    assert cli("autovac", "--rollback").exit_code == 0
    assert sql(db_config, options, (f'"{db_config.schema}".job',))[0][0] == ""


def test_queue_jobs_job_cancel_retry(cli, make_queuer, db_config):
    worker_side = make_queuer()
    worker_side.add_task(len)
    worker_side.start()
    worker_side.stop()  # registers "len" as a known task
    bad = cli("queue", "len", "[1,")
    assert bad.exit_code == 2 and "not valid JSON" in bad.output
    assert cli("queue", "len", '"abc"').exit_code == 2  # ARGS is an array or an object
    keyed = cli("queue", "len", '{"obj": [1, 2]}')
    assert keyed.exit_code == 0, keyed.output
    keyed_rid = keyed.output.split()[0]
    assert worker_side.get_job(keyed_rid).parameters_keyed == {"obj": [1, 2]}
    assert cli("queue", "len", '{"obj": 1}', "--kwargs", "{}").exit_code == 2
    assert [j.rid for j in worker_side.cancel_jobs([keyed_rid, keyed_rid])] == [uuid.UUID(keyed_rid)]
    unknown = cli("queue", "no-such-task", "[]")
    assert unknown.exit_code == 1 and "unknown task 'no-such-task'" in unknown.output
    added = cli("queue", "len", '["abc"]', "--priority", "3")
    assert added.exit_code == 0, added.output
    rid = added.output.split()[0]
    listed = cli("jobs")
    assert rid in listed.output and "QUEUED" in listed.output
    as_json = [json.loads(line) for line in cli("jobs", "--json").output.splitlines()]
    assert as_json[0]["rid"] == rid and as_json[0]["parameters"] == ["abc"] and as_json[0]["priority"] == 3
    shown = json.loads(cli("job", rid).output)
    assert shown["task_name"] == "len"
    assert cli("job", "not-a-uuid").exit_code == 1
    assert "CANCELLED" in cli("cancel", rid).output
    again = cli("cancel", rid)
    assert again.exit_code == 1 and "already ended as CANCELLED" in again.output
    retried = cli("retry", rid)
    assert retried.exit_code == 0 and "QUEUED" in retried.output
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE origin_rid = %s", (rid,)) == 1
    assert "CANCELLED" in cli("jobs", "--status", "cancelled").output
    assert cli("jobs", "--status", "bogus").exit_code == 2


def test_workers_schedules_prune(cli, make_queuer, db_config):
    q = make_queuer(name="cli-worker")
    q.add_task(len)
    q.add_schedule("nightly", "0 3 * * *", len, "x")
    q.start()
    assert "cli-worker" in cli("workers").output and "RUNNING" in cli("workers").output
    assert "nightly" in cli("schedules").output
    assert cli("schedules", "pause", "nightly").exit_code == 0
    assert "paused" in cli("schedules").output
    assert cli("schedules", "resume", "nightly").exit_code == 0
    assert cli("schedules", "pause").exit_code == 2  # needs a NAME
    assert cli("schedules", "remove", "nightly").exit_code == 0
    assert cli("schedules", "remove", "nightly").exit_code == 1
    q.wait_for_job_finished(q.add_job(len, "ab").rid, 10)
    sql(db_config, "UPDATE {schema}.job_archive SET ended_at = now() - interval '40 days'")
    assert cli("prune", "--older-than", "soon").exit_code == 2
    assert cli("prune", "--older-than", "30d").exit_code == 1  # the whole archive: it asks for --yes
    pruned = cli("prune", "--older-than", "30d", "--yes")
    assert pruned.exit_code == 0 and "pruned 1 archived job(s)" in pruned.output
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 0


def test_dashboard_shows_the_numbers(cli, make_queuer, db_config):
    q = make_queuer(name="dash-worker")
    q.add_task(len)
    q.add_task_with_name(len, "resize")
    q.start()
    for _ in range(3):
        q.wait_for_job_finished(q.add_job(len, "ab").rid, 10)
    sql(db_config, "INSERT INTO {schema}.job (rid, task_name) SELECT gen_random_uuid(), 'idle-task' "
                   "FROM generate_series(1, 7)")
    sql(db_config, "INSERT INTO {schema}.job (rid, task_name, status, waiting_for) "
                   "SELECT gen_random_uuid(), 'idle-task', 'WAITING', 1 FROM generate_series(1, 2)")
    frame = cli("dashboard", "--once").output
    lines = frame.splitlines()
    assert all(len(line) <= 80 for line in lines)
    idle = next(line for line in lines if line.startswith("idle-task"))
    assert idle.split()[1:] == ["7", "0", "0", "2", "0", "0"]  # queued, scheduled, running, waiting, done, failed
    done = next(line for line in lines if line.startswith("len "))
    assert done.split()[5] == "3"  # succeeded in the last minute
    assert "throughput 0.1 jobs/s" in frame
    worker = next(line for line in lines if line.startswith("dash-worker"))
    assert "RUNNING" in worker


def test_unreachable_database_is_a_clear_error():
    runner = CliRunner()
    env = {"QUEUER_DB_HOST": "127.0.0.1", "QUEUER_DB_PORT": "1", "QUEUER_DB_PASSWORD": "hunter2 secret",
           "QUEUER_DB_TIMEOUT": "1"}
    for args in (["verify"], ["jobs"], ["install"]):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 1, args
        assert "cannot connect to PostgreSQL at" in result.output and "hunter2" not in result.output


def test_listen_prints_events(db_config, make_queuer):
    q = make_queuer()
    q.add_task(len)
    proc = subprocess.Popen([sys.executable, "-m", "queuer", "listen"], env=db_env(db_config), cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in proc.stderr.readline()
        job = q.add_job(len, "x")
        line = proc.stdout.readline()
        assert str(job.rid) in line and '"insert"' in line
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def run_cli(db_config, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "queuer", "run", *args, "--log-level", "WARNING"],
                            env={**db_env(db_config), **env}, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_run_drains_the_queue_and_exits_0(db_config, make_queuer, tmp_path):
    producer = make_queuer()
    rids = [producer.add_job("greet", f"user {i}").rid for i in range(20)]
    marker = tmp_path / "cleanup"
    proc = run_cli(db_config, "tests.factories:managed", "--mode", "drain",
                   QUEUER_TEST_CLEANUP_MARKER=str(marker))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert [producer.get_job_ended(r).result for r in rids[:2]] == ["hello, user 0", "hello, user 1"]
    assert marker.read_text() == "cleaned up"  # the context manager's cleanup ran


def test_run_shuts_down_gracefully_on_sigterm(db_config, make_queuer):
    producer = make_queuer()
    proc = run_cli(db_config, "tests.factories.plain")
    try:
        wait_until(lambda: producer.get_workers(status="RUNNING"), timeout=30, message="worker up")
        job = producer.add_job("slow", 1.0)
        wait_until(lambda: producer.get_job(job.rid).status.value == "RUNNING", message="running")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert f"[slow {job.rid}] sleeping 1.0 s" in output  # log lines carry task name and job rid
    done = producer.get_job_ended(job.rid)
    assert done.status.value == "SUCCEEDED" and done.result == 1.0  # the running job finished


def test_run_restarts_a_factory_that_fails_once(db_config, make_queuer, tmp_path):
    producer = make_queuer()
    producer.add_job("greet", "again")
    marker = tmp_path / "failed"
    proc = run_cli(db_config, "tests.factories:fails_once", "--mode", "drain", "--restart-on-failure",
                   "--restart-delay", "0.2", QUEUER_TEST_FAIL_MARKER=str(marker))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert marker.exists() and "the factory fails the first time" in output
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == 1
    no_restart = run_cli(db_config, "tests.factories:fails_once", "--mode", "drain",
                         QUEUER_TEST_FAIL_MARKER=str(tmp_path / "other"))
    assert no_restart.wait(60) == 1
    bad = run_cli(db_config, "tests.no_such_module:factory")
    assert bad.wait(60) == 2


def test_run_serves_prometheus_metrics(db_config, make_queuer):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    producer = make_queuer()
    producer.add_job("greet", "metrics")
    producer.add_job("unhandled-task")
    proc = run_cli(db_config, "tests.factories:plain", "--metrics-port", str(port))
    try:
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 1, timeout=30,
                   message="greet ran")

        def scrape() -> str:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                return ""

        text = wait_until(lambda: "queuer_job_outcomes_total" in (body := scrape()) and body, timeout=20,
                          message="metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert 'queuer_jobs{status="QUEUED",task="unhandled-task"} 1.0' in text
    assert 'queuer_job_outcomes_total{outcome="succeeded"} 1.0' in text
    assert "queuer_worker_up 1.0" in text
    assert "queuer_jobs_started_total 1.0" in text and "queuer_jobs_claimed_total 1.0" in text
    assert 'queuer_job_run_seconds_bucket{le="+Inf"} 1.0' in text


def test_dashboard_refreshes_in_place_and_exits_cleanly_on_ctrl_c(db_config, make_queuer):
    make_queuer()  # installs the schema
    proc = subprocess.Popen([sys.executable, "-m", "queuer", "dashboard", "--interval", "0.2"],
                            env=db_env(db_config), cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("\x1b[H\x1b[2J") and "queuer dashboard" in first  # home + clear: redrawn in place
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err


def test_run_finds_the_apps_module_from_its_directory(db_config, tmp_path, make_queuer):
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "workers.py").write_text(
        "from queuer import new_queuer\n"
        "def create():\n"
        "    q = new_queuer('app-worker', 2)\n"
        "    q.add_task_with_name(lambda: 'from the app', 'app_task')\n"
        "    return q\n"
    )
    producer = make_queuer()
    job = producer.add_job("app_task")
    env = {k: v for k, v in db_env(db_config).items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "queuer", "run", "app.workers:create", "--mode", "drain"],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert producer.get_job_ended(job.rid).result == "from the app"


def test_read_only_commands_change_nothing_and_point_to_install(db_config):
    from tests.support import sql

    runner = CliRunner()
    env = db_env(db_config)
    for args in (["jobs"], ["job", "00000000-0000-0000-0000-000000000000"], ["workers"], ["schedules"],
                 ["dashboard", "--once"], ["queue", "t", "[]", "--force"]):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 1 and "run `queuer install`" in result.output, (args, result.output)
    tables = sql(db_config, "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                 (db_config.schema,))
    assert tables[0][0] == 0
