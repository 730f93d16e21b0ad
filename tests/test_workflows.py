"""Workflows: jobs that depend on jobs, failures that cascade, jobs added from inside, and steps."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

import queuer
from queuer import BatchJob, JobStatus, OnError, UnknownDependencyError, WorkflowNotFoundError
from tests.support import count, sql, start_worker_process, stop_process, wait_until

RUNS: list[tuple[str, object]] = []
_lock = threading.Lock()


def record(tag: str) -> str:
    with _lock:
        RUNS.append(("run", tag))
    return tag.upper()


def parents_seen(tag: str) -> list:
    parents = queuer.current_job().dependencies()
    with _lock:
        RUNS.append(("deps", tag))
    return [[str(p.status.value), p.result] for p in parents]


def fails(tag: str) -> None:
    raise RuntimeError(f"{tag} broke")


@pytest.fixture(autouse=True)
def _fresh_runs():
    RUNS.clear()
    yield
    RUNS.clear()


def _queuer(make_queuer):
    q = make_queuer(max_concurrency=4)
    for fn in (record, parents_seen, fails):
        q.add_task(fn)
    return q


def test_a_diamond_runs_its_last_job_once_after_both_branches_with_their_results(make_queuer):
    q = _queuer(make_queuer)
    wf = q.workflow("order-42")
    a = wf.add_job(record, "a")
    b = wf.add_job(record, "b", depends_on=[a])
    c = wf.add_job(record, "c", depends_on=[a])
    d = wf.add_job(parents_seen, "d", depends_on=[b, c])
    assert {j.rid for j in (a, b, c, d)} and d.depends_on == (b.rid, c.rid)
    assert count(q.db_config, "SELECT count(*) FROM {schema}.job") == 0  # nothing before commit
    assert wf.commit() == [a.rid, b.rid, c.rid, d.rid]
    assert q.get_job(d.rid).status is JobStatus.WAITING
    q.start()
    done = q.wait_for_job_finished(d.rid, 20)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == [["SUCCEEDED", "B"], ["SUCCEEDED", "C"]]
    order = [tag for kind, tag in RUNS]
    assert order.count("d") == 1 and order.index("d") > max(order.index("b"), order.index("c")) > order.index("a")
    info = q.get_workflow("order-42")
    assert info.status is JobStatus.SUCCEEDED and len(info.jobs) == 4
    assert info.job(d.rid).depends_on == [b.rid, c.rid] and info.job(d.rid).workflow_id == "order-42"


def test_a_failed_parent_cancels_its_dependents_transitively_and_a_run_dependent_sees_it(make_queuer):
    q = _queuer(make_queuer, )
    wf = q.workflow()
    broken = wf.add_job(fails, "root")
    child = wf.add_job(record, "child", depends_on=[broken])
    grandchild = wf.add_job(record, "grandchild", depends_on=[child])
    anyway = wf.add_job(parents_seen, "anyway", depends_on=[broken, child], on_dependency_failure="run")
    after_anyway = wf.add_job(record, "after", depends_on=[anyway])
    wf.commit()
    q.start()
    seen = q.wait_for_job_finished(anyway.rid, 20)
    assert seen.status is JobStatus.SUCCEEDED
    assert [status for status, _ in seen.result] == ["FAILED", "CANCELLED"]
    assert q.wait_for_job_finished(after_anyway.rid, 20).status is JobStatus.SUCCEEDED
    for rid in (child.rid, grandchild.rid):
        ended = q.wait_for_job_finished(rid, 10)
        assert ended.status is JobStatus.CANCELLED and "DependencyFailedError" in ended.error
    assert str(broken.rid) in q.get_job_ended(child.rid).error
    assert ("run", "child") not in RUNS and ("run", "grandchild") not in RUNS
    assert q.get_workflow(wf.id).status is JobStatus.FAILED


def test_a_cancelled_job_cancels_what_waits_for_it(make_queuer):
    q = _queuer(make_queuer)
    wf = q.workflow()
    first = wf.add_job(record, "first", options=queuer.Options(execute_after=__import__("datetime").timedelta(hours=1)))
    second = wf.add_job(record, "second", depends_on=[first])
    wf.commit()
    q.cancel_job(first.rid)
    assert q.wait_for_job_finished(second.rid, 10).status is JobStatus.CANCELLED


def test_a_rolled_back_transaction_leaves_no_job_and_no_edge(make_queuer, db_config):
    q = _queuer(make_queuer)
    wf = q.workflow("tx")
    a = wf.add_job(record, "a")
    wf.add_jobs([BatchJob(record, ["x"]) for _ in range(20)], depends_on=[a])
    with psycopg.connect(**db_config.connect_kwargs()) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            rids = q.add_workflow_tx(conn, wf)
            assert len(rids) == 21
            raise RuntimeError("the caller's transaction fails")
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    with pytest.raises(WorkflowNotFoundError):
        q.get_workflow("tx")


def test_bad_dependencies_are_refused_before_anything_is_written(make_queuer, db_config):
    q = _queuer(make_queuer)
    other = q.workflow("other")
    foreign = other.add_job(record, "foreign")
    wf = q.workflow("mine")
    with pytest.raises(ValueError, match="was not added by this builder"):
        wf.add_job(record, "x", depends_on=[foreign])
    with pytest.raises(ValueError, match="on_dependency_failure"):
        wf.add_job(record, "x", on_dependency_failure="maybe")
    with pytest.raises(ValueError, match="cannot have a unique_key"):
        wf.add_job(record, "x", options=queuer.Options(unique_key="k"))
    with pytest.raises(ValueError, match="workflow id"):
        q.workflow(" padded ")
    wf.add_job(record, "fine")
    wf.add_job(record, "orphan", depends_on=[uuid.uuid4()])
    with pytest.raises(UnknownDependencyError, match="does not exist"):
        wf.commit()
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


def test_a_running_job_adds_jobs_to_its_workflow_and_one_waits_for_them(make_queuer):
    def fan_out(n: int) -> int:
        job = queuer.current_job()
        children = job.workflow.add_jobs([BatchJob(record, [f"child-{i}"]) for i in range(n)])
        job.workflow.add_job(parents_seen, "gather", depends_on=[*children, job.rid])
        job.workflow.commit()
        return n

    q = _queuer(make_queuer)
    q.add_task(fan_out)
    wf = q.workflow("dynamic")
    wf.add_job(fan_out, 5)
    wf.commit()
    q.start()
    info = wait_until(lambda: (i := q.get_workflow("dynamic")).status is JobStatus.SUCCEEDED and i, timeout=20)
    gather = next(j for j in info.jobs if j.task_name == "parents_seen")
    assert len(info.jobs) == 7 and len(gather.result) == 6
    assert all(status == "SUCCEEDED" for status, _ in gather.result)
    assert sorted(r for _, r in gather.result[:5]) == [f"CHILD-{i}" for i in range(5)]


def test_adding_to_a_parent_that_already_ended_counts_it_at_once(make_queuer):
    q = _queuer(make_queuer)
    q.start()
    wf = q.workflow("late")
    early = wf.add_job(record, "early")
    wf.commit()
    assert q.wait_for_job_finished(early.rid, 10).status is JobStatus.SUCCEEDED
    late = wf.add_job(parents_seen, "late", depends_on=[early])
    wf.commit()
    assert q.wait_for_job_finished(late.rid, 10).result == [["SUCCEEDED", "EARLY"]]
    broken = wf.add_job(fails, "broken")
    wf.commit()
    assert q.wait_for_job_finished(broken.rid, 10).status is JobStatus.FAILED
    doomed = wf.add_job(record, "doomed", depends_on=[broken])
    wf.commit()
    assert q.wait_for_job_finished(doomed.rid, 10).status is JobStatus.CANCELLED


def test_cancel_workflow_ends_every_job_that_has_not_ended(make_queuer):
    q = _queuer(make_queuer)
    wf = q.workflow("doomed")
    a = wf.add_job(record, "a")
    wf.add_jobs([BatchJob(record, ["b"]) for _ in range(3)], depends_on=[a])
    wf.commit()
    cancelled = q.cancel_workflow("doomed")
    assert len(cancelled) == 4
    info = q.get_workflow("doomed")
    assert info.counts() == {JobStatus.CANCELLED: 4} and info.status is JobStatus.CANCELLED


def test_retention_keeps_an_archived_parent_a_waiting_job_still_needs(make_queuer, db_config):
    q = _queuer(make_queuer)
    q.start()
    wf = q.workflow("kept")
    parent = wf.add_job(record, "parent")
    slow = wf.add_job(record, "slow", options=queuer.Options(execute_after=__import__("datetime").timedelta(hours=1)))
    child = wf.add_job(parents_seen, "child", depends_on=[parent, slow])
    wf.commit()
    q.wait_for_job_finished(parent.rid, 10)
    from queuer.database import admin

    with psycopg.connect(**db_config.connect_kwargs(), autocommit=True) as conn:
        conn.execute(f'UPDATE "{db_config.schema}".job_archive SET ended_at = now() - interval \'30 days\'')
        assert admin.prune_archive(conn, db_config.schema, 86400) == 0
    assert q.get_job_ended(parent.rid).status is JobStatus.SUCCEEDED
    q.cancel_job(slow.rid)
    q.wait_for_job_finished(child.rid, 10)
    with psycopg.connect(**db_config.connect_kwargs(), autocommit=True) as conn:
        assert admin.prune_archive(conn, db_config.schema, 86400) == 1  # now nothing needs it


def test_steps_keep_their_results_across_attempts(make_queuer):
    calls: list[str] = []

    def five_steps() -> list:
        job = queuer.current_job()
        results = []
        for i in range(1, 6):
            def step(i: int = i) -> dict:
                calls.append(f"step{i}@{job.attempt}")
                if i == 4 and job.attempt == 1:
                    raise RuntimeError("step 4 broke")
                return {"n": i, "t": (i, i)}
            results.append(job.step(f"s{i}", step))
        return results

    q = make_queuer(OnError(max_retries=2))
    q.add_task(five_steps)
    q.start()
    done = q.wait_for_job_finished(q.add_job(five_steps).rid, 20)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == [{"n": i, "t": [i, i]} for i in range(1, 6)]
    assert calls == ["step1@1", "step2@1", "step3@1", "step4@1", "step4@2", "step5@2"]


def test_a_step_result_is_encrypted_with_the_job(make_queuer, db_config):
    from queuer import new_queuer_with_db
    from queuer.payload.encryption import generate_key
    from tests.support import FAST

    def secret_step() -> str:
        return queuer.current_job().step("secret", lambda: "top secret")

    q = new_queuer_with_db("enc", 2, generate_key(), db_config, OnError(max_retries=1), settings=FAST)
    try:
        q.add_task(secret_step)
        q.start()
        assert q.wait_for_job_finished(q.add_job(secret_step).rid, 10).result == "top secret"
        assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE steps::text LIKE '%top secret%'") == 0
        assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE steps ? 'secret'") == 1
    finally:
        q.stop(timeout=5)


# -- across worker processes ---------------------------------------------------------------------


def _run_log(path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.load
def test_a_fan_in_over_10000_children_on_3_processes_runs_once_after_the_last(make_queuer, db_config, tmp_path):
    log = tmp_path / "runs.log"
    producer = make_queuer()
    wf = producer.workflow("fan")
    children = wf.add_jobs([BatchJob(task="noop", parameters=[i]) for i in range(10_000)])
    fan_in = wf.add_job("gather", depends_on=children)
    wf.commit()
    workers = [start_worker_process(db_config, "--concurrency", "8", "--drain", QUEUER_TEST_RUN_LOG=str(log))
               for _ in range(3)]
    try:
        done = producer.wait_for_job_finished(fan_in.rid, 300)
    finally:
        for w in workers:
            stop_process(w)
    assert done.status is JobStatus.SUCCEEDED and done.result == 10_000
    assert [line[0] for line in _run_log(log)] == ["gather"]
    last_child = sql(db_config, "SELECT max(ended_at) FROM {schema}.job_archive WHERE task_name = 'noop'")[0][0]
    assert done.started_at >= last_child
    assert count(db_config, "SELECT count(DISTINCT rid) FROM {schema}.job_archive") == 10_001
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


@pytest.mark.crash
@pytest.mark.load
def test_kill_9_in_the_middle_of_a_workflow_ends_every_job_once_and_the_fan_in_once(make_queuer, db_config,
                                                                                      tmp_path):
    log = tmp_path / "runs.log"
    producer = make_queuer()
    wf = producer.workflow("killed")
    start = wf.add_job("noop", "start")
    children = wf.add_jobs([BatchJob(task="sleepy", parameters=[i], parameters_keyed={"seconds": 0.01})
                            for i in range(2_000)], depends_on=[start])
    fan_in = wf.add_job("gather", depends_on=children)
    wf.commit()
    env = {"QUEUER_TEST_RUN_LOG": str(log)}
    workers = [start_worker_process(db_config, "--concurrency", "4", **env) for _ in range(3)]
    try:
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") > 500, timeout=120,
                   message="a quarter of the workflow ran")
        for victim in (0, 1):
            workers[victim].kill()  # SIGKILL: no cleanup at all
            workers[victim].wait()
            workers[victim] = start_worker_process(db_config, "--concurrency", "4", **env)
        done = producer.wait_for_job_finished(fan_in.rid, 240)
    finally:
        for w in workers:
            stop_process(w)
    assert done.status is JobStatus.SUCCEEDED and done.result == 2_000
    assert [line[0] for line in _run_log(log)] == ["gather"]
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 2_002
    assert count(db_config, "SELECT count(DISTINCT rid) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == 2_002


@pytest.mark.crash
def test_a_five_step_job_killed_in_step_4_runs_only_step_4_again(make_queuer, db_config, tmp_path):
    log = tmp_path / "runs.log"
    producer = make_queuer()
    job = producer.add_job("five_steps")
    worker = start_worker_process(db_config, "--concurrency", "2", QUEUER_TEST_RUN_LOG=str(log))
    try:
        wait_until(lambda: any(line[0] == "step4" for line in _run_log(log)), timeout=60, message="step 4 began")
        worker.kill()
        worker.wait()
        worker = start_worker_process(db_config, "--concurrency", "2", QUEUER_TEST_RUN_LOG=str(log))
        done = producer.wait_for_job_finished(job.rid, 60)
    finally:
        stop_process(worker)
    assert done.status is JobStatus.SUCCEEDED and done.result == [10, 20, 30, 40, 50]
    assert [(line[0], line[2]) for line in _run_log(log)] == [
        ("step1", "1"), ("step2", "1"), ("step3", "1"), ("step4", "1"), ("step4", "2"), ("step5", "2")]


def test_the_command_line_shows_and_cancels_a_workflow(make_queuer, db_config):
    from click.testing import CliRunner

    from queuer.cli import main
    from tests.support import db_env

    q = _queuer(make_queuer)
    wf = q.workflow("cli-wf")
    a = wf.add_job(record, "a")
    wf.add_job(record, "b", depends_on=[a])
    wf.commit()
    runner, env = CliRunner(), db_env(db_config)
    shown = runner.invoke(main, ["workflow", "cli-wf"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "cli-wf: RUNNING (1 queued, 1 waiting)" in shown.output
    rows = [line.split() for line in shown.output.splitlines() if str(a.rid) in line or "WAITING" in line]
    assert rows[0][2] == "QUEUED" and rows[0][-1] == "-" and rows[1][2] == "WAITING" and rows[1][-1] == "1"
    cancelled = runner.invoke(main, ["workflow", "cli-wf", "--cancel"], env=env)
    assert cancelled.exit_code == 0 and "2 job(s) cancelled" in cancelled.output
    missing = runner.invoke(main, ["workflow", "no-such"], env=env)
    assert missing.exit_code == 1 and "no workflow 'no-such'" in missing.output
