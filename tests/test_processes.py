"""`queuer run --processes N`: worker processes under one supervisor."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

import queuer
from queuer import BatchJob, JobStatus
from tests.support import ROOT, count, db_env, wait_until


def run_processes(db_config, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "queuer", "run", "tests.factories:plain", *args,
                             "--log-level", "INFO"],
                            env={**db_env(db_config), "QUEUER_SHUTDOWN_TIMEOUT": "10", **env}, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_drain_mode_over_2_processes_exits_0_once_every_job_ran(db_config, make_queuer):
    producer = make_queuer()
    rids = producer.add_jobs([BatchJob("whoami", [0.02]) for _ in range(60)])
    proc = run_processes(db_config, "--processes", "2", "--mode", "drain")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    pids = {producer.get_job_ended(rid).result for rid in rids}
    assert len(pids) == 2, pids  # both processes ran jobs
    assert output.count("worker process") >= 4  # each started, each finished


def test_run_workers_from_python_does_what_queuer_run_does(db_config, make_queuer):
    producer = make_queuer()
    rids = producer.add_jobs([BatchJob("whoami", [0.02]) for _ in range(60)])
    script = ("import sys, queuer\n"
              "from tests.factories import plain\n"
              "sys.exit(queuer.run_workers(plain, processes=2, mode='drain'))\n")
    proc = subprocess.run([sys.executable, "-c", script], env={**db_env(db_config), "QUEUER_SHUTDOWN_TIMEOUT": "10"},
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len({producer.get_job_ended(rid).result for rid in rids}) == 2  # both processes ran jobs
    with pytest.raises(ValueError, match="pass 'module:function' instead"):
        queuer.run_workers(lambda: None, processes=2)
    with pytest.raises(ValueError, match="'auto'"):
        queuer.run_workers("tests.factories:plain", processes=0)


@pytest.mark.crash
def test_a_killed_process_is_restarted_and_sigterm_stops_them_all_gracefully(db_config, make_queuer):
    producer = make_queuer()
    proc = run_processes(db_config, "--processes", "2")
    try:
        workers = wait_until(lambda: (w := producer.get_workers(status="RUNNING")) and len(w) == 2 and w,
                             timeout=60, message="2 worker processes up")
        pids = sorted(w.pid for w in workers)
        long_jobs = [producer.add_job("whoami", 1.0) for _ in range(4)]
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job WHERE status = 'RUNNING'") >= 2,
                   message="jobs running on both")
        victim, survivor = pids
        import os

        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len({w.pid for w in producer.get_workers(status="RUNNING")} - set(pids)) == 1,
                   timeout=30, message="the killed process restarted")
        for job in long_jobs:  # the killed process's jobs ran again elsewhere
            assert producer.wait_for_job_finished(job.rid, 60).status is JobStatus.SUCCEEDED
        assert survivor in {w.pid for w in producer.get_workers(status="RUNNING")}  # the other never stopped
        running = producer.add_job("whoami", 1.5)
        wait_until(lambda: producer.get_job(running.rid).status is JobStatus.RUNNING, message="a job running")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert time.monotonic() - started < 10 + 5  # within the shutdown timeout
    assert "killed by SIGKILL; restarting it" in output
    assert producer.get_job_ended(running.rid).status is JobStatus.SUCCEEDED  # finished, not abandoned
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE status = 'RUNNING'") == 0


def test_processes_takes_a_number_or_auto(db_config):
    bad = run_processes(db_config, "--processes", "none")
    output, _ = bad.communicate(timeout=30)
    assert bad.returncode == 2 and "--processes" in output


def test_one_metrics_port_sums_every_process(db_config, make_queuer):
    import urllib.request

    from queuer.config.ports import free_port

    port = free_port()
    producer = make_queuer()
    proc = run_processes(db_config, "--processes", "2", "--metrics-port", str(port))
    try:
        wait_until(lambda: len(producer.get_workers(status="RUNNING")) == 2, timeout=60, message="2 processes up")
        rids = producer.add_jobs([BatchJob("whoami", [0.05]) for _ in range(40)])
        for rid in rids:
            producer.wait_for_job_finished(rid, 30)

        def scraped() -> str | None:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                return None
            started = [line for line in text.splitlines() if line.startswith("queuer_jobs_started_total ")]
            return text if started and float(started[0].split()[1]) >= 40 else None

        text = wait_until(scraped, timeout=20, message="both processes' counters in one scrape")
        pids = {producer.get_job_ended(rid).result for rid in rids}
        assert len(pids) == 2  # the 40 jobs ran on both processes, and the one port counts them all
        assert "queuer_worker_up 1.0" in text
        assert 'queuer_workers{status="RUNNING"} 2.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=40)
    assert proc.returncode == 0
