"""Configuration from the environment: keyword arguments to libpq, no secret in sight."""

from __future__ import annotations

import psycopg
import pytest

from queuer.config.database import ConfigurationError, DatabaseConfiguration


def test_from_env_fields_go_to_libpq_as_keywords():
    config = DatabaseConfiguration.from_env(
        {
            "QUEUER_DB_HOST": "db.example",
            "QUEUER_DB_PORT": "6543",
            "QUEUER_DB_DATABASE": "jobs",
            "QUEUER_DB_USERNAME": "worker",
            "QUEUER_DB_PASSWORD": "pass word 'quoted'",
            "QUEUER_DB_SCHEMA": "queue",
            "QUEUER_DB_SSLMODE": "require",
        }
    )
    kwargs = config.connect_kwargs()
    assert kwargs["host"] == "db.example" and kwargs["port"] == 6543 and kwargs["dbname"] == "jobs"
    assert kwargs["user"] == "worker" and kwargs["password"] == "pass word 'quoted'"
    assert kwargs["sslmode"] == "require" and config.schema == "queue"
    assert "pass word" not in repr(config) and "pass word" not in config.describe()


def test_empty_password_and_unset_sslmode_are_left_to_libpq():
    config = DatabaseConfiguration.from_env({"QUEUER_DB_HOST": "h", "QUEUER_DB_PASSWORD": ""})
    kwargs = config.connect_kwargs()
    assert kwargs["password"] == "" and "sslmode" not in kwargs
    assert config.schema == "public"


def test_url_is_parsed_and_fields_override_it():
    config = DatabaseConfiguration.from_env(
        {"QUEUER_DB_URL": "postgresql://u:secret@h:7777/d?sslmode=disable", "QUEUER_DB_DATABASE": "other"}
    )
    kwargs = config.connect_kwargs()
    assert (kwargs["host"], kwargs["port"], kwargs["user"], kwargs["dbname"]) == ("h", 7777, "u", "other")
    assert kwargs["sslmode"] == "disable" and "secret" not in repr(config)


def test_bad_values_raise_clear_errors():
    with pytest.raises(ConfigurationError, match="QUEUER_DB_PORT must be a number"):
        DatabaseConfiguration.from_env({"QUEUER_DB_PORT": "fifty"})
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        DatabaseConfiguration.from_env({"QUEUER_DB_SCHEMA": "x;drop"})
    with pytest.raises(ConfigurationError, match="not a valid PostgreSQL URL") as info:
        DatabaseConfiguration.from_env({"QUEUER_DB_URL": "postgresql://u:topsecret@h/d?no_such_option=1"})
    assert "topsecret" not in str(info.value)


def test_password_with_spaces_connects(pg_server_config, db_config):
    # Set a password with spaces and quotes on a role, then log in with it.
    role = "queuer_pw_" + db_config.schema
    password = "p a s s 'w' \"d\""
    with psycopg.connect(**pg_server_config.connect_kwargs(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            psycopg.sql.Identifier(role), psycopg.sql.Literal(password)))
    try:
        config = DatabaseConfiguration(
            host=pg_server_config.host, port=pg_server_config.port, database=pg_server_config.database,
            username=role, password=password,
        )
        with psycopg.connect(**config.connect_kwargs()) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == role
    finally:
        with psycopg.connect(**pg_server_config.connect_kwargs(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
