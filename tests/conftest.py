"""Shared fixtures: tiny local models built once per test session (no download, ~1 s)."""

import pytest


def pytest_collection_modifyitems(items):
    """A test on real workers or manage.py subprocesses (the `processes` fixture) is marked `workers`."""
    for item in items:
        if "processes" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.workers)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hasher():
    """Users are made and logged in by the hundred: hash their passwords with one MD5 round, not 1M of PBKDF2."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A MODELS_DIR holding tiny-llava, small-llava and tiny-lm, built deterministically."""
    from labeling.tiny_models import build_tiny_models

    path = tmp_path_factory.mktemp("models")
    build_tiny_models(path)
    return path


@pytest.fixture
def media_root(settings, tmp_path):
    """Stored images go to a fresh folder for the test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def alice(db):
    """A reviewer (member of the `reviewer` group), not staff."""
    from django.contrib.auth.models import Group

    from tests.factories import UserFactory

    user = UserFactory(username="alice")
    user.groups.add(Group.objects.get_or_create(name="reviewer")[0])
    return user


@pytest.fixture
def bob(db):
    """Staff: may launch iterations and approve review gates."""
    from tests.factories import UserFactory

    return UserFactory(username="bob", is_staff=True, is_superuser=True)


@pytest.fixture
def charlie(db):
    """Logged in, but neither reviewer nor staff."""
    from tests.factories import UserFactory

    return UserFactory(username="charlie")


@pytest.fixture
def processes(transactional_db, tiny_models_dir, media_root, tmp_path):
    """Start real Celery workers / manage.py commands on this test's database; all stopped afterwards."""
    from tests.workers import Processes, purge_queues

    purge_queues()
    procs = Processes(tmp_path, tiny_models_dir)
    yield procs
    procs.stop_all()
