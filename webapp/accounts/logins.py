"""Login throttling's hooks into django-axes: what a successful login clears, and the page a locked-out login
gets, and the admin's password change, whose old password counts as a login; whose address a login comes from
is webapp.accounts.actors.client_address, as for the audit trail.

Failures count per username and per address, each on its own. A successful login clears only the failures of
that username from that address: axes' own reset deletes every failure matching the username *or* the address,
so an attacker could guess four passwords for someone else, log in as themself from the same address, and guess
again without ever being locked out.

Behind the reverse proxy every connection comes from the proxy, so one address would collect everyone's
failures and lock every user out at once. The proxy names the client in a header it always overwrites
(settings.CLIENT_ADDRESS_HEADER, e.g. X-Real-IP); that header is trusted only when it is named, since a client
reaching the app directly could set it to anything.
"""

from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.shortcuts import render

from webapp.accounts.actors import current_request


class LockoutHandler(AxesDatabaseHandler):
    """axes' database handler, whose reset on success clears only that username's failures from that address."""

    def reset_user_attempts(self, request, credentials=None) -> int:
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(username=username, ip_address=request.axes_ip_address).delete()
        return count


def locked_out(request, response=None, credentials=None):
    """The login page again (429), saying why the login was refused and for how long."""
    context = {
        "form": AuthenticationForm(request),
        "locked_minutes": settings.AXES_COOLOFF_TIME // timedelta(minutes=1),
    }
    return render(request, "registration/login.html", context, status=429)


class ThrottledPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's own password change, its old password checked through authenticate(): a wrong one is a failed
    login for the account (django-axes), so guessing it from a stolen session locks the account as guessing at
    the login page does, and while it is locked even the right old password is refused (it was not throttled)."""

    def clean_old_password(self):
        old_password = self.cleaned_data["old_password"]
        request = current_request.get()
        user = authenticate(request, username=self.user.get_username(), password=old_password)
        if user is None or user.pk != self.user.pk:
            raise ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password
