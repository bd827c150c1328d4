"""Images as the embedding models expect them: upright and RGB."""

from __future__ import annotations

from PIL import Image, ImageOps


def upright_rgb(image: Image.Image) -> Image.Image:
    """`image` turned as its EXIF orientation says and converted to RGB.

    Phone photos are often stored sideways with an orientation tag; a model that saw them sideways
    would score the subject lower for no fault of the fine-tune. Already-upright images pass as they are.
    """
    return ImageOps.exif_transpose(image).convert("RGB")
