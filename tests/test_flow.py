"""Deduplication and transactional enqueue."""

from __future__ import annotations

import psycopg
import pytest

from queuer import BatchJob, DuplicateJobError, JobStatus, Options
from tests.support import count, sql


def echo(value):
    return value


def test_unique_key_rejects_or_skips_while_queued_or_running(make_queuer, db_config):
    q = make_queuer()
    q.add_task(echo)
    first = q.add_job_with_options(Options(unique_key="report-42"), echo, 1)
    with pytest.raises(DuplicateJobError, match="'report-42' is already queued or running.*on_duplicate='skip'"):
        q.add_job_with_options(Options(unique_key="report-42"), echo, 2)
    skipped = q.add_job_with_options(Options(unique_key="report-42", on_duplicate="skip"), echo, 3)
    assert skipped.rid == first.rid and skipped.parameters == [1]
    with pytest.raises(DuplicateJobError):
        q.add_jobs([BatchJob(task=echo, parameters=[4]),
                    BatchJob(task=echo, parameters=[5], options=Options(unique_key="report-42"))])
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 1  # the batch added nothing
    q.start()
    q.wait_for_job_finished(first.rid, 10)
    again = q.add_job_with_options(Options(unique_key="report-42"), echo, 6)  # free once archived
    assert again.rid != first.rid
    assert q.wait_for_job_finished(again.rid, 10).result == 6


def test_a_batch_as_the_first_statement_of_an_implicit_transaction_is_rolled_back_with_it(make_queuer, db_config):
    q = make_queuer()
    with psycopg.connect(**db_config.connect_kwargs()) as conn:  # not autocommit: psycopg's implicit transaction
        q.add_jobs_tx(conn, [BatchJob(task="tx-batch", parameters=[i]) for i in range(5)])
        wf = q.workflow("in-the-callers-transaction")
        wf.add_job("tx-batch", 0)
        wf.commit_tx(conn)
        conn.rollback()
        q.add_jobs_tx(conn, [BatchJob(task="tx-batch", parameters=[9])])
        conn.commit()
    assert [row[0] for row in sql(db_config, "SELECT parameters FROM {schema}.job")] == [[9]]


def test_add_job_tx_exists_only_if_the_transaction_commits(make_queuer, db_config):
    q = make_queuer()
    q.add_task(echo)
    q.start()
    with psycopg.connect(**db_config.connect_kwargs()) as conn:
        with conn.transaction():
            kept = q.add_job_tx(conn, echo, "kept")
            batch = q.add_jobs_tx(conn, [BatchJob(task=echo, parameters=["batch"])])
            # Not visible to anyone else before commit, so not run either.
            assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
        with pytest.raises(RuntimeError):
            with conn.transaction():
                lost = q.add_job_tx(conn, echo, "rolled back")
                raise RuntimeError("the caller's transaction fails")
    assert q.wait_for_job_finished(kept.rid, 10).result == "kept"  # woken at commit
    assert q.wait_for_job_finished(batch[0], 10).result == "batch"
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE rid = %s", (lost.rid,)) == 0
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE rid = %s", (lost.rid,)) == 0
    assert q.get_job_ended(kept.rid).status == JobStatus.SUCCEEDED
