"""The project's settings for the tests, with DEBUG on unless the environment says otherwise (it is off by
default). Set in the environment, so the workers and manage.py subprocesses the tests start inherit it."""

import os

os.environ.setdefault("DEBUG", "1")

from webapp.settings import *  # noqa: E402, F403
