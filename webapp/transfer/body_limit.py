"""A ceiling on the size of a request body, checked before any of it is read.

Django limits a request's form fields (DATA_UPLOAD_MAX_MEMORY_SIZE) but not its uploaded files, which it spools
to disk. The largest body this app takes is an import upload, so anything over IMPORT_MAX_BYTES is answered 413
from the Content-Length header alone: before the CSRF check parses the body, and before a byte reaches the disk.
"""

from django.conf import settings
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat


class BodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:  # Django reads no body then
            length = 0
        if length > settings.IMPORT_MAX_BYTES:
            message = (
                f"The request is {filesizeformat(length)}, over the upload limit of "
                f"{filesizeformat(settings.IMPORT_MAX_BYTES)} (IMPORT_MAX_BYTES)."
            )
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
