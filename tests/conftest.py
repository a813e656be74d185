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


@pytest.fixture(autouse=True)
def fresh_cache():
    """Counts kept in the cache (searches a minute) start from nothing: a user's pk is reused from test to test."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A MODELS_DIR holding tiny-llava, small-llava and tiny-lm, built deterministically."""
    from labeling.tiny_models import build_tiny_models

    path = tmp_path_factory.mktemp("models")
    build_tiny_models(path)
    return path


@pytest.fixture(autouse=True)
def installed_models(settings, tiny_models_dir):
    """The forms take only installed models (webapp/places.py): the tiny ones are, unless a test says otherwise."""
    settings.MODELS_DIR = tiny_models_dir


@pytest.fixture
def install(settings, tmp_path, tiny_models_dir):
    """install(*names): a MODELS_DIR of the test's own where the tiny models and these names are installed (each
    a copy of tiny-llava's config: enough for a form, which checks the folder, not for loading)."""
    root = tmp_path / "installed-models"
    root.mkdir()
    for model in tiny_models_dir.iterdir():
        (root / model.name).symlink_to(model)
    settings.MODELS_DIR = root

    def install(*names):
        for name in names:
            (root / name).mkdir(parents=True)
            (root / name / "config.json").write_text((tiny_models_dir / "tiny-llava" / "config.json").read_text())

    return install


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


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (tests/browser.py)."""
    import os

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make between steps
    # are plain synchronous ones, so Django's guard against ORM calls inside async code does not apply.
    unsafe = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    if unsafe is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = unsafe


@pytest.fixture
def page(browser, live_server, media_root):
    """A fresh browser context on the live server, 10 s default timeout."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def engines():
    """Models loaded through webapp.jobs.engines are dropped after the test."""
    yield
    from webapp.jobs.engines import release_models

    release_models()
