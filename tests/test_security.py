"""Least privilege and secrets."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql as psql

from queuer import JobStatus, new_queuer_with_db
from queuer.cli import main
from queuer.config.database import DatabaseConfiguration
from tests.support import FAST, db_env


def add(a, b):
    return a + b


@pytest.fixture
def app_role(pg_server_config, db_config):
    role = f"app_{db_config.schema}"
    with psycopg.connect(**pg_server_config.connect_kwargs(), autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(psql.Identifier(role)))
        # The owner installs; the app role gets only what `queuer grant` gives.
        conn.execute(psql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(psql.Identifier(db_config.schema)))
    yield role
    with psycopg.connect(**pg_server_config.connect_kwargs(), autocommit=True) as conn:
        conn.execute(psql.SQL("DROP OWNED BY {}").format(psql.Identifier(role)))
        conn.execute(psql.SQL("DROP ROLE {}").format(psql.Identifier(role)))


def test_a_role_without_ddl_rights_can_produce_and_consume(db_config, app_role):
    runner = CliRunner()
    env = db_env(db_config)
    assert runner.invoke(main, ["install"], env=env).exit_code == 0  # as the owner
    granted = runner.invoke(main, ["grant", app_role], env=env)
    assert granted.exit_code == 0 and "GRANT SELECT, INSERT, UPDATE, DELETE" in granted.output
    as_app = DatabaseConfiguration(host=db_config.host, port=db_config.port, database=db_config.database,
                                   username=app_role, schema=db_config.schema)
    with psycopg.connect(**as_app.connect_kwargs(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(psql.SQL("CREATE TABLE {}.sneaky (id int)").format(psql.Identifier(db_config.schema)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(psql.SQL("DROP TABLE {}.job").format(psql.Identifier(db_config.schema)))
    q = new_queuer_with_db("least-privilege", 2, None, as_app, settings=FAST)
    try:
        q.add_task(add)
        q.start()
        done = q.wait_for_job_finished(q.add_job(add, 2, 3).rid, 10)
        assert (done.status, done.result) == (JobStatus.SUCCEEDED, 5)
        q.add_schedule("as-app", "0 3 * * *", add, 1, 1)
        assert [s.name for s in q.get_schedules()] == ["as-app"]
    finally:
        q.stop()


def test_grant_rejects_a_hostile_role_name(db_config):
    result = CliRunner().invoke(main, ["grant", 'x"; DROP TABLE job; --', "--dry-run"], env=db_env(db_config))
    assert result.exit_code == 2 and "invalid role name" in result.output


def test_secrets_stay_out_of_help_and_reprs(db_config):
    secret = "s3cr3t-Pass word"
    config = DatabaseConfiguration(host="h", password=secret)
    assert secret not in repr(config) and secret not in config.describe()
    runner = CliRunner()
    for args in (["--help"], ["run", "--help"], ["queue", "--help"]):
        out = runner.invoke(main, args, env={"QUEUER_DB_PASSWORD": secret}).output
        assert secret not in out
