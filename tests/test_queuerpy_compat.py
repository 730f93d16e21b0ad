"""queuerPy's README examples run unchanged but for their imports (example/queuerpy_readme.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, count, db_env


def test_queuerpy_readme_script_runs_and_archives_every_job(db_config):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "example" / "queuerpy_readme.py")],
        env=db_env(db_config), cwd=str(ROOT), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split(" ", 2) for line in proc.stdout.strip().splitlines()]
    assert len(lines) == 10
    assert {status for _, status, _ in lines} == {"SUCCEEDED"}
    # queuerPy's list form: a task's return value is results[0].
    results = [r for _, _, r in lines]
    assert results[0] == '[{"args": [5, "12"], "kwargs": {}}]'
    assert results[1] == '[{"args": [], "kwargs": {"debug": true, "paramKeyed1": "test"}}]'
    assert results[3] == '["decorated"]'
    assert results[9] == '[{"args": [], "kwargs": {"id": 3, "name": "c"}}]'
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == 10
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
