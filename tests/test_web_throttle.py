"""Token guessing is slowed per client and server-wide, and every failure is logged with the client's
address (never the guess); a right token is answered at once. Against the real server (Uvicorn)."""

from __future__ import annotations

import http.client
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest

from tests.support import wait_until
from tests.test_web import TOKEN, web, web_q, worker  # noqa: F401 - fixtures

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

CSRF_FIELD = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def call(port: int, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None,
         source: str = "127.0.0.1") -> tuple[int, dict[str, str], str, float]:
    """One request on a connection of its own: (status, headers, body, seconds it took)."""
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text, time.monotonic() - began
    finally:
        conn.close()


def login_form(port: int) -> tuple[str, str]:
    """(the CSRF cookie, the form's CSRF field) as a browser gets them from the sign-in page."""
    status, headers, text, _ = call(port, "GET", "/login")
    assert status == 200
    cookie = re.search(r"queuer_csrf=([^;]+)", headers["set-cookie"]).group(1)
    return cookie, CSRF_FIELD.search(text).group(1)


def sign_in(port: int, token: str, cookie: str, field: str, source: str = "127.0.0.1"):
    body = urlencode({"csrf": field, "token": token, "next": "/"})
    return call(port, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                               "Cookie": f"queuer_csrf={cookie}"}, source)


def failures_logged(caplog, what: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "queuer.web" and r.getMessage().startswith(f"failed {what} from")]


@pytest.fixture
def server(web_q):
    from queuer.web.server import WebServer
    from queuer.web.settings import WebSettings

    with WebServer(web_q(), WebSettings(token=TOKEN)) as running:
        yield running


def test_parallel_wrong_sign_ins_are_slowed_and_logged_and_the_right_token_works_at_once(worker, server, caplog):
    caplog.set_level(logging.INFO, logger="queuer.web")
    port = server.port
    cookie, field = login_form(port)
    status, headers, _, _ = sign_in(port, TOKEN, cookie, field)
    assert status == 303
    session = re.search(r"queuer_session=([^;]+)", headers["set-cookie"]).group(1)
    signed_in = {"Cookie": f"queuer_session={session}"}

    guesses = [f"wrong-guess-{n:03d}-abcdefgh" for n in range(100)]
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        futures = [pool.submit(sign_in, port, guess, cookie, field) for guess in guesses]
        # While they queue up, a signed-in operator is answered at once.
        wait_until(lambda: len(failures_logged(caplog, "sign-in")) >= 10, timeout=30, message="failures to queue")
        status, _, page, seconds = call(port, "GET", "/jobs", headers=signed_in)
        assert status == 200 and "Jobs" in page and seconds < 1.0, seconds
        assert sum(f.done() for f in futures) < 100  # the guesses were still waiting meanwhile
        results = [f.result() for f in futures]
    elapsed = time.monotonic() - began
    print(f"\n100 parallel wrong sign-ins: {elapsed:.2f} s in all, answered after "
          f"{min(r[3] for r in results):.2f} to {max(r[3] for r in results):.2f} s")
    assert {r[0] for r in results} == {401}
    assert all("That is not the token." in r[2] for r in results)
    # Server-wide, failures leave one at a time, 50 ms apart, after each address's growing delay (5 s at most).
    assert elapsed >= 8.0, elapsed
    assert max(r[3] for r in results) >= 8.0 and min(r[3] for r in results) >= 0.2
    logged = failures_logged(caplog, "sign-in")
    assert len(logged) == 100 and all("from 127.0.0.1 " in r.getMessage() for r in logged)
    assert all(r.levelno == logging.WARNING for r in logged)
    assert not any("wrong-guess" in r.getMessage() for r in caplog.records)  # never the guess itself

    # Afterwards the right token is answered at once, by the form and as a Bearer header.
    status, _, _, seconds = sign_in(port, TOKEN, cookie, field)
    assert status == 303 and seconds < 1.0, seconds
    status, _, _, seconds = call(port, "GET", "/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and seconds < 1.0, seconds
    # A wrong Bearer token is a failure like a wrong sign-in: slowed and logged, the token not shown.
    status, headers, _, seconds = call(port, "GET", "/jobs", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert status == 401 and seconds >= 0.2 and "invalid_token" in headers["www-authenticate"]
    assert len(failures_logged(caplog, "Bearer token")) == 1
    assert not any("not-the-token-at-all" in r.getMessage() for r in caplog.records)
    # Another scheme (a proxy's Basic authentication) is no guess: not slowed, not logged.
    status, _, _, seconds = call(port, "GET", "/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert status == 401 and seconds < 0.2 and len(failures_logged(caplog, "Bearer token")) == 1


def test_guesses_from_many_addresses_are_slowed_together(worker, server, caplog):
    caplog.set_level(logging.WARNING, logger="queuer.web")
    port = server.port
    sources = [f"127.0.0.{n}" for n in range(10, 50)]

    def guess(source: str):
        return call(port, "GET", "/", headers={"Authorization": f"Bearer guess-from-{source}"}, source=source)

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(guess, sources))
    elapsed = time.monotonic() - began
    assert {r[0] for r in results} == {401}
    # Each address failed once (0.25 s of its own), yet the 40 answers left 50 ms apart.
    assert elapsed >= 0.25 + 39 * 0.05 - 0.1, elapsed
    logged = {r.getMessage().split(" from ")[1].split(" ")[0] for r in failures_logged(caplog, "Bearer token")}
    assert logged == set(sources)


def test_a_long_queue_of_failures_refuses_attempts_unexamined(worker, web):
    from queuer.web.throttle import Throttle

    w = web(token=TOKEN)
    throttle = Throttle(spacing=2.0, max_backlog=1.0)
    w.client.app.state.web.throttle = throttle
    wrong = {"Authorization": "Bearer wrong-token-wrong-token"}
    assert w.get("/", headers=wrong).status_code == 401  # queued; the next slot is 2 s away
    refused = w.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    # Even a right token waits its turn then: the number of tokens checked per second stays bounded.
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    form = w.client.post("/login", data={"csrf": w.csrf("/login"), "token": TOKEN}, headers={"Accept": "text/html"})
    assert form.status_code == 429 and "Too many failed sign-ins" in form.text
    assert throttle.refused == 2
    wait_until(lambda: throttle.retry_after() is None, timeout=10, interval=0.1, message="the queue to shorten")
    assert w.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_one_address_cannot_queue_enough_to_lock_everyone_out():
    from queuer.web.throttle import Throttle

    now = [1000.0]
    throttle = Throttle(spacing=0.05, max_backlog=30.0, client_backlog=10.0, clock=lambda: now[0])
    for _ in range(2000):  # a flood from one address, all at once
        throttle.failure("198.51.100.66")
    assert throttle.retry_after() is None  # the server-wide queue stays under the refusal mark
    assert throttle.failure("203.0.113.5")[1] <= 10.0 + 0.05 * 2  # another client waits seconds, not minutes


def test_the_throttle_grows_per_client_forgets_and_keys_ipv6_by_64():
    from queuer.web.throttle import Throttle, client_key

    now = [1000.0]
    throttle = Throttle(spacing=0.05, clock=lambda: now[0])
    waits = []
    for _ in range(8):
        waits.append(throttle.failure("198.51.100.1")[1])
        now[0] += 60  # apart: the server-wide spacing plays no part
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert throttle.failures("198.51.100.1") == 8 and throttle.failures("198.51.100.2") == 0
    assert throttle.failure("198.51.100.2") == (1, 0.25)  # another address: its own count
    now[0] += 901
    assert throttle.failures("198.51.100.1") == 0 and throttle.failure("198.51.100.1")[0] == 1  # forgotten
    # At the same instant, failures leave one spacing apart, whoever sent them.
    now[0] += 100
    same = [throttle.failure(f"203.0.113.{n}")[1] for n in range(5)]
    assert same == pytest.approx([0.25, 0.30, 0.35, 0.40, 0.45])
    # One host's addresses share a count.
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" and client_key(None) == "unknown"
    small = Throttle(max_clients=3, clock=lambda: now[0])
    for n in range(5):
        small.failure(f"192.0.2.{n}")
    assert small.failures("192.0.2.0") == 0 and small.failures("192.0.2.4") == 1
