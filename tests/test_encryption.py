"""Encryption of arguments and results: no plaintext in the database, rotation, wrong keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from queuer import BatchJob, JobStatus, Options, Schedule, new_queuer_with_db
from queuer.cli import main
from queuer.payload.encryption import EncryptionError, Keyring, generate_key
from tests.support import FAST, count, db_env, sql

SECRET = "patient-4711-diagnosis"


def leak(text: str, note: str | None = None) -> str:
    return f"{text} / {SECRET}"


@pytest.fixture
def keyed(db_config):
    made = []

    def make(key: str | None, **kwargs):
        q = new_queuer_with_db("enc", 2, key, db_config, settings=FAST, **kwargs)
        q.add_task(leak)
        made.append(q)
        return q

    yield make
    for q in made:
        q.stop(timeout=5)


def raw_text(db_config) -> str:
    rows = sql(db_config, "SELECT row_to_json(j)::text FROM {schema}.job j UNION ALL "
                          "SELECT row_to_json(a)::text FROM {schema}.job_archive a")
    return "\n".join(r[0] for r in rows)


def test_no_plaintext_in_the_database_and_results_come_back(keyed, db_config):
    key = generate_key()
    q = keyed(key)
    q.start()
    single = q.add_job(leak, SECRET, note=SECRET)
    [batched] = q.add_jobs([BatchJob(task=leak, parameters=[SECRET])])
    assert SECRET not in raw_text(db_config)  # queued: arguments sealed
    for rid in (single.rid, batched):
        done = q.wait_for_job_finished(rid, 10)
        assert done.status == JobStatus.SUCCEEDED and done.result == f"{SECRET} / {SECRET}"
    assert q.get_job(single.rid).parameters == [SECRET] and q.get_job(single.rid).parameters_keyed == {"note": SECRET}
    text = raw_text(db_config)
    assert SECRET not in text and "leak" in text  # task name, status and times stay in clear
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE results IS NULL "
                           "AND results_enc IS NOT NULL AND arguments_enc IS NOT NULL") == 2


def test_a_wrong_key_fails_the_job_clearly_and_the_worker_goes_on(keyed, db_config):
    producer = keyed(generate_key())
    job = producer.add_job(leak, SECRET)
    wrong = keyed(generate_key())
    wrong.start()
    done = wrong.wait_for_job_finished(job.rid, 10)
    assert done.status == JobStatus.FAILED and "EncryptionError" in done.error and "not configured here" in done.error
    wrong.stop()
    keyless = keyed(None)
    second = producer.add_job(leak, "x")
    keyless.start()
    done = keyless.wait_for_job_finished(second.rid, 10)
    assert done.status == JobStatus.FAILED and "this worker has no key" in done.error
    assert keyless.get_job(second.rid).encrypted  # a reader without the key sees that, not plaintext
    plain = keyless.add_job(leak, "plain")  # the workers are still running
    assert keyless.wait_for_job_finished(plain.rid, 10).status == JobStatus.SUCCEEDED


def test_a_ciphertext_moved_to_another_job_fails_authentication():
    ring = Keyring([generate_key()])
    import uuid

    a, b = uuid.uuid4(), uuid.uuid4()
    blob = ring.encrypt(b'{"p":[1],"k":{}}', a, "arguments")
    assert ring.decrypt(blob, a, "arguments") == b'{"p":[1],"k":{}}'
    with pytest.raises(EncryptionError, match="failed authentication"):
        ring.decrypt(blob, b, "arguments")
    with pytest.raises(EncryptionError, match="failed authentication"):
        ring.decrypt(blob, a, "results")
    assert "Keyring keys=" in repr(ring) and generate_key() not in repr(ring)
    with pytest.raises(EncryptionError, match="at least 16 characters"):
        Keyring(["short"])


def test_rotation_keeps_old_jobs_readable_and_reencrypt_moves_them(keyed, db_config):
    old_key, new_key = generate_key(), generate_key()
    before = keyed(old_key)
    before.start()
    first = before.wait_for_job_finished(before.add_job(leak, "old").rid, 10)
    pending = before.add_job_with_options(Options(execute_after=timedelta(hours=1)), leak, "later")
    before.stop()
    rotated = keyed(f"{new_key},{old_key}")  # newest first
    assert rotated.get_job(first.rid).result == "old / " + SECRET
    assert rotated.get_job(pending.rid).parameters == ["later"]
    env = {**db_env(db_config), "QUEUER_ENCRYPTION_KEY": f"{new_key},{old_key}"}
    result = CliRunner().invoke(main, ["reencrypt"], env=env)
    assert result.exit_code == 0 and "re-encrypted 2 job(s)" in result.output, result.output
    only_new = keyed(new_key)
    assert only_new.get_job(first.rid).result == "old / " + SECRET
    assert only_new.get_job(pending.rid).parameters == ["later"]
    current = Keyring([new_key]).current_id
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE substring(results_enc FROM 2 FOR 4) <> %s",
                 (current,)) == 0


def test_recurring_encrypted_jobs_open_in_every_run(keyed, db_config):
    q = keyed(generate_key())
    q.start()
    q.add_job_with_options(Options(schedule=Schedule(max_count=3, interval=timedelta(seconds=0.2))), leak, "run")
    from tests.support import wait_until

    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == 3,
               message="3 encrypted runs")
    assert SECRET not in raw_text(db_config)


def test_keys_stay_out_of_reprs_help_and_errors(keyed):
    key = generate_key()
    q = keyed(key)
    assert key not in repr(q) and key not in repr(q.keyring)
    out = CliRunner().invoke(main, ["reencrypt", "--help"], env={"QUEUER_ENCRYPTION_KEY": key}).output
    assert key not in out
    with pytest.raises(EncryptionError) as info:
        Keyring([generate_key()]).decrypt(q.keyring.encrypt(b"x", __import__("uuid").uuid4(), "results"),
                                          __import__("uuid").uuid4(), "results")
    assert key not in str(info.value)
