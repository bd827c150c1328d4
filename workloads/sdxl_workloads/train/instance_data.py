"""The subject's photos: found, checked, captioned, oriented, converted, cropped and resized.

Everything here runs before training and fails with one message that lists every bad file and
what to do about it, so a user fixes the folder once instead of once per failed run.

Folder rules (the kohya convention, as in sd-scripts and SimpleTuner):
- every image (.png .jpg .jpeg .webp .bmp .gif .tif .tiff) at the folder's top level is a
  training photo; `photo.txt` beside `photo.jpg` is its caption, otherwise the instance prompt is;
- harmless files that photo folders tend to carry — hidden files (.DS_Store, ._photo.jpg from
  macOS copies), Thumbs.db, desktop.ini, README/LICENSE, notes and metadata (.md .json .yaml
  .yml .csv .toml), orphan captions and subfolders — are skipped with a warning: refusing them
  would fail runs over files nobody meant as training data;
- any other file is refused: it is most likely a photo in a format we cannot read (HEIC from a
  phone, RAW from a camera) or a misplaced upload, and silently training on fewer photos gives a
  worse model without telling anyone why.

Photo rules: at least MIN_IMAGES photos and at most the cluster's limit (DEFAULT_MAX_IMAGES, or
`--max-instance-images` from the operator), counted before anything is decoded; each must decode; each photo's short side (after EXIF
orientation) must be at least half the training resolution, since upscaling more than 2x teaches
the model blur. EXIF orientation is honoured; RGBA/LA/P are composited on white; grayscale,
16-bit, CMYK and other modes become RGB.

Cropping follows diffusers' SDXL DreamBooth script: resize the short side to the resolution,
then crop a square; the original size and the crop's top-left corner are kept, because SDXL is
conditioned on them (the "time ids": original_size, crops_coords_top_left, target_size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sdxl_workloads import protocol
from sdxl_workloads.protocol import WorkloadError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_EXTENSION = ".txt"
HARMLESS_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
HARMLESS_PREFIXES = ("readme", "license", "licence")
HARMLESS_EXTENSIONS = frozenset({".md", ".json", ".yaml", ".yml", ".csv", ".toml", ".rst"})

MIN_IMAGES = 3  # DreamBooth can learn from 3; 10-20 is what works well
# The most photos a run takes unless the cluster's administrator set another limit (the operator
# passes it as --max-instance-images): far past any real subject, and a bound on what one run
# downloads, decodes and holds in memory.
DEFAULT_MAX_IMAGES = 1000
RECOMMENDED = "10-20"
MIN_SHORT_SIDE_FRACTION = 0.5  # short side >= resolution * this (at most 2x upscaling)
CROPS = ("center", "face")

# Face detection runs on a copy scaled to at most this long side: Haar cascades are slow on
# 12-megapixel phone photos and gain nothing from the extra pixels.
_FACE_DETECT_MAX_SIDE = 1024
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as most trainers do


@dataclass(frozen=True)
class InstanceExample:
    """One training photo, ready for the VAE, with what SDXL's micro-conditioning needs."""

    path: Path  # the source file
    image: Image.Image  # RGB, target_size
    caption: str  # from the .txt beside the photo, else the instance prompt
    caption_from_file: bool  # True when `caption` came from a .txt file
    original_size: tuple[int, int]  # (height, width) after EXIF orientation, before resizing
    crops_coords_top_left: tuple[int, int]  # (top, left) of the crop in the resized photo
    target_size: tuple[int, int]  # (height, width) of `image`
    resized_size: tuple[int, int]  # (height, width) of the photo after resizing, before cropping
    crop: str  # "center", or "face" when a face was found and the crop follows it

    @property
    def crop_top_left(self) -> tuple[int, int]:
        """Short name for `crops_coords_top_left` (diffusers' name for it)."""
        return self.crops_coords_top_left

    def time_ids(self) -> tuple[int, int, int, int, int, int]:
        """SDXL's add_time_ids: original (h, w), crop top-left (top, left), target (h, w)."""
        return (*self.original_size, *self.crops_coords_top_left, *self.target_size)

    def flipped(self) -> InstanceExample:
        """The mirror image, with the crop's left edge mirrored too (it is measured from the left)."""
        left = self.resized_size[1] - self.crops_coords_top_left[1] - self.target_size[1]
        return replace(self, image=ImageOps.mirror(self.image),
                       crops_coords_top_left=(self.crops_coords_top_left[0], left))


@dataclass(frozen=True)
class InstanceData:
    """All training photos of a folder, and what was skipped on the way."""

    folder: Path
    examples: list[InstanceExample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why), already warned about

    def __len__(self) -> int:
        return len(self.examples)


@dataclass(frozen=True)
class _Found:
    images: list[tuple[Path, Path | None]]  # (photo, caption file or None), sorted by name
    skipped: list[tuple[Path, str]]


def load_instance_data(source: str | os.PathLike[str], instance_prompt: str, resolution: int,
                       crop: str = "center", max_images: int | None = None) -> InstanceData:
    """Find, check and prepare every photo in `source` (a folder, or a URI for models.references.local_input).

    Raises WorkloadError("InvalidInput") listing every problem; warns (a `log` event) about
    skipped files.
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    if isinstance(source, str):
        from sdxl_workloads.models.references import local_input

        folder = local_input(source)
    else:
        folder = Path(source)
    found = find_instance_files(folder, max_images=DEFAULT_MAX_IMAGES if max_images is None else max_images)
    for path, why in found.skipped:
        protocol.emit_event("log", level="warning", message=f"skipping {path}: {why}")

    problems: list[str] = []
    examples: list[InstanceExample] = []
    detector = _FaceDetector() if crop == "face" else None
    min_side = int(np.ceil(resolution * MIN_SHORT_SIDE_FRACTION))
    for image_path, caption_path in found.images:
        try:
            image = open_rgb(image_path)
        except WorkloadError as err:
            problems.append(err.message)
            continue
        if min(image.size) < min_side:
            problems.append(
                f"{image_path.name} is {image.width}x{image.height} px, too small for resolution {resolution}: "
                f"its short side must be at least {min_side} px (more than 2x upscaling trains blur). "
                "Use a larger photo, remove this one, or lower spec.training.resolution"
            )
            continue
        try:
            caption = read_caption(caption_path) if caption_path else None
        except WorkloadError as err:
            problems.append(err.message)
            continue
        if caption_path and not caption:
            protocol.emit_event("log", level="warning",
                                message=f"{caption_path} is empty; using the instance prompt for {image_path.name}")
        examples.append(prepare_example(image_path, image, caption or instance_prompt, bool(caption),
                                        resolution, detector))
    if problems:
        raise WorkloadError("InvalidInput", f"instance images in {folder}: " + "; ".join(problems))
    return InstanceData(folder=folder, examples=examples, skipped=found.skipped)


def find_instance_files(folder: Path, max_images: int = DEFAULT_MAX_IMAGES) -> _Found:
    """The photos and captions in `folder`, by the folder rules in the module docstring."""
    if not folder.exists():
        raise WorkloadError("InvalidInput", f"instance images: {folder} does not exist")
    if not folder.is_dir():
        raise WorkloadError("InvalidInput", f"instance images: {folder} is a file; point instanceImages at a "
                                            f"folder of {RECOMMENDED} photos of the subject")
    entries = sorted(folder.iterdir())
    if not entries:
        raise WorkloadError("InvalidInput", f"instance images: {folder} is empty; put {RECOMMENDED} photos of "
                                            "the subject (PNG, JPEG or WebP) in it")
    by_stem: dict[str, Path] = {}
    captions: dict[str, Path] = {}
    skipped: list[tuple[Path, str]] = []
    unknown: list[Path] = []
    subfolders: list[Path] = []
    for entry in entries:
        suffix = entry.suffix.lower()
        if _is_harmless(entry):
            skipped.append((entry, "not a photo or caption (hidden, system or notes file)"))
        elif entry.is_dir():
            subfolders.append(entry)
            skipped.append((entry, "subfolders are not searched; move photos to the top level to use them"))
        elif suffix in IMAGE_EXTENSIONS:
            if entry.stem in by_stem:
                # photo.png and photo.jpg would share photo.txt; which one is meant is unclear.
                raise WorkloadError("InvalidInput", f"instance images in {folder}: {by_stem[entry.stem].name} and {entry.name} "
                                                    "share a name, so a caption file cannot tell them apart; "
                                                    "rename one")
            by_stem[entry.stem] = entry
        elif suffix == CAPTION_EXTENSION:
            captions[entry.stem] = entry
        else:
            unknown.append(entry)
    if unknown:
        names = ", ".join(p.name for p in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise WorkloadError(
            "InvalidInput",
            f"instance images in {folder}: {names}: neither a photo ({', '.join(sorted(IMAGE_EXTENSIONS))}) nor "
            "a caption (.txt). Convert it to JPEG or PNG (e.g. HEIC or RAW photos), or remove it",
        )
    for stem, caption in captions.items():
        if stem not in by_stem:
            skipped.append((caption, "a caption without a photo of the same name"))
    if len(by_stem) < MIN_IMAGES:
        hint = ""
        if subfolders:
            hint = f" (photos in subfolders such as {subfolders[0].name}/ are not used: move them up)"
        what = "no photos" if not by_stem else f"only {len(by_stem)} photo{'s' if len(by_stem) > 1 else ''}"
        raise WorkloadError(
            "InvalidInput",
            f"instance images: {folder} has {what}{hint}; DreamBooth needs at least {MIN_IMAGES} "
            f"({RECOMMENDED} work best) photos of the subject",
        )
    if len(by_stem) > max_images:
        # Counted before any photo is decoded: a huge folder is refused at once, not after an hour.
        raise WorkloadError(
            "InvalidInput",
            f"instance images: {folder} has {len(by_stem)} photos, more than this cluster's limit of {max_images} "
            f"({RECOMMENDED} work best for one subject); keep the best {RECOMMENDED} photos, or ask the cluster "
            "administrator to raise the Helm value limits.maxImages",
        )
    images = [(path, captions.get(stem)) for stem, path in sorted(by_stem.items(), key=lambda kv: kv[1].name)]
    return _Found(images=images, skipped=sorted(skipped))


def _is_harmless(entry: Path) -> bool:
    name = entry.name.lower()
    return (name.startswith(".") or name in HARMLESS_NAMES or name.startswith(HARMLESS_PREFIXES)
            or (entry.is_file() and entry.suffix.lower() in HARMLESS_EXTENSIONS))


def open_rgb(path: Path) -> Image.Image:
    """Decode `path` fully, upright (EXIF orientation applied), as 8-bit RGB."""
    try:
        with Image.open(path) as raw:
            raw.load()  # decode now: a truncated file fails here, not mid-training
            image = ImageOps.exif_transpose(raw)
            if image is raw:
                image = raw.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise WorkloadError(
            "InvalidInput", f"{path.name} cannot be read as an image ({err}); re-export it or remove it"
        ) from err
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: transparency over white, 16/32-bit grayscale scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        # 16-bit PNGs ("I;16") and 32-bit images: PIL's convert("L") clips instead of scaling.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV: PIL's own conversions.
    return image.convert("RGB")


def read_caption(path: Path) -> str:
    """A caption file's text (UTF-8, a BOM tolerated), whitespace collapsed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise WorkloadError("InvalidInput", f"{path.name} is not UTF-8 text ({err.reason}); save it as UTF-8") from err
    return " ".join(text.split())


def prepare_example(path: Path, image: Image.Image, caption: str, caption_from_file: bool, resolution: int,
                    detector: _FaceDetector | None = None) -> InstanceExample:
    """Resize the short side to `resolution` and crop a square (around a face when asked)."""
    width, height = image.size
    scale = resolution / min(width, height)
    resized_w, resized_h = max(resolution, round(width * scale)), max(resolution, round(height * scale))
    resized = image.resize((resized_w, resized_h), Image.Resampling.LANCZOS)
    top, left = (resized_h - resolution) // 2, (resized_w - resolution) // 2
    crop = "center"
    face = detector.largest_face(image) if detector else None
    if face is not None:
        face_cx, face_cy = face
        left = _clamp(round(face_cx * scale - resolution / 2), 0, resized_w - resolution)
        top = _clamp(round(face_cy * scale - resolution / 2), 0, resized_h - resolution)
        crop = "face"
    cropped = resized.crop((left, top, left + resolution, top + resolution))
    return InstanceExample(
        path=path, image=cropped, caption=caption, caption_from_file=caption_from_file,
        original_size=(height, width), crops_coords_top_left=(top, left),
        target_size=(resolution, resolution), resized_size=(resized_h, resized_w), crop=crop,
    )


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


class _FaceDetector:
    """OpenCV's bundled frontal-face Haar cascade (fast, no model download, CPU only)."""

    def __init__(self) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier") or not getattr(cv2, "data", None):
            # OpenCV 5 moved the cascades out of the main package (pyproject pins < 5).
            raise RuntimeError("crop: face needs OpenCV's Haar cascades; install opencv-python-headless<5")
        self._cv2: Any = cv2
        cascade_file = Path(self._cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = self._cv2.CascadeClassifier(str(cascade_file))
        if self._cascade.empty():
            raise RuntimeError(f"cannot load OpenCV's face cascade from {cascade_file}")

    def largest_face(self, image: Image.Image) -> tuple[float, float] | None:
        """The centre (x, y) of the largest face in `image` coordinates, or None."""
        scale = min(1.0, _FACE_DETECT_MAX_SIDE / max(image.size))
        small = image if scale == 1.0 else image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        gray = np.asarray(small.convert("L"))
        min_face = max(24, round(min(small.size) * 0.08))
        faces = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return ((x + w / 2) / scale, (y + h / 2) / scale)
