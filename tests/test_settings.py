"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp import env

ROOT = Path(__file__).resolve().parent.parent


ENGINE = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"


def django_setup(tmp_path, code=ENGINE, **environ):
    """Import the settings in a fresh interpreter with the given environment, then run `code`."""
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL"}}
    clean.update(VAR_DIR=str(tmp_path), **environ)
    code = "import django; django.setup(); " + code
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean | {"DJANGO_SETTINGS_MODULE": "webapp.settings"},
        capture_output=True,
        text=True,
    )


def test_it_runs_on_sqlite_by_default(tmp_path):
    result = django_setup(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    """A server started with a key and hosts but no DEBUG shows no debug page (a missing URL is a plain 404)."""
    code = (
        # The styled 404 links hashed static files: collected first, as the production image does.
        "from django.core.management import call_command; call_command('collectstatic', '--noinput', verbosity=0); "
        "from django.conf import settings; from django.test import Client; "
        "r = Client().get('/no-such-page/', secure=True, HTTP_HOST='studio.example.com'); "
        "print(settings.DEBUG, r.status_code, b'URLconf' in r.content)"
    )
    production = django_setup(tmp_path, code, SECRET_KEY="k" * 50, ALLOWED_HOSTS="studio.example.com")
    assert production.stdout.strip().splitlines()[-1] == "False 404 False", production.stderr
    development = django_setup(tmp_path, code, DEBUG="1", ALLOWED_HOSTS="studio.example.com")
    assert development.stdout.strip().splitlines()[-1] == "True 404 True", development.stderr


def test_it_requires_a_secret_key_when_debug_is_off(tmp_path):
    result = django_setup(tmp_path, DEBUG="0", ALLOWED_HOSTS="studio.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off" in result.stderr


def test_it_reads_the_secret_key_from_a_file(tmp_path):
    (tmp_path / "key").write_text("s" * 60)
    result = django_setup(
        tmp_path,
        DEBUG="0",
        ALLOWED_HOSTS="studio.example.com",
        SECRET_KEY_FILE=str(tmp_path / "key"),
        DATABASE_URL="postgres://u@db:5432/studio",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"


def test_it_names_a_bad_boolean(tmp_path):
    result = django_setup(tmp_path, DEBUG="maybe")
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_typed_helpers(monkeypatch):
    monkeypatch.setenv("N", "12")
    monkeypatch.setenv("HOSTS", "a.example, b.example ,")
    monkeypatch.setenv("FLAG", "off")
    assert env.env_int("N", 1) == 12
    assert env.env_list("HOSTS", []) == ["a.example", "b.example"]
    assert env.env_bool("FLAG", True) is False
    assert env.env_int("UNSET_VARIABLE", 7) == 7
    monkeypatch.setenv("N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="N='twelve' is not an integer"):
        env.env_int("N", 1)
    with pytest.raises(ImproperlyConfigured, match="UNSET_VARIABLE is required"):
        env.env_str("UNSET_VARIABLE")


def test_celery_is_configured_for_reliable_work(settings):
    from webapp.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert {q.name for q in app.conf.task_queues} == {"gpu", "cpu"}
    assert app.conf.broker_url == settings.CELERY_BROKER_URL


def test_make_manage_runs_a_command_against_the_demos_settings_quietly(tmp_path):
    """Found on first use: the README's `python manage.py …` failed without DEBUG=1 ("SECRET_KEY … required"), and
    every command printed "AXES: BEGIN"."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL")}
    result = subprocess.run(
        ["make", "-s", "manage", "ARGS=check"],
        cwd=ROOT,
        env=environment | {"VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "AXES" not in result.stdout + result.stderr
