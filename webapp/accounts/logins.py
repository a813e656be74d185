"""Login throttling's two hooks into django-axes: whose address a login comes from, and the page a locked-out
login gets.

Behind the reverse proxy every connection comes from the proxy, so one address would collect everyone's
failures and lock every user out at once. The proxy names the client in a header it always overwrites
(settings.CLIENT_ADDRESS_HEADER, e.g. X-Real-IP); that header is trusted only when it is named, since a client
reaching the app directly could set it to anything.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render


def client_address(request) -> str | None:
    """The address the proxy saw the request come from, else the connection's own."""
    header = settings.CLIENT_ADDRESS_HEADER
    if header:
        forwarded = request.META.get("HTTP_" + header.upper().replace("-", "_"), "").strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR")


def locked_out(request, response=None, credentials=None):
    """The login page again (429), saying why the login was refused and for how long."""
    context = {
        "form": AuthenticationForm(request),
        "locked_minutes": settings.AXES_COOLOFF_TIME // timedelta(minutes=1),
    }
    return render(request, "registration/login.html", context, status=429)
