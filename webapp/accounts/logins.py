"""Login throttling's hooks into django-axes: what a successful login clears, and the page a locked-out login
gets; whose address a login comes from is webapp.accounts.actors.client_address, as for the audit trail.

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
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render


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
