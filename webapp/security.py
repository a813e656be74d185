"""The Content-Security-Policy header, which Django 5.2 does not set itself (Django 6 does)."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Enforce settings.CONTENT_SECURITY_POLICY on every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
