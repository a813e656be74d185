"""A page or object that is not there gets the site's own 404 page, with DEBUG on too.

With DEBUG on (the demo, development) Django answers a view's Http404 with its technical page: a newcomer who
followed a stale link to a pair saw a stack of settings and no way back. A URL that matches no pattern keeps
Django's page in DEBUG (it lists the patterns, which is what a developer wants there).
"""

from django.http import Http404
from django.shortcuts import render


class StyledNotFoundMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, Http404):
            return render(request, "404.html", {"request_path": request.path}, status=404)
        return None
