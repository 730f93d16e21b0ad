"""Containers and orchestrators: the compose file, the Kubernetes example, `queuer health`."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
import yaml
from click.testing import CliRunner

from queuer.cli import main
from tests.support import ROOT, db_env, wait_until


def test_docker_compose_is_valid_restarts_and_checks_the_worker():
    if shutil.which("docker-compose") is None:
        pytest.skip("Debian's docker-compose is not installed (.ci/run installs it)")
    result = subprocess.run(["docker-compose", "config"], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {name: s["restart"] for name, s in services.items()} == {
        "postgres": "unless-stopped", "worker": "unless-stopped"}
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "queuer", "health"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "tests", "build", "dist"} <= set(ignored)


def test_kubernetes_example_probes_and_grace_period_fit_the_shutdown_timeout():
    manifest = yaml.safe_load((ROOT / "example" / "kubernetes" / "worker.yaml").read_text())
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert pod["terminationGracePeriodSeconds"] > float(env["QUEUER_SHUTDOWN_TIMEOUT"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["queuer", "health"]


def test_health_is_ok_for_a_live_worker_and_says_why_for_a_stopped_one(make_queuer, db_config):
    runner = CliRunner()
    env = db_env(db_config)
    result = runner.invoke(main, ["health"], env=env)
    assert result.exit_code == 1 and "run `queuer install`" in result.output

    q = make_queuer(name="healthy")
    q.add_task(len)
    result = runner.invoke(main, ["health"], env=env)
    assert result.exit_code == 1 and "no worker of host" in result.output  # READY is not running
    q.start()
    result = runner.invoke(main, ["health", "--name", "healthy"], env=env)
    assert result.exit_code == 0 and "ok: worker healthy" in result.output, result.output
    assert socket.gethostname() == q.worker.host

    q.stop()
    result = runner.invoke(main, ["health", "--name", "healthy"], env=env)
    assert result.exit_code == 1 and "it is STOPPED" in result.output, result.output


def test_health_of_a_killed_worker_process(db_config, tmp_path):
    from tests.test_crashes import Workers

    workers = Workers(db_config, tmp_path / "starts", 1, concurrency=1, supervise=False)
    try:
        workers.ready()
        runner = CliRunner()
        env = db_env(db_config)
        assert runner.invoke(main, ["health"], env=env).exit_code == 0
        workers.kill(0)
        workers.procs[0].wait(10)
        # The session lock is gone at once; health says so once the heartbeat is old too.
        result = wait_until(lambda: (r := runner.invoke(main, ["health", "--max-silence", "1"], env=env)).exit_code == 1
                            and r, timeout=20, message="health notices the killed worker")
        assert "unhealthy" in result.output
    finally:
        workers.close()
