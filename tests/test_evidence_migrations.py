"""The evidence work's migrations: iterations made before per-instruction seeds keep the seeds they were drawn
with (0020); the validation split and repeated claims keep SQLite's triggers (0022)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from webapp.iterations.config import config
from webapp.models import Iteration

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db(transaction=True)
def test_iterations_made_before_keep_shared_seeds():
    executor = MigrationExecutor(connection)
    before, after = [("webapp", "0019_import_heartbeat")], executor.loader.graph.leaf_nodes("webapp")
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("webapp", "Iteration")
    old.objects.create(number=1, policy="p", labeler="l", config={"n": 4})
    old.objects.create(number=2, policy="p", labeler="l", config={"seeding": "per_instruction"})

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    assert config(Iteration.objects.get(number=1))["seeding"] == "shared"
    assert Iteration.objects.get(number=1).config["n"] == 4
    assert config(Iteration.objects.get(number=2))["seeding"] == "per_instruction"
    assert config(Iteration(number=3, policy="p", labeler="l"))["seeding"] == "per_instruction"  # new ones


def test_sqlite_keeps_every_trigger_through_the_table_rebuilds(tmp_path):
    """Migration 0022 rebuilds webapp_instruction and webapp_response on SQLite (the demo's database): the
    triggers that name them, and those on them, are all there after it, forwards and back."""
    database = tmp_path / "db.sqlite3"
    env = os.environ | {"DATABASE_URL": f"sqlite:///{database}", "VAR_DIR": str(tmp_path), "DEBUG": "1"}

    def migrate(*target):
        subprocess.run([sys.executable, "manage.py", "migrate", *target, "-v0"], cwd=ROOT, env=env, check=True)
        with sqlite3.connect(database) as db:
            return sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"))

    before = migrate("webapp", "0021")
    assert len(before) == 9
    after = migrate()
    assert set(before) < set(after) and len(after) == 13  # 0024 adds the reviews' and the no-replace guards
    assert migrate("webapp", "0021") == before
