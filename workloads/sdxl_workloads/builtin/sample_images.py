"""`builtin:sample-subject`: ten generated "photos" of one distinctive subject.

DreamBooth needs a handful of pictures of one subject in varied settings; the hub is out of reach
in tests and the demo, so we draw them: the same figure (a face with magenta hair, green eyes and
a teal-and-orange striped shirt) at different places, scales and tilts on varied backgrounds. The
face is drawn with the light/dark layout a Haar cascade looks for (dark eyes and brows over
lighter cheeks), so `crop: face` has something to find in most photos.

The set deliberately covers what real uploads look like: several sizes and aspect ratios (short
side 512 px or more, so the set passes the input checks at SDXL's 1024 px too), and one photo
stored rotated with an EXIF orientation tag, as phones do, that is upright only when the tag is
honoured. Same seed → byte-identical files.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sdxl_workloads.storage.atomic_write import cached_folder, write_then_rename
from sdxl_workloads.storage.cache_dir import cache_root

# Bump when the drawing changes, so an old cache folder is never reused.
SAMPLE_FORMAT_VERSION = 1

# EXIF tag 0x0112; value 6 = "rotate 90° clockwise to display" (a phone held upright).
EXIF_ORIENTATION_TAG = 0x0112
EXIF_ROTATE_90_CW = 6

# The name of the photo stored rotated with the EXIF tag.
ROTATED_NAME = "subject_06.png"


@dataclass(frozen=True)
class Shot:
    """One photo: canvas size, background, and where/how big/how tilted the subject is."""

    width: int
    height: int
    background: str  # one of _BACKGROUNDS
    center_x: float  # subject centre as a fraction of the width
    scale: float  # head height as a fraction of the short side
    tilt: float  # degrees, counter-clockwise


SHOTS = (
    Shot(512, 512, "sky", 0.50, 0.34, 0.0),
    Shot(640, 512, "wall", 0.38, 0.30, 4.0),
    Shot(512, 768, "grass", 0.55, 0.28, -5.0),
    Shot(768, 576, "studio", 0.62, 0.33, 0.0),
    Shot(1024, 768, "sunset", 0.30, 0.26, 7.0),
    Shot(600, 800, "stripes", 0.50, 0.30, -3.0),
    Shot(576, 768, "sky", 0.48, 0.30, 0.0),  # ROTATED_NAME: stored rotated + EXIF tag
    Shot(896, 512, "noise", 0.70, 0.32, 2.0),
    Shot(720, 720, "grass", 0.45, 0.36, -8.0),
    Shot(544, 960, "wall", 0.52, 0.25, 5.0),
)

_BACKGROUNDS = ("sky", "wall", "grass", "studio", "sunset", "stripes", "noise")

SKIN = (224, 172, 140)
HAIR = (214, 40, 170)  # the distinctive magenta
EYE = (30, 140, 70)
SHIRT_A = (0, 150, 150)
SHIRT_B = (245, 140, 30)


def ensure_sample_images(seed: int = 0, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder of the sample photos, drawing them into the cache on first use
    ($SDXL_CACHE_DIR/builtin/sample-subject-seed<seed>-v<N>/; temp folder + rename)."""
    target = cache_root(cache_dir) / "builtin" / f"sample-subject-seed{seed}-v{SAMPLE_FORMAT_VERSION}"
    return cached_folder(target, lambda folder: write_sample_images(folder, seed=seed), Path.is_dir)


def write_sample_images(out: str | os.PathLike[str], seed: int = 0) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, shot in enumerate(SHOTS):
        rng = np.random.default_rng([seed, index])
        image = draw_photo(shot, rng)
        path = out / f"subject_{index:02d}.png"
        if path.name == ROTATED_NAME:
            save_with_exif_rotation(image, path)
        else:
            image.save(path, format="PNG")
        written.append(path)
    return written


def save_with_exif_rotation(upright: Image.Image, path: Path) -> None:
    """Store the pixels rotated 90° counter-clockwise with orientation 6, so that a reader that
    honours EXIF (PIL.ImageOps.exif_transpose) shows `upright` and one that ignores it does not."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = EXIF_ROTATE_90_CW
    stored.save(path, format="PNG", exif=exif)


def draw_photo(shot: Shot, rng: np.random.Generator) -> Image.Image:
    """The subject on a background, softened and with sensor noise so it is not flat vector art."""
    image = _background(shot, rng)
    short = min(shot.width, shot.height)
    head_h = shot.scale * short
    cx = shot.center_x * shot.width
    cy = shot.height * 0.42 + rng.uniform(-0.04, 0.04) * shot.height
    subject = _draw_subject(image.size, cx, cy, head_h, shot.tilt)
    image.paste(subject, (0, 0), subject)
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1.0, short / 400)))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, 4.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _background(shot: Shot, rng: np.random.Generator) -> Image.Image:
    w, h = shot.width, shot.height
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    tint = rng.uniform(-15, 15, 3).astype(np.float32)
    if shot.background == "sky":
        top, bottom = np.array([90, 150, 230]), np.array([200, 225, 250])
        pixels = top + (bottom - top) * ys + 0 * xs
    elif shot.background == "sunset":
        top, bottom = np.array([60, 40, 120]), np.array([250, 150, 70])
        pixels = top + (bottom - top) * ys + 0 * xs
    elif shot.background == "grass":
        sky = np.array([170, 200, 235]) + 0 * xs
        field = np.array([70, 140, 60]) + 40 * np.sin(xs * 40 + ys * 7)
        pixels = np.where(ys < 0.45, sky, field)
    elif shot.background == "wall":
        bricks = ((np.floor(ys * 24) + np.floor(xs * 10 + 0.5 * (np.floor(ys * 24) % 2))) % 2)
        pixels = np.array([170, 90, 70]) + 25 * bricks + 0 * xs
    elif shot.background == "studio":
        distance = np.sqrt((xs - 0.5) ** 2 + (ys - 0.4) ** 2)
        pixels = np.array([200, 200, 205]) - 160 * distance
    elif shot.background == "stripes":
        pixels = np.where((np.floor(xs * 14) % 2) == 0, np.array([240, 230, 200]), np.array([120, 160, 200]))
        pixels = pixels + 0 * ys
    elif shot.background == "noise":
        coarse = rng.uniform(60, 200, (h // 32 + 2, w // 32 + 2, 3)).astype(np.uint8)
        blotches = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
        pixels = np.asarray(blotches, dtype=np.float32)
    else:
        raise ValueError(f"unknown background {shot.background!r}; choose one of {_BACKGROUNDS}")
    pixels = np.broadcast_to(pixels, (h, w, 3)) + tint
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _draw_subject(size: tuple[int, int], cx: float, cy: float, head_h: float, tilt: float) -> Image.Image:
    """The figure on a transparent layer: shoulders in a striped shirt, neck, hair, face."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    hw = head_h * 0.38  # half the face width
    hh = head_h * 0.5  # half the face height

    # Shoulders and a shirt with teal/orange stripes.
    top = cy + hh * 1.05
    shirt = [cx - hw * 2.6, top, cx + hw * 2.6, top + head_h * 2.2]
    draw.rounded_rectangle(shirt, radius=hw, fill=SHIRT_A)
    stripe = head_h * 0.14
    y = top + stripe
    while y < size[1]:
        draw.rectangle([cx - hw * 2.55, y, cx + hw * 2.55, y + stripe * 0.5], fill=SHIRT_B)
        y += stripe * 1.4
    draw.rectangle([cx - hw * 0.35, cy + hh * 0.7, cx + hw * 0.35, top + stripe * 0.3], fill=SKIN)  # neck

    # Hair: a magenta cap behind and above the face.
    draw.ellipse([cx - hw * 1.25, cy - hh * 1.25, cx + hw * 1.25, cy + hh * 0.35], fill=HAIR)
    # Face.
    draw.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=SKIN)
    # Cheeks a little lighter than the eye band, as in real faces (what Haar features key on).
    draw.ellipse([cx - hw * 0.8, cy + hh * 0.05, cx + hw * 0.8, cy + hh * 0.6], fill=(236, 190, 160))
    # Brows and eyes: the dark band across the upper face.
    for side in (-1, 1):
        ex = cx + side * hw * 0.42
        ey = cy - hh * 0.12
        draw.rectangle([ex - hw * 0.3, ey - hh * 0.28, ex + hw * 0.3, ey - hh * 0.2], fill=(60, 30, 40))
        draw.ellipse([ex - hw * 0.24, ey - hh * 0.1, ex + hw * 0.24, ey + hh * 0.1], fill=(245, 245, 240))
        draw.ellipse([ex - hw * 0.12, ey - hh * 0.09, ex + hw * 0.12, ey + hh * 0.09], fill=EYE)
        draw.ellipse([ex - hw * 0.05, ey - hh * 0.04, ex + hw * 0.05, ey + hh * 0.04], fill=(10, 10, 10))
    # A lighter nose bridge, a nose shadow and a mouth.
    draw.rectangle([cx - hw * 0.08, cy - hh * 0.15, cx + hw * 0.08, cy + hh * 0.22], fill=(240, 200, 170))
    draw.ellipse([cx - hw * 0.16, cy + hh * 0.2, cx + hw * 0.16, cy + hh * 0.3], fill=(170, 110, 90))
    draw.chord([cx - hw * 0.35, cy + hh * 0.35, cx + hw * 0.35, cy + hh * 0.65], 0, 180, fill=(150, 40, 50))
    if tilt:
        layer = layer.rotate(tilt, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    return layer


def run(args: argparse.Namespace) -> int:
    """`sdxl-workload sample-images OUT [--seed N]`: write the sample photos to OUT."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        from sdxl_workloads.protocol import WorkloadError

        raise WorkloadError("InvalidInput", f"{out} exists and is not empty; choose a new or empty folder")
    write_then_rename(out, lambda staging: write_sample_images(staging, seed=args.seed), folder=True)
    print(f"wrote {len(SHOTS)} sample-subject photos (seed {args.seed}) to {out}")
    return 0
