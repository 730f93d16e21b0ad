"""Behind a reverse proxy: X-Forwarded-* believed only from trusted proxies, the public origin for the
CSRF check, a token-less server refusing proxied requests; security headers on every response, and a
500 that keeps the connection. The last tests run a real nginx on loopback (Debian's nginx package)."""

from __future__ import annotations

import http.client
import logging
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import sql, wait_until
from tests.test_web import TOKEN, Web, web, web_q, worker  # noqa: F401 - fixtures

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(),
                                 reason="needs Debian's nginx (apt-get install nginx)")
CSRF_FIELD = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
PUBLIC = "https://queue.example.com"


def security_headers_ok(headers, static: bool = False) -> bool:
    return (headers.get("content-security-policy", "").startswith("default-src 'none'")
            and headers.get("x-frame-options") == "DENY" and headers.get("x-content-type-options") == "nosniff"
            and headers.get("referrer-policy") == "same-origin"
            and (static or headers.get("cache-control") == "no-store"))


def test_trusted_proxies_and_public_origin_parse_and_the_chain_is_read_from_the_right():
    from queuer.web.proxy import ProxyError, TrustedProxies, parse_networks, parse_public_origin

    proxies = TrustedProxies(["127.0.0.2", "10.0.0.0/8", " ::1 ", ""])
    assert proxies.trusts("10.1.2.3") and proxies.trusts("::1") and proxies.trusts("::ffff:127.0.0.2")
    assert not proxies.trusts("127.0.0.1") and not proxies.trusts("garbage") and not proxies.trusts(None)

    def forwarded(*headers: tuple[str, str]):
        return proxies.forwarding([(k.lower().encode(), v.encode()) for k, v in headers])

    # What the client wrote itself is on the left; each proxy appends the address it saw.
    assert forwarded(("X-Forwarded-For", "198.51.100.9, 203.0.113.50")).client == "203.0.113.50"
    assert forwarded(("X-Forwarded-For", "garbage, 203.0.113.50, 10.0.0.7")).client == "203.0.113.50"
    assert forwarded(("X-Forwarded-For", "203.0.113.50"), ("X-Forwarded-For", "10.0.0.7")).client == "203.0.113.50"
    assert forwarded(("X-Forwarded-For", "10.0.0.9, 10.0.0.7")).client == "10.0.0.9"  # all proxies: the first
    assert forwarded(("X-Forwarded-For", "[2001:db8::1]:4711")).client == "2001:db8::1"
    assert forwarded(("X-Forwarded-For", "203.0.113.50:4711")).client == "203.0.113.50"
    both = forwarded(("X-Forwarded-Proto", "http, HTTPS"), ("X-Forwarded-Host", "queue.example.com:8443"))
    assert (both.client, both.scheme, both.host) == (None, "https", "queue.example.com:8443")
    for bad in (("X-Forwarded-For", "10.0.0.7, nonsense"), ("X-Forwarded-Proto", "gopher"),
                ("X-Forwarded-Host", "evil.example/path"), ("X-Forwarded-Host", "a b")):
        with pytest.raises(ProxyError):
            forwarded(bad)

    assert parse_public_origin("https://Queue.Example.com/") == "https://queue.example.com"
    assert parse_public_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert parse_public_origin(None) is None and parse_public_origin(" ") is None
    for bad in ("queue.example.com", "ftp://queue.example.com", "https://queue.example.com/queue",
                "https://user@queue.example.com", "https://queue.example.com:99999", "https://"):
        with pytest.raises(ValueError):
            parse_public_origin(bad)
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["proxy.internal"])


def test_settings_and_the_command_take_the_proxy_options(monkeypatch):
    from click.testing import CliRunner

    from queuer.cli import main
    from queuer.web.server import WebServerError, settings_from_env

    monkeypatch.setenv("QUEUER_WEB_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("QUEUER_WEB_PUBLIC_ORIGIN", "https://queue.example.com")
    settings = settings_from_env(False, False)
    assert settings.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8") and settings.public_origin == PUBLIC
    flags = settings_from_env(False, False, ("::1",), "http://localhost:8080")
    assert flags.trusted_proxies == ("::1/128",) and flags.public_origin == "http://localhost:8080"
    with pytest.raises(WebServerError):
        settings_from_env(False, False, ("not-an-address",))
    result = CliRunner().invoke(main, ["web", "--public-origin", "https://queue.example.com/sub"])
    assert result.exit_code == 1 and "no path" in result.output
    result = CliRunner().invoke(main, ["web", "--help"])
    assert "--trusted-proxy" in result.output and "--public-origin" in result.output
    assert "--revoke-sessions" in result.output


def test_forwarding_headers_are_believed_only_from_a_trusted_proxy(worker, web, db_config):
    behind = web(token=TOKEN, trusted_proxies=("127.0.0.2",), public_origin=PUBLIC,
                 _client={"client_host": "127.0.0.2", "host": "backend.invalid"})
    via = {"X-Forwarded-For": "198.51.100.9, 203.0.113.50", "X-Forwarded-Proto": "https"}
    form = behind.get("/login", headers=via)
    assert "secure" in form.headers["set-cookie"].lower()  # the browser uses https: cookies say so
    # (The test client talks http, so it would not send a Secure cookie back by itself.)
    cookie = {"Cookie": "queuer_csrf=" + re.search(r"queuer_csrf=([^;]+)", form.headers["set-cookie"]).group(1)}
    behind.client.cookies.clear()
    csrf = CSRF_FIELD.search(form.text).group(1)
    signed = behind.client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/"},
                                headers={**via, **cookie, "Origin": PUBLIC})
    assert signed.status_code == 303
    assert "secure" in signed.headers["set-cookie"].lower()
    behind.client.cookies.clear()
    offsite = behind.client.post("/login", data={"csrf": csrf, "token": TOKEN},
                                 headers={**via, **cookie, "Origin": "https://evil.example"})
    assert offsite.status_code == 403 and "Origin does not match" in offsite.text
    assert behind.get("/login", headers={"X-Forwarded-For": "10.0.0.7, nonsense"}).status_code == 400

    # A proxy that says which host the browser used (X-Forwarded-Host) needs no --public-origin.
    named = web(token=TOKEN, trusted_proxies=("127.0.0.2",), _client={"client_host": "127.0.0.2",
                                                                        "host": "backend.invalid"})
    csrf = named.csrf("/login")
    hosted = {"X-Forwarded-For": "203.0.113.51", "X-Forwarded-Host": "queue.example.com"}
    assert named.client.post("/login", data={"csrf": csrf, "token": TOKEN},
                             headers={**hosted, "Origin": "http://queue.example.com"}).status_code == 303
    assert named.client.post("/login", data={"csrf": csrf, "token": TOKEN},
                             headers={"X-Forwarded-For": "203.0.113.51",
                                      "Origin": "http://queue.example.com"}).status_code == 403

    # The same headers from anyone else are ignored: the peer is the client, and the scheme is http.
    direct = web(token=TOKEN, trusted_proxies=("127.0.0.2",), _client={"client_host": "203.0.113.7",
                                                                         "host": "queue.example"})
    csrf = direct.csrf("/login", headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"})
    forged = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    assert direct.client.post("/login", data={"csrf": csrf, "token": TOKEN},
                              headers={**forged, "Origin": "https://evil.example"}).status_code == 403
    plain = direct.client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/"}, headers=forged)
    assert plain.status_code == 303 and "secure" not in plain.headers["set-cookie"].lower()
    assert sql(db_config, "SELECT client FROM {schema}.web_audit ORDER BY id") == [
        ("203.0.113.50",), ("203.0.113.51",), ("203.0.113.7",)]


def test_without_a_token_proxied_requests_are_refused_unless_the_proxy_is_trusted(worker, web, db_config, caplog):
    caplog.set_level(logging.WARNING, logger="queuer.web")
    local = web()
    assert local.get("/").status_code == 200
    for header in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
                   {"X-Forwarded-Proto": "https"}):
        refused = local.get("/", headers=header)
        assert refused.status_code == 403, header
        assert "through a proxy" in refused.text and "Set a token" in refused.text
        assert db_config.schema not in refused.text  # nor the schema's name, to a stranger
        assert security_headers_ok(refused.headers)
    logged = [r for r in caplog.records if "through a proxy" in r.getMessage()]
    assert len(logged) == 1 and "127.0.0.1" in logged[0].getMessage()  # once a minute per proxy, not per request

    # A trusted proxy on this machine passes on loopback clients only, and must say who the client is.
    trusting = web(trusted_proxies=("127.0.0.1",))
    assert trusting.get("/", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    assert trusting.get("/", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    missing = trusting.get("/", headers={"X-Forwarded-Proto": "http"})
    assert missing.status_code == 403 and "without X-Forwarded-For" in missing.text


def test_security_headers_are_on_every_response(worker, web, db_config):
    w = web(token=TOKEN, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = {
        "page": w.get("/jobs", headers=auth), "login": w.get("/login"), "401 text": w.get("/jobs"),
        "401 page": w.get("/", headers={"Accept": "text/html"}), "400": w.get("/jobs?status=bogus", headers=auth),
        "404": w.get("/nope", headers=auth), "405": w.client.delete("/jobs", headers=auth),
        "403 csrf": w.client.post("/login", data={"token": TOKEN}),
        "redirect": w.client.post("/login", data={"csrf": w.csrf("/login"), "token": TOKEN}),
    }
    for what, answer in answers.items():
        assert security_headers_ok(answer.headers), (what, answer.status_code, dict(answer.headers))
    assert {a.status_code for a in answers.values()} == {200, 303, 400, 401, 403, 404, 405}
    static = w.get("/static/app.css")
    assert security_headers_ok(static.headers, static=True) and static.headers.get("cache-control") != "no-store"
    # The login and error pages do not name the schema to someone who has not signed in.
    assert db_config.schema not in answers["login"].text and db_config.schema not in answers["401 page"].text
    assert f"schema {db_config.schema}" in answers["page"].text


def test_a_500_is_a_page_with_the_headers_and_keeps_the_connection(worker, web_q, monkeypatch, caplog):
    from queuer.web.reads import WebReads
    from queuer.web.server import WebServer
    from queuer.web.settings import WebSettings

    def broken(self):
        raise RuntimeError("the overview broke: internal detail")

    monkeypatch.setattr(WebReads, "overview", broken)
    caplog.set_level(logging.ERROR, logger="queuer.web")
    with WebServer(web_q(), WebSettings()) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            seen = []
            for method, path in (("GET", "/"), ("GET", "/fragments/overview"), ("GET", "/jobs"), ("GET", "/"),
                                 ("GET", "/static/app.js"), ("GET", "/jobs?status=bogus")):
                conn.request(method, path, headers={"Accept": "text/html"})
                if not seen:
                    sock = conn.sock
                response = conn.getresponse()
                body = response.read().decode()
                headers = {k.lower(): v for k, v in response.getheaders()}
                assert security_headers_ok(headers, static=path.startswith("/static/")), (path, headers)
                assert headers.get("connection", "").lower() != "close"
                seen.append(response.status)
                if response.status == 500:
                    assert "500 · Unexpected error" in body and "internal detail" not in body
                assert conn.sock is sock  # the same connection, kept alive after each answer
        finally:
            conn.close()
    assert seen == [500, 500, 200, 500, 200, 400]
    logged = [r for r in caplog.records if r.getMessage().startswith("unexpected error on GET /")]
    assert len(logged) == 3 and logged[0].exc_info and "internal detail" in str(logged[0].exc_info[1])


# -- behind a real nginx ---------------------------------------------------------------------------


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def nginx(tmp_path: Path, upstream_port: int) -> Iterator[int]:
    """nginx on a loopback port in front of the server, as commonly set up, except that it rewrites Host:
    it connects from 127.0.0.2 (the address to trust) and appends the client's address to X-Forwarded-For."""
    from queuer.web.server import free_port

    port = free_port()
    root = tmp_path / "nginx"
    root.mkdir()
    temp = " ".join(f"{kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (root / "nginx.conf").write_text(f"""
daemon off;
master_process off;
error_log {root / 'error.log'} warn;
pid {root / 'nginx.pid'};
events {{ worker_connections 256; }}
http {{
    access_log {root / 'access.log'};
    {temp}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_bind 127.0.0.2;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host backend.invalid;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or _listening(port), timeout=15, message="nginx to listen")
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def browser(port: int):
    """An HTTP client on 127.0.0.3 (not the proxy's address), sending Origin with its POSTs as browsers do."""
    import httpx

    return httpx.Client(base_url=f"http://127.0.0.1:{port}", transport=httpx.HTTPTransport(local_address="127.0.0.3"),
                        follow_redirects=False, timeout=30)


@needs_nginx
def test_behind_nginx_sign_in_and_cancel_work_with_a_trusted_proxy_and_the_public_origin(worker, web_q, db_config,
                                                                                        tmp_path):
    from queuer.web.server import WebServer, free_port
    from queuer.web.settings import WebSettings

    backend_port = free_port()
    with nginx(tmp_path, backend_port) as port:
        public = f"http://127.0.0.1:{port}"
        settings = WebSettings(token=TOKEN, trusted_proxies=("127.0.0.2",), public_origin=public)
        with WebServer(web_q(), settings, port=backend_port), browser(port) as client:
            job = worker.add_job("held")
            login = client.get("/login")
            assert login.status_code == 200 and security_headers_ok(login.headers)
            csrf = CSRF_FIELD.search(login.text).group(1)
            signed = client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/jobs"},
                                 headers={"Origin": public, "X-Forwarded-For": "198.51.100.66"})  # a lie, ignored
            assert signed.status_code == 303 and signed.headers["location"] == "/jobs"
            page = client.get(f"/jobs/{job.rid}")
            assert page.status_code == 200 and "Cancel job" in page.text
            csrf = CSRF_FIELD.search(page.text).group(1)
            cancelled = client.post(f"/jobs/{job.rid}/cancel", data={"csrf": csrf}, headers={"Origin": public})
            assert cancelled.status_code == 303, cancelled.text
            assert worker.get_job(job.rid).status.value == "CANCELLED"
            assert client.get(cancelled.headers["location"]).status_code == 200
        rows = sql(db_config, "SELECT action, client, credential FROM {schema}.web_audit ORDER BY id")
        # The real client's address, as nginx saw it; not the proxy's, not what the client claimed.
        assert rows == [("sign-in", "127.0.0.3", "operator session"), ("cancel", "127.0.0.3", "operator session")]

        # Without --public-origin, the rewritten Host makes the browser's forms look foreign.
        held = worker.add_job("held")
        settings = WebSettings(token=TOKEN, trusted_proxies=("127.0.0.2",))
        with WebServer(web_q(), settings, port=backend_port), browser(port) as client:
            csrf = CSRF_FIELD.search(client.get("/login").text).group(1)
            refused = client.post("/login", data={"csrf": csrf, "token": TOKEN}, headers={"Origin": public})
            assert refused.status_code == 403 and "--public-origin" in refused.text
            bearer = client.post(f"/jobs/{held.rid}/cancel", headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 303  # a script with the token needs no Origin
        assert sql(db_config, "SELECT client FROM {schema}.web_audit ORDER BY id DESC LIMIT 1") == [("127.0.0.3",)]


@needs_nginx
def test_behind_nginx_a_server_without_a_token_refuses(worker, web_q, db_config, tmp_path, caplog):
    from queuer.web.server import WebServer, free_port
    from queuer.web.settings import WebSettings

    caplog.set_level(logging.WARNING, logger="queuer.web")
    backend_port = free_port()
    with nginx(tmp_path, backend_port) as port:
        with WebServer(web_q(), WebSettings(), port=backend_port), browser(port) as client:
            # Directly, from this machine, it answers; through the proxy, nobody gets the queue.
            direct = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=10)
            direct.request("GET", "/")
            assert direct.getresponse().status == 200
            direct.close()
            for path in ("/", "/jobs", "/login", "/static/app.css"):
                refused = client.get(path)
                assert refused.status_code == 403, path
                assert "through a proxy" in refused.text
                assert security_headers_ok(refused.headers, static=path.startswith("/static/"))
                assert db_config.schema not in refused.text and "held" not in refused.text
            job = worker.add_job("held")
            assert client.post(f"/jobs/{job.rid}/cancel", data={}).status_code == 403
            assert worker.get_job(job.rid).status.value == "QUEUED"
    logged = [r.getMessage() for r in caplog.records if "through a proxy" in r.getMessage()]
    assert len(logged) == 1 and "127.0.0.2" in logged[0] and "x-forwarded-for" in logged[0]


def test_a_rebound_page_cannot_pose_as_the_trusted_proxy_on_this_machine(worker, web):
    """A page whose name was rebound to 127.0.0.1 reaches the server from loopback, the trusted proxy's
    address, and could send X-Forwarded-Host: localhost itself: without a token it is still refused."""
    w = web(trusted_proxies=("127.0.0.1",), _client={"client_host": "127.0.0.1", "host": "attacker.example"})
    posing = w.get("/jobs", headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "localhost"})
    assert posing.status_code == 403 and "loopback name" in posing.text


def test_a_host_header_cannot_shape_the_path_the_guard_sees(worker, web):
    w = web(token=TOKEN, _client={"client_host": "203.0.113.7", "host": "queue.example"})
    for host in ("queue.example/static/x?", "q/login?"):
        answer = w.get("/jobs", headers={"Host": host})
        assert answer.status_code in (400, 401), (host, answer.status_code)
