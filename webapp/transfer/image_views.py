"""Pages. Every view needs a login (LoginRequiredMiddleware); staff-only actions check on the server."""

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404

from webapp.accounts.permissions import reviewer_required
from webapp.models import Instruction

_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


@reviewer_required
def instruction_image(request, shard, name):
    """Serve a stored image to a reviewer or staff (who see the pages showing it), with a fixed content type
    (never sniffed)."""
    suffix = Path(name).suffix.lower()
    if (
        "/" in name
        or suffix not in _IMAGE_TYPES
        or not Instruction.objects.filter(image=f"images/{shard}/{name}").exists()
    ):
        raise Http404("no such image")
    response = FileResponse(
        open(Path(settings.MEDIA_ROOT) / "images" / shard / name, "rb"), content_type=_IMAGE_TYPES[suffix]
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
