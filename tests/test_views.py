"""Pages need a login; the admin lists the sample instructions to staff."""

import pytest
from django.urls import reverse

from tests.factories import InstructionFactory

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    for url in [reverse("home"), "/media/images/ab/abc.png"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_login_page_is_served_and_logs_in(client, alice):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    response = client.post(reverse("login"), {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_staff_see_instructions_in_the_admin(client, bob, alice):
    InstructionFactory(question="What is on the <b>table</b>?")
    client.force_login(bob)
    response = client.get(reverse("admin:webapp_instruction_changelist"))
    assert response.status_code == 200
    assert b"What is on the &lt;b&gt;table&lt;/b&gt;?" in response.content
    client.force_login(alice)
    assert client.get(reverse("admin:webapp_instruction_changelist")).status_code == 302


def test_stored_images_are_served_with_a_fixed_type(client, alice, media_root):
    from django.core.management import call_command

    call_command("load_samples")
    client.force_login(alice)
    from webapp.models import Instruction

    image = Instruction.objects.first().image
    response = client.get("/" + "media/" + image.name)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert client.get("/media/images/ab/" + "0" * 64 + ".png").status_code == 404
