"""Security headers Django 5.2 does not set itself: the Content-Security-Policy (Django 6 does), the
Permissions-Policy, and `Cache-Control: no-store` on what a logged-in user is shown."""

from django.conf import settings
from django.utils.cache import add_never_cache_headers


class ContentSecurityPolicyMiddleware:
    """Enforce settings.CONTENT_SECURITY_POLICY and settings.PERMISSIONS_POLICY on every response that does not
    set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


class PrivatePagesMiddleware:
    """Pages, images and downloads served to a logged-in user are kept by no cache: not a shared proxy's, nor the
    browser's (a later user of the same computer pressing Back after a logout sees nothing)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.user.is_authenticated and "Cache-Control" not in response.headers:
            add_never_cache_headers(response)
        return response
