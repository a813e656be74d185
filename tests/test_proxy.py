"""The production proxy's config (docker/nginx.conf.template) run by a real nginx in front of the real app under
gunicorn: it parses, it terminates TLS, a slow client holds no gunicorn thread (the proxy buffers the request),
and the client cannot claim HTTPS itself (the proxy overwrites X-Forwarded-Proto). Needs Debian's nginx
(`.ci/run` installs it)."""

import http.client
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not shutil.which("nginx"), reason="no nginx (apt-get install nginx-light)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def nginx_config(tmp_path: Path, app_port: int, https_port: int) -> Path:
    """The template as the nginx image fills it in, its upstreams and ports moved to this machine, in a minimal
    main config (no root, no system paths)."""
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", tls / "privkey.pem", "-out", tls / "fullchain.pem"],
        check=True, capture_output=True,
    )  # fmt: skip
    site = (ROOT / "docker" / "nginx.conf.template").read_text()
    site = site.replace("${IMPORT_MAX_BYTES}", str(settings.IMPORT_MAX_BYTES))
    site = site.replace("server web:8000;", f"server 127.0.0.1:{app_port};")
    site = site.replace("http://flower:5555", f"http://127.0.0.1:{free_port()}")
    site = site.replace("/etc/nginx/tls", str(tls))
    site = re.sub(r"listen \[::\]:\d+[^;]*;", "", site)
    site = re.sub(r"listen 443 ", f"listen 127.0.0.1:{https_port} ", site)
    site = re.sub(r"listen (80|5555);", lambda _: f"listen 127.0.0.1:{free_port()};", site)
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/site.conf; }}\n"
    )
    return main


@pytest.fixture
def served(tmp_path):
    """gunicorn with one thread, production settings, and nginx in front: (app port, proxy's HTTPS port)."""
    app_port, https_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {
        "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto", "VAR_DIR": str(tmp_path / "var"),
    }  # fmt: skip
    # As the image does at build time: the styled error pages name hashed static files from the manifest.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    app = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "--bind", f"127.0.0.1:{app_port}",
         "--worker-class", "gthread", "--workers", "1", "--threads", "1", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gunicorn.log", "wb"),
    )  # fmt: skip
    config = nginx_config(tmp_path, app_port, https_port)
    proxy = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(app_port, app)
        wait_for_port(https_port, proxy)
        yield app_port, https_port
    finally:
        for proc in (proxy, app):
            proc.terminate()
            proc.wait(timeout=10)


def trusting() -> ssl.SSLContext:
    """A TLS client context that takes the test's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def get(port: int, path: str, tls: bool, headers=None, timeout: float = 5) -> http.client.HTTPResponse:
    if tls:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=trusting())
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("GET", path, headers=headers or {})
    return connection.getresponse()


def slow_post(port: int, tls: bool) -> socket.socket:
    """A POST that sends its headers and a few bytes of a larger body, then stalls."""
    sock = socket.create_connection(("127.0.0.1", port))
    if tls:
        sock = trusting().wrap_socket(sock)
    sock.sendall(b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nusername=")
    return sock


def test_the_config_parses(tmp_path):
    config = nginx_config(tmp_path, free_port(), free_port())
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_slow_client_holds_the_proxy_not_the_app(served):
    app_port, https_port = served
    stalled = slow_post(app_port, tls=False)
    with pytest.raises(TimeoutError):  # straight to gunicorn, its one thread waits for the body
        get(app_port, "/no-such-page/", tls=False, timeout=2)
    stalled.close()
    stalled = slow_post(https_port, tls=True)
    started = time.monotonic()
    assert get(https_port, "/no-such-page/", tls=True).status == 404
    assert time.monotonic() - started < 2
    stalled.close()


def test_a_client_cannot_claim_https_past_the_proxy(served):
    app_port, https_port = served
    forged = {"X-Forwarded-Proto": "https"}
    # Straight to the app a client could claim HTTPS; through the proxy the header is the proxy's.
    assert get(app_port, "/no-such-page/", tls=False, headers=forged).status == 404
    assert get(app_port, "/no-such-page/", tls=False).status == 301
    through_proxy = get(https_port, "/no-such-page/", tls=True, headers={"X-Forwarded-Proto": "http"})
    assert through_proxy.status == 404  # the proxy said https: no redirect
