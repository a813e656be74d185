"""Iterations made before per-instruction seeds keep the seeds they were drawn with (migration 0020)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from webapp.iterations.config import config
from webapp.models import Iteration


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
