"""A signed-in session's idle timeout, renewed at most once a minute rather than on every request.

Sessions end SESSION_COOKIE_AGE after the last renewal. Django's SESSION_SAVE_EVERY_REQUEST renews on every
request, which costs every page a database transaction (a session UPDATE and its commit: on a review page a
fifth of its queries) to move an hour-long deadline by seconds. Renewing once SESSION_RENEW_SECONDS have passed
since the last renewal keeps the timeout within that much of the hour (never longer), at one write a minute
per active user.
"""

import time

from django.conf import settings

RENEWED = "session_renewed_at"  # the session key holding when it was last renewed (epoch seconds)


class SessionRenewalMiddleware:
    """Mark a signed-in user's session modified when its last renewal is SESSION_RENEW_SECONDS old, so that
    SessionMiddleware saves it with a new expiry. After AuthenticationMiddleware: only signed-in sessions."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            if now - request.session.get(RENEWED, 0) >= settings.SESSION_RENEW_SECONDS:
                request.session[RENEWED] = now
        return self.get_response(request)
