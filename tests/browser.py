"""Real-browser tests' shared parts: Debian's Chromium driven by Python playwright against a live server.

`.ci/run` installs chromium; `playwright install` is never used (it downloads browsers). A browser test module
sets `pytestmark = BROWSER_MARKS` and uses the `browser` / `page` fixtures (tests/conftest.py).
"""

import os
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def store_images(iteration):
    """Real image files for the iteration's instructions, so the pages show them."""
    from django.conf import settings
    from PIL import Image

    for instruction in iteration.instructions.all():
        path = Path(settings.MEDIA_ROOT) / instruction.image.name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (200, 80, 40)).save(path)


def log_in(page, username):
    page.goto(reverse("login"))
    page.fill("#id_username", username)
    page.fill("#id_password", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
