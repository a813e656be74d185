"""Production: the compose file validates, the settings pass `check --deploy`, and every response carries the
security headers (Content-Security-Policy, nosniff, X-Frame-Options). DEBUG=0 without a key: tests/test_settings.py.
"""

import fnmatch
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.review_data import reviewing_iteration
from webapp.accounts.session_renewal import RENEWED

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"  # tests/factories.py
DOCKER = ROOT / "docker"
POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
# What the CSP blocks: inline scripts (other than JSON data), <style>, style="", on*="" handlers, javascript: URLs.
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>|<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:", re.I
)
needs_compose = pytest.mark.skipif(
    not shutil.which("docker-compose"), reason="no docker-compose binary (apt-get install docker-compose)"
)


ENV_FILES = [".env", "app.env", "models.env", "flower.env"]


def compose_config(tmp_path, **values):
    """`docker-compose config` on docker/compose.yaml with each ENV.example as its ENV, VAR=value lines replaced.

    The copies keep the operator's own env files (git-ignored) out of the test; the build contexts (`..`)
    then point at tmp_path, which `config` accepts without reading them.
    """
    (tmp_path / "docker").mkdir()
    shutil.copy(DOCKER / "compose.yaml", tmp_path / "docker" / "compose.yaml")
    envs = {name: (DOCKER / f"{name}.example").read_text() for name in ENV_FILES}
    for variable, value in values.items():
        found = 0
        for name, text in envs.items():
            envs[name], count = re.subn(rf"^{variable}=.*$", f"{variable}={value}", text, flags=re.M)
            found += count
        assert found == 1, f"{variable} is not in exactly one of the .env examples"
    for name, text in envs.items():
        (tmp_path / "docker" / name).write_text(text)
    return subprocess.run(
        ["docker-compose", "-f", "docker/compose.yaml", "config"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )


def filled_in_config(tmp_path):
    result = compose_config(
        tmp_path,
        SECRET_KEY="k" * 50,
        POSTGRES_PASSWORD="pg",
        APP_DB_PASSWORD="app",
        REDIS_PASSWORD="rd",
        FLOWER_BASIC_AUTH="ops:pw",
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def manage(tmp_path, *args, **environ):
    """manage.py in a fresh interpreter with production settings (DEBUG=0, a random 50+ char key)."""
    # Not the test run's own switches either (test_browser.py sets DJANGO_ALLOW_ASYNC_UNSAFE for playwright).
    drop = {"SECRET_KEY", "SECRET_KEY_FILE", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL", "CSRF_TRUSTED_ORIGINS"}
    drop |= {"DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SECURE_")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VAR_DIR": str(tmp_path),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "studio.example.com",
    }
    env |= environ
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@needs_compose
def test_the_compose_file_validates(tmp_path):
    services = filled_in_config(tmp_path)["services"]
    assert set(services) == {"proxy", "db", "redis", "migrate", "web", "worker-cpu", "beat", "worker-gpu", "flower"}
    assert "healthcheck" in services["db"] and "healthcheck" in services["redis"]
    assert "pgdata:/var/lib/postgresql/data:rw" in services["db"]["volumes"]
    for name in ["web", "worker-cpu", "worker-gpu"]:
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
        assert {"media:/data/media:rw", "models:/data/models:rw"} <= set(services[name]["volumes"]), name
        assert services[name]["environment"]["DEBUG"] == "0"
    assert services["worker-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert "beat" in services["beat"]["command"]
    # The app connects as a role that owns nothing; only migrate connects as the owner, and then grants it its rows.
    assert services["web"]["environment"]["DATABASE_URL"] == "postgres://studio_app:app@db:5432/studio"
    assert services["worker-gpu"]["environment"]["DATABASE_URL"] == "postgres://studio_app:app@db:5432/studio"
    assert services["migrate"]["environment"]["DATABASE_URL"] == "postgres://studio:pg@db:5432/studio"
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "grant_app_role studio_app --password-env APP_DB_PASSWORD" in services["migrate"]["command"]
    assert "migrate" not in services["web"]["command"]
    assert services["worker-cpu"]["environment"]["CELERY_BROKER_URL"] == "redis://:rd@redis:6379/0"


@needs_compose
def test_only_the_proxy_publishes_a_port_and_flower_only_on_localhost(tmp_path):
    services = filled_in_config(tmp_path)["services"]
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]
    ports = services["proxy"]["ports"]
    assert {(p["published"], p["target"], p.get("host_ip")) for p in map(port_mapping, ports)} == {
        ("80", 80, None), ("443", 443, None), ("5555", 5555, "127.0.0.1")
    }  # fmt: skip
    # The web and Flower are on the proxy's network; the database and Redis are not.
    assert set(services["proxy"]["networks"]) == {"edge"}
    assert "edge" in services["web"]["networks"] and "edge" in services["flower"]["networks"]
    assert "edge" not in services["db"].get("networks", {}) and "edge" not in services["redis"].get("networks", {})


def port_mapping(port):
    """docker-compose 1.x writes "HOST_IP:PUBLISHED:TARGET/PROTO" strings, 2.x mappings: the same as a mapping."""
    if isinstance(port, dict):
        return {**port, "published": str(port["published"]), "target": int(port["target"])}
    *host_ip, published, target = port.split("/")[0].split(":")
    return {"published": published, "target": int(target), "host_ip": host_ip[0] if host_ip else None}


@needs_compose
def test_each_container_gets_only_the_secrets_it_needs(tmp_path):
    services = filled_in_config(tmp_path)["services"]
    environment = {name: set(service.get("environment", {})) for name, service in services.items()}
    database = {"DATABASE_URL", "POSTGRES_PASSWORD"}
    model_tokens = {"HF_TOKEN", "OPENAI_API_KEY"}
    assert environment["proxy"] == {"IMPORT_MAX_BYTES", "NGINX_ENVSUBST_FILTER"}
    assert environment["db"] == {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}
    assert environment["redis"] == {"REDIS_PASSWORD"}
    assert environment["flower"] == {"CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"}
    assert not environment["beat"] & (database | model_tokens | {"FLOWER_BASIC_AUTH"})
    assert environment["migrate"] & model_tokens == set() and "REDIS_PASSWORD" not in environment["migrate"]
    for name in ["web", "worker-cpu"]:
        assert "DATABASE_URL" in environment[name] and "SECRET_KEY" in environment[name]
        assert not environment[name] & (model_tokens | {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH"})
    assert model_tokens <= environment["worker-gpu"]
    assert "FLOWER_BASIC_AUTH" not in environment["worker-gpu"]


@needs_compose
def test_the_proxy_allows_the_bodies_the_app_allows_and_sets_the_headers_the_app_trusts(tmp_path):
    services = filled_in_config(tmp_path)["services"]
    limit = services["proxy"]["environment"]["IMPORT_MAX_BYTES"]
    assert limit == services["web"]["environment"]["IMPORT_MAX_BYTES"] == str(settings.IMPORT_MAX_BYTES)
    template = (DOCKER / "nginx.conf.template").read_text()
    assert re.search(r"^\s*client_max_body_size \$\{IMPORT_MAX_BYTES\};$", template, re.M)
    mounted = {volume.split(":")[1] for volume in services["proxy"]["volumes"]}
    assert "/etc/nginx/templates/default.conf.template" in mounted and "/etc/nginx/tls" in mounted
    web = services["web"]["environment"]
    header = {"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto", "CLIENT_ADDRESS_HEADER": "X-Real-IP"}
    for setting, name in header.items():
        assert web[setting] == name
        assert re.search(rf"^\s*proxy_set_header {name} \S+;$", template, re.M), name
    assert "gthread" in services["web"]["command"]


@needs_compose
def test_the_compose_file_refuses_to_start_without_a_database_password(tmp_path):
    result = compose_config(tmp_path)  # the examples as shipped: every password empty
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in docker/.env" in result.stderr


def test_the_image_does_not_keep_its_build_time_key():
    """collectstatic needs a key at build time; it must not reach the image's environment (settings have no
    fallback, so a container without SECRET_KEY refuses to start: tests/test_settings.py)."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENV|ARG)\b[^\n]*SECRET_KEY", dockerfile, re.M)
    assert re.search(r"SECRET_KEY=\S+ [^\n]*\\\n\s*python manage.py collectstatic", dockerfile)
    assert re.search(r"^USER app$", dockerfile, re.M)
    assert re.search(r"^USER app$", (DOCKER / "Dockerfile.gpu").read_text(), re.M)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (its patterns as Docker reads them: a pattern
    matches the path or a folder above it; ** is any number of folders)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(
        fnmatch.fnmatchcase(prefix, pattern) or fnmatch.fnmatchcase(prefix, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


@pytest.mark.parametrize(
    "secret",
    ["docker/.env", "docker/app.env", "docker/models.env", "docker/flower.env", "docker/secret_key",
     "docker/tls/privkey.pem", "docker/tls/fullchain.pem", "deploy/server.key"],
)  # fmt: skip
def test_no_secret_goes_into_an_image(secret):
    """Found by an attack: `COPY . .` would have copied the per-service env files and the TLS key into both
    images (.dockerignore named only docker/.env and docker/secret_key)."""
    assert dockerignored(secret)


def test_the_build_context_keeps_the_code_and_the_examples():
    for kept in ["webapp/settings.py", "docker/app.env.example", "docker/nginx.conf.template", "requirements.txt"]:
        assert not dockerignored(kept), kept


def test_the_images_never_download_from_the_hub():
    """Model names resolve under MODELS_DIR; an image that reached the hub with HF_TOKEN could fetch code."""
    for name in ["Dockerfile", "Dockerfile.gpu"]:
        assert re.search(r"^\s*HF_HUB_OFFLINE=1\b", (DOCKER / name).read_text(), re.M), name


def test_the_images_run_with_debug_off():
    for name in ["Dockerfile", "Dockerfile.gpu"]:
        assert re.search(r"^ENV DEBUG=0 ", (DOCKER / name).read_text(), re.M), name


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "weakened, warning",
    [({"SECURE_HSTS_SECONDS": "0"}, "security.W004"), ({"SECURE_SSL_REDIRECT": "0"}, "security.W008")],
)
def test_the_deploy_check_catches_a_weakened_setting(tmp_path, weakened, warning):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **weakened)
    assert result.returncode != 0
    assert warning in result.stderr


def test_production_refuses_a_wildcard_host(tmp_path):
    result = manage(tmp_path, "check", ALLOWED_HOSTS="*")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must name the site's hosts when DEBUG is off" in result.stderr


def test_the_proxy_ssl_header_is_trusted_only_when_named(tmp_path):
    show = ["shell", "--no-imports", "-c", "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"]
    assert manage(tmp_path, *show).stdout.strip() == "None"
    named = manage(tmp_path, *show, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert named.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", named.stderr


@pytest.mark.django_db
def test_every_response_carries_the_security_headers(client, alice):
    anonymous = [client.get(reverse("login")), client.get(reverse("home")), client.get("/no-such-page/")]
    client.force_login(alice)
    for response in [*anonymous, client.get(reverse("home"))]:
        assert response["Content-Security-Policy"] == POLICY
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]


@pytest.mark.django_db
def test_what_a_logged_in_user_is_shown_is_never_cached(client, alice, media_root):
    iteration = reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])
    instruction = iteration.instructions.get()
    (Path(media_root) / instruction.image.name).parent.mkdir(parents=True)
    (Path(media_root) / instruction.image.name).write_bytes(b"not looked at")
    client.force_login(alice)
    pages = [reverse("home"), reverse("review-pairs"), reverse("iteration", args=[iteration.number]), "/no-such-page/"]
    pages.append("/" + settings.MEDIA_URL + instruction.image.name)
    for path in pages:
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"], path


def test_a_session_ends_at_browser_close_and_after_an_idle_hour(settings):
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert settings.SESSION_COOKIE_AGE == 3600


def renewed_at(session: Session, seconds_ago: int) -> None:
    """Make the stored session's last renewal `seconds_ago` old, its expiry left as it is."""
    data = session.get_decoded() | {RENEWED: int(time.time()) - seconds_ago}
    Session.objects.filter(pk=session.pk).update(session_data=SessionStore().encode(data))


@pytest.mark.django_db
def test_a_request_renews_the_session_once_a_minute_and_an_idle_one_is_logged_out(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["expires"] == "" and cookie["max-age"] == ""  # a browser-session cookie
    session = Session.objects.get()
    renewed_at(session, seconds_ago=61)
    Session.objects.update(expire_date=timezone.now() + timedelta(minutes=1))  # nearly idle for an hour
    assert client.get(reverse("home")).status_code == 200
    renewed = Session.objects.get(pk=session.pk).expire_date
    assert renewed > timezone.now() + timedelta(minutes=59)

    # Renewed under a minute ago: the next requests write nothing, and the session keeps that expiry.
    Session.objects.update(expire_date=timezone.now() + timedelta(minutes=30))
    assert client.get(reverse("home")).status_code == 200
    assert Session.objects.get(pk=session.pk).expire_date < timezone.now() + timedelta(minutes=31)

    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))  # idle past the hour
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_a_request_within_the_minute_does_not_write_the_session(client, alice):
    client.force_login(alice)
    client.get(reverse("home"))  # the first request after the login renews it
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("home")).status_code == 200
    assert not [q for q in queries.captured_queries if "django_session" in q["sql"] and "UPDATE" in q["sql"]]


@pytest.mark.django_db
def test_the_base_layout_needs_nothing_the_policy_blocks(client, alice):
    pages = [client.get(reverse("login"))]
    client.force_login(alice)
    pages.append(client.get(reverse("home")))
    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200
        assert INLINE.findall(html) == []
        assert '<link rel="stylesheet" href="/static/webapp/app.css">' in html
