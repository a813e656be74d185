"""Image validation and content-addressed storage, with Pillow.

Every image that enters the product (import, upload) passes `validate_image` first: a format on the
allow-list, a size and pixel-count limit checked from the header *before* decoding (decompression bombs),
then a full decode (truncated files). Stored names are the SHA-256 of the bytes, so the same image is
stored once however often it is imported.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class ImageError(ValueError):
    """The bytes are not an image this product accepts; the message says why."""


@dataclass(frozen=True)
class ValidImage:
    data: bytes
    format: str
    width: int
    height: int
    sha256: str

    @property
    def name(self) -> str:
        """Storage name: images/<2 hex>/<sha256>.<ext>."""
        return f"images/{self.sha256[:2]}/{self.sha256}.{EXTENSIONS[self.format]}"


def validate_image(data: bytes) -> ValidImage:
    if len(data) > settings.IMAGE_MAX_BYTES:
        raise ImageError(f"image is {len(data)} bytes, over the limit of {settings.IMAGE_MAX_BYTES}")
    if not data:
        raise ImageError("image file is empty")
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the pixel count below
            fmt, (width, height) = image.format, image.size
            if fmt not in settings.IMAGE_FORMATS:
                raise ImageError(f"image format {fmt} is not allowed (allowed: {', '.join(settings.IMAGE_FORMATS)})")
            if width * height > settings.IMAGE_MAX_PIXELS:
                raise ImageError(
                    f"image is {width}×{height} = {width * height} pixels, over the limit of "
                    f"{settings.IMAGE_MAX_PIXELS} (decompression bomb?)"
                )
            image.load()
    except ImageError:
        raise
    except Image.UnidentifiedImageError:  # its message holds the repr of our buffer: say it plainly
        raise ImageError("not a readable image: no format Pillow recognises") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image rejected as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports unknown formats and truncated data as OSError/SyntaxError.
        raise ImageError(f"not a readable image: {exc}") from None
    return ValidImage(data, fmt, width, height, hashlib.sha256(data).hexdigest())


def store_image(image: ValidImage) -> bool:
    """Write the image under its content address; return True when this call created the file."""
    if default_storage.exists(image.name):
        return False
    saved = default_storage.save(image.name, ContentFile(image.data))
    if saved != image.name:  # a concurrent writer won the race: keep one copy
        default_storage.delete(saved)
        return False
    return True
