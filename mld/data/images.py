"""Reading image files with errors that name the file (also when raised in a loader worker)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mld.data.prepared import DataWorkerSafe


class ImageReadError(DataWorkerSafe, ValueError):
    """An image file exists but cannot be decoded (corrupt, truncated, not an image)."""


class ImageMissingError(DataWorkerSafe, FileNotFoundError):
    """An image file listed by a prepared dataset does not exist."""


def read_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB; a missing or unreadable file raises an error naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageMissingError(f"image file {path} does not exist; was the dataset moved after "
                                "`mld prepare`? Prepare it again from the new location") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"cannot read image file {path}: {error}; replace or remove the file "
                             "and prepare the dataset again") from None
