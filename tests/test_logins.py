"""Login throttling (django-axes): after LOGIN_FAILURE_LIMIT failed logins for one username, or from one address,
every login for it is refused, the right password too, until the lockout passes or staff delete the attempt in
the admin. Failed and successful logins are logged."""

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.test_production import manage

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"  # tests/factories.py
LOCKED = "Too many failed logins for this account or from this address"


def log_in(client, username, password, url="/login/", address=None):
    headers = {"HTTP_X_REAL_IP": address} if address else {}
    return client.post(url, {"username": username, "password": password}, **headers)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, username, times, url="/login/", address=None):
    """`times` wrong passwords: each answered with the form's error, the one reaching the limit with the lockout."""
    for _ in range(times):
        response = log_in(client, username, "wrong password", url, address)
        if response.status_code != 429:
            assert response.status_code == 200
            assert "correct username and password" in response.content.decode()
    return response


def test_a_locked_out_username_is_refused_with_the_right_password_until_staff_unlock_it(client, alice, bob, settings):
    fail(client, "alice", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, "alice", PASSWORD).status_code == 302  # under the limit: the right password works
    client.logout()
    fail(client, "alice", settings.AXES_FAILURE_LIMIT - 1)  # a success reset the count: the limit again
    assert fail(client, "alice", 1).status_code == 429  # the failure reaching the limit locks

    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert LOCKED in response.content.decode() and "15 minutes" in response.content.decode()
    assert not logged_in(client)

    staff = Client()
    staff.force_login(bob)
    attempt = AccessAttempt.objects.get(username="alice")
    changelist = staff.get(reverse("admin:axes_accessattempt_changelist"))
    assert "alice" in changelist.content.decode()
    delete = staff.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert delete.status_code == 302 and not AccessAttempt.objects.exists()

    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert logged_in(client)


def test_the_admin_login_is_locked_out_too(client, bob, settings):
    fail(client, "bob", settings.AXES_FAILURE_LIMIT, url="/admin/login/")
    response = log_in(client, "bob", PASSWORD, url="/admin/login/")
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert not logged_in(client)
    # The same username is locked on the site's login page as well.
    assert log_in(client, "bob", PASSWORD).status_code == 429


def test_a_lockout_passes_after_the_lockout_time(client, alice, settings):
    fail(client, "alice", settings.AXES_FAILURE_LIMIT)
    assert log_in(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_an_address_guessing_many_usernames_is_locked_out_and_others_are_not(client, alice, bob, settings):
    """Behind the proxy the address is the one it names (CLIENT_ADDRESS_HEADER), not the proxy's own."""
    settings.CLIENT_ADDRESS_HEADER = "X-Real-IP"
    for n in range(settings.AXES_FAILURE_LIMIT):
        fail(client, f"guess{n}", 1, address="203.0.113.7")
    assert log_in(client, "bob", PASSWORD, address="203.0.113.7").status_code == 429
    assert log_in(client, "alice", PASSWORD, address="198.51.100.2").status_code == 302


def test_the_address_header_is_ignored_unless_named(client, alice, settings):
    """Unnamed, a client could pick a fresh address for every guess: its connection's address counts instead."""
    assert settings.CLIENT_ADDRESS_HEADER == ""
    for n in range(settings.AXES_FAILURE_LIMIT):
        fail(client, f"guess{n}", 1, address=f"203.0.113.{n}")
    assert log_in(client, "alice", PASSWORD, address="198.51.100.2").status_code == 429


def test_failed_and_successful_logins_are_logged(client, alice, caplog):
    with caplog.at_level(logging.INFO, logger="axes"):
        fail(client, "alice", 1)
        log_in(client, "alice", PASSWORD)
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    succeeded = [r.getMessage() for r in caplog.records if "Successful login" in r.getMessage()]
    assert any('username: "alice"' in m and 'ip_address: "127.0.0.1"' in m for m in failed), failed
    assert any('username: "alice"' in m for m in succeeded), succeeded
    assert AccessFailureLog.objects.filter(username="alice", locked_out=False).count() == 1
    assert AccessLog.objects.filter(username="alice", ip_address="127.0.0.1").count() == 1


def test_the_limit_and_the_lockout_time_come_from_the_environment(tmp_path):
    show = "from django.conf import settings; print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME)"
    result = manage(tmp_path, "shell", "--no-imports", "-c", show, LOGIN_FAILURE_LIMIT="3", LOGIN_LOCKOUT_MINUTES="30")
    assert result.stdout.strip().splitlines()[-1] == "3 0:30:00", result.stderr


def test_logging_in_as_oneself_does_not_clear_the_failures_of_another_username(client, alice, settings):
    """Four wrong guesses for a victim, then a successful login as one's own account from the same address, five
    times over: the victim is locked out (and so is the address), where axes' own reset cleared every failure
    of the address each time."""
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(5):
        fail(client, "victim", limit - 1)
        log_in(client, "alice", PASSWORD)
        client.logout()
    assert AccessAttempt.objects.filter(username="victim").get().failures_since_start >= limit
    assert log_in(Client(), "victim", "any password", address=None).status_code == 429


def test_a_success_clears_that_usernames_failures_from_that_address_only(client, alice, settings):
    settings.CLIENT_ADDRESS_HEADER = "X-Real-IP"
    fail(client, "alice", 2, address="10.0.0.1")
    fail(client, "alice", 2, address="10.0.0.2")
    assert log_in(client, "alice", PASSWORD, address="10.0.0.1").status_code == 302
    assert list(AccessAttempt.objects.values_list("ip_address", "failures_since_start")) == [("10.0.0.2", 2)]


@pytest.mark.parametrize("header", ["a, b", "not-an-ip", "10.0.0.1, 10.0.0.2", "<script>"])
def test_a_proxy_header_that_is_not_one_address_falls_back_to_the_connections(client, alice, settings, header):
    """Found by an attack: such a header made every login a 500 on PostgreSQL (an inet column)."""
    settings.CLIENT_ADDRESS_HEADER = "X-Real-IP"
    assert log_in(client, "alice", "wrong password", address=header).status_code == 200
    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"
    assert log_in(client, "alice", PASSWORD, address=header).status_code == 302


def test_the_admins_password_change_counts_a_wrong_old_password_as_a_failed_login(client, bob, settings):
    """Found by an attack: the admin's password change was not throttled, so a stolen session could guess the old
    password without end. Now each wrong one is a failed login for the account, and the lockout follows."""
    client.force_login(bob)
    url = reverse("admin:password_change")

    def change(old):
        return client.post(
            url, {"old_password": old, "new_password1": "a-New-pass-42", "new_password2": "a-New-pass-42"}
        )

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = change("wrong password")
        assert response.status_code == 200 and "old password was entered incorrectly" in response.content.decode()
    assert AccessAttempt.objects.get(username="bob").failures_since_start == settings.AXES_FAILURE_LIMIT - 1
    assert change("wrong password").status_code == 429  # the failure reaching the limit locks
    response = change(PASSWORD)  # now even the right old password is refused
    assert response.status_code == 429 and LOCKED in response.content.decode()
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)
    assert log_in(Client(), "bob", PASSWORD).status_code == 429  # and so is a login


def test_the_right_old_password_changes_it(client, bob):
    client.force_login(bob)
    response = client.post(
        reverse("admin:password_change"),
        {"old_password": PASSWORD, "new_password1": "a-New-pass-42", "new_password2": "a-New-pass-42"},
    )
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.check_password("a-New-pass-42")
