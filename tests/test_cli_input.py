"""Whatever an operator types, the `queuer` command answers with one clear line, writes nothing
wrong and never prints a traceback; what it shows cannot act on the operator's terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from queuer.cli import main
from tests.support import ROOT, count, db_env, sql


@pytest.fixture
def cli(db_config):
    runner = CliRunner()
    env = db_env(db_config)

    def invoke(*args: str):
        return runner.invoke(main, list(args), env=env, catch_exceptions=True)

    assert invoke("install").exit_code == 0
    return invoke


def _one_clear_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    # "Error: ..." from a command; "<rid>: ..." for each rid a many-rid command could not handle
    errors = [line for line in result.output.splitlines() if line.startswith(("Error:", "not-a-uuid:"))]
    assert len(errors) == 1, result.output
    return errors[0]


DEEP = "[" * 3000 + "]" * 3000

QUEUE_CASES = [
    (["queue", "--force", "t", "[NaN]"], "NaN"),
    (["queue", "--force", "t", "[Infinity]"], "Infinity"),
    (["queue", "--force", "t", "[-Infinity]"], "Infinity"),
    (["queue", "--force", "t", "[1e999]"], "out of range"),
    (["queue", "--force", "t", '["\\u0000"]'], "NUL"),
    (["queue", "--force", "t", '["\\ud800"]'], "surrogate"),
    (["queue", "--force", "t", "[" + "9" * 5000 + "]"], "digits"),
    (["queue", "--force", "t", DEEP], "deep"),
    (["queue", "--force", "t", "[[[" + "1" + "]]]" , "--kwargs", "[]"], "object"),
    (["queue", "--force", "--priority", "99999999999", "t"], "--priority"),
    (["queue", "--force", "--after", "-5", "t"], "--after"),
    (["queue", "--force", "--after", "nan", "t"], "--after"),
    (["queue", "--force", "--after", "inf", "t"], "--after"),
    (["queue", "--force", "--after", "1e300", "t"], "--after"),
    (["queue", "--force", ""], "TASK"),
    (["queue", "--force", "a\x01b"], "TASK"),
    (["queue", "--force", " padded"], "TASK"),
    (["queue", "--force", "x" * 201], "TASK"),
    (["queue", "--force", "a\u202eb"], "TASK"),
    (["jobs", "--limit", "99999999999999999999"], "--limit"),
    (["jobs", "--limit", "0"], "--limit"),
    (["jobs", "--status", "DONE"], "status"),
    (["jobs", "--worker", "not-a-uuid"], "UUID"),
    (["job", "not-a-uuid"], "UUID"),
    (["cancel", "not-a-uuid"], "UUID"),
    (["schedules", "pause", "nope"], "'nope'"),
]


@pytest.mark.parametrize("args, says", QUEUE_CASES, ids=[" ".join(a)[:40] for a, _ in QUEUE_CASES])
def test_bad_input_is_one_line_and_writes_nothing(cli, db_config, args, says):
    line = _one_clear_line(cli(*args))
    assert says in line, line
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


PRUNE_CASES = [
    (["--older-than", "-5d"], "--older-than"),
    (["--older-than", "0d"], "--older-than"),
    (["--older-than", "30"], "unit"),
    (["--older-than", "0.000001s"], "under one second"),
    (["--older-than", "inf"], "--older-than"),
    (["--older-than", "nan"], "--older-than"),
    (["--older-than", "1e308d"], "--older-than"),
    (["--older-than", "99999999999d"], "100 years"),
    (["--older-than", "30d", "--batch-size", "0"], "--batch-size"),
    (["--older-than", "30d", "--batch-size", "-1"], "--batch-size"),
    (["--older-than", "1s"], "--yes"),  # it would empty the archive
]


@pytest.fixture
def archived(cli, db_config, make_queuer):
    q = make_queuer()
    q.add_task_with_name(lambda: None, "old")
    q.start()
    rids = [q.add_job("old").rid for _ in range(5)]
    for rid in rids:
        q.wait_for_job_finished(rid, timeout_seconds=30)
    sql(db_config, "UPDATE {schema}.job_archive SET ended_at = now() - interval '2 days'")
    return 5


@pytest.mark.parametrize("args, says", PRUNE_CASES, ids=[" ".join(a) for a, _ in PRUNE_CASES])
def test_a_prune_slip_deletes_nothing(cli, db_config, archived, args, says):
    line = _one_clear_line(cli("prune", *args))
    assert says in line, line
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == archived


def test_prune_counts_first_and_asks_before_emptying_the_archive(cli, db_config, archived):
    dry = cli("prune", "--older-than", "1d", "--dry-run")
    assert dry.exit_code == 0 and "would prune 5 of 5 archived job(s)" in dry.output
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 5
    assert cli("prune", "--older-than", "3d").exit_code == 0  # nothing that old: no question
    done = cli("prune", "--older-than", "1d", "--yes")
    assert done.exit_code == 0 and "pruned 5 archived job(s)" in done.output
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 0


def test_prune_of_a_schema_without_queuer_says_so(db_config):
    result = CliRunner().invoke(main, ["--schema", "nothing_here", "prune", "--older-than", "30d"],
                                env=db_env(db_config))
    line = _one_clear_line(result)
    assert "not installed in schema nothing_here" in line


def test_names_that_could_act_on_a_terminal_are_shown_escaped(cli, db_config, make_queuer):
    q = make_queuer()
    q.add_task_with_name(lambda: None, "plain")
    rid = q.add_job("plain").rid
    hostile_task, hostile_worker = "evil\u009b31m\u202eroot", "w\x1b]0;owned\x07"
    sql(db_config, "UPDATE {schema}.job SET task_name = %s WHERE rid = %s", (hostile_task, rid))
    sql(db_config, "UPDATE {schema}.worker SET name = %s", (hostile_worker,))
    for args in (["jobs"], ["workers"], ["job", str(rid)], ["schedules", "list"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        for raw in ("\x1b", "\x07", "\u009b", "\u202e"):
            assert raw not in result.output, (args, result.output)
    assert "\\x1b" in cli("workers").output and "\\u202e" in cli("jobs").output


@pytest.mark.parametrize("name", ["w\x1b]0;x\x07", " padded", "trailing ", "bidi\u202e", "c1\u009b"])
def test_names_are_checked_when_registered(make_queuer, name):
    q = make_queuer()
    with pytest.raises(ValueError):
        q.add_task_with_name(lambda: None, name)
    with pytest.raises(ValueError):
        q.schedule(name, "* * * * *")(lambda: None)


def test_the_installed_command_prints_no_traceback(db_config):
    """As an operator runs it: the console entry point, a real process."""
    run = subprocess.run([sys.executable, "-m", "queuer", "queue", "--force", "t", "[NaN]"],
                         env=db_env(db_config), cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "Traceback" not in run.stderr and "NaN" in run.stderr


def test_retry_of_a_job_still_running_says_so(cli, make_queuer):
    q = make_queuer()
    q.add_task_with_name(lambda: None, "plain")
    rid = q.add_job("plain").rid
    result = cli("retry", str(rid))
    assert result.exit_code == 1 and "has not ended yet (it is QUEUED)" in result.output
    assert "not found in archive" not in result.output


def test_an_undecodable_job_can_be_shown_listed_and_cancelled(cli, db_config, make_queuer):
    q = make_queuer()
    q.add_task_with_name(lambda *a: None, "plain")
    rid = q.add_job("plain", 1).rid
    sql(db_config, "UPDATE {schema}.job SET parameters = %s::jsonb WHERE rid = %s", ("[" * 2000 + "]" * 2000, rid))
    shown_job = cli("job", str(rid))
    assert shown_job.exit_code == 0 and "RecursionError" in shown_job.output  # Job.undecodable says why
    listed = cli("jobs")
    assert listed.exit_code == 0 and str(rid) in listed.output
    cancelled = cli("cancel", str(rid))
    assert cancelled.exit_code == 0 and "CANCELLED" in cancelled.output
    again = cli("retry", str(rid))
    assert again.exit_code == 1 and "cannot be decoded" in again.output
