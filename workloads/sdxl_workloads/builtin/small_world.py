"""A small procedural world: one figure whose look varies, in a few settings, with captions.

`builtin:world` is pretrained on these pictures (world_pretraining.py), so a fine-tune of it on
`builtin:world-subject` can be judged from pixels: `read_scene` reads every attribute back from
an image, exactly on the pictures drawn here and by nearest palette colour over the expected
region on a model's output (world_quality.py).

A scene is a person seen from the front at 64 px (the model's resolution: 8x8 latents after the
VAE): hair of one colour, a shirt of one colour with a plain, striped or checked pattern, arms
down or up, on the beach, in a forest, in a city or on the moon. Flat colours, no blur or noise,
so reading is exact. The figure moves a few pixels between scenes (so the model learns a figure,
not a stencil) and `read_scene` finds it by its skin before reading the regions around it.

One combination never appears here: the subject's (world_subject.py), green hair with an orange
shirt. `sample_scene` never draws it and `is_subject_look` names it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

# The model's resolution (the VAE downsamples by 8, so latents are 8x8).
WORLD_RESOLUTION = 64

Colour = tuple[int, int, int]

HAIR_COLOURS: dict[str, Colour] = {
    "red": (200, 30, 30),
    "blonde": (240, 210, 90),
    "black": (25, 20, 20),
    "blue": (40, 70, 220),
    "green": (40, 170, 60),
}
SHIRT_COLOURS: dict[str, Colour] = {
    "red": (200, 30, 30),
    "blue": (40, 70, 220),
    "green": (40, 170, 60),
    "yellow": (235, 225, 40),
    "orange": (240, 130, 30),
    "purple": (130, 50, 170),
}
PATTERNS = ("plain", "striped", "checked")
POSES = ("arms down", "arms up")
SETTINGS = ("beach", "forest", "city", "moon")
# How a caption places the figure in each setting.
SETTING_PHRASES = {"beach": "on the beach", "forest": "in a forest", "city": "in a city", "moon": "on the moon"}

SKIN: Colour = (225, 170, 140)
PATTERN_LINE: Colour = (250, 250, 250)  # the white lines of striped and checked shirts
EYE: Colour = (20, 20, 30)

# The subject's look, which the pretraining pictures never show (world_subject.py draws it).
SUBJECT_HAIR = "green"
SUBJECT_SHIRT = "orange"
SUBJECT_PATTERN = "checked"

# The figure's centre column and head top row in an undisturbed scene, and how far they move.
CENTRE_X = 32
HEAD_TOP_Y = 11
JITTER_X = 3
JITTER_Y = 2


@dataclass(frozen=True)
class Scene:
    """What a picture shows; `read_scene` returns one of these (position included)."""

    hair: str  # a key of HAIR_COLOURS
    shirt: str  # a key of SHIRT_COLOURS
    pattern: str  # one of PATTERNS
    pose: str  # one of POSES
    setting: str  # one of SETTINGS
    dx: int = 0  # figure offset from CENTRE_X, pixels
    dy: int = 0  # figure offset from HEAD_TOP_Y, pixels
    scale: float = 1.0  # figure size; the world uses 1.0, the subject's photos vary it a little
    variant: int = 0  # seeds the background's details (trunks, windows, stars)

    def attributes(self) -> dict[str, str]:
        """The five attributes a caption can name (what `read_scene` must recover)."""
        return {"hair": self.hair, "shirt": self.shirt, "pattern": self.pattern, "pose": self.pose,
                "setting": self.setting}


def is_subject_look(scene: Scene) -> bool:
    """The subject's hair and shirt colours together: never in the pretraining distribution."""
    return scene.hair == SUBJECT_HAIR and scene.shirt == SUBJECT_SHIRT


def sample_scene(rng: np.random.Generator) -> Scene:
    """A random scene of the pretraining distribution (never the subject's look)."""
    while True:
        scene = Scene(
            hair=str(rng.choice(list(HAIR_COLOURS))), shirt=str(rng.choice(list(SHIRT_COLOURS))),
            pattern=str(rng.choice(PATTERNS)), pose=str(rng.choice(POSES)), setting=str(rng.choice(SETTINGS)),
            dx=int(rng.integers(-JITTER_X, JITTER_X + 1)), dy=int(rng.integers(-JITTER_Y, JITTER_Y + 1)),
            variant=int(rng.integers(0, 2**31)),
        )
        if not is_subject_look(scene):
            return scene


def scene_for_seed(seed: int) -> Scene:
    return sample_scene(np.random.default_rng([seed, 7]))


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """"a photo of a person with red hair in a blue striped shirt with arms up in a forest".

    With `rng`, each attribute is named with some probability, so the model also sees short
    captions and learns what each word alone means (and draws the rest from the world's spread).
    """
    def named(probability: float) -> bool:
        return rng is None or bool(rng.random() < probability)

    words = ["a photo of a person"]
    if named(0.7):
        words.append(f"with {scene.hair} hair")
    shirt_colour, shirt_pattern = named(0.7), named(0.5)
    if shirt_colour or shirt_pattern:
        described = [scene.shirt] if shirt_colour else []
        if shirt_pattern:
            described.append(scene.pattern)
        words.append(f"in a {' '.join(described)} shirt")
    if named(0.5):
        words.append(f"with {scene.pose}")
    if named(0.7):
        words.append(SETTING_PHRASES[scene.setting])
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# Drawing


def draw_scene(scene: Scene, size: int = WORLD_RESOLUTION) -> Image.Image:
    """The scene as an RGB image of `size` x `size` (drawn at 64 px, then scaled with nearest
    neighbour so bigger copies keep the same crisp regions)."""
    image = _background(scene.setting, np.random.default_rng(scene.variant))
    _draw_figure(ImageDraw.Draw(image), scene)
    if size != WORLD_RESOLUTION:
        image = image.resize((size, size), Image.Resampling.NEAREST)
    return image


def _background(setting: str, rng: np.random.Generator) -> Image.Image:
    n = WORLD_RESOLUTION
    image = Image.new("RGB", (n, n))
    draw = ImageDraw.Draw(image)
    if setting == "beach":
        draw.rectangle([0, 0, n, 27], fill=(135, 200, 245))  # sky
        draw.rectangle([0, 28, n, 39], fill=(25, 100, 185))  # sea
        draw.rectangle([0, 40, n, n], fill=(245, 230, 165))  # sand
        sun_x = int(rng.integers(4, 12)) if rng.random() < 0.5 else int(rng.integers(52, 60))
        draw.ellipse([sun_x - 4, 3, sun_x + 4, 11], fill=(255, 240, 120))
    elif setting == "forest":
        draw.rectangle([0, 0, n, 45], fill=(25, 85, 40))  # canopy
        draw.rectangle([0, 46, n, n], fill=(95, 70, 40))  # forest floor
        for x in (int(rng.integers(0, 6)), int(rng.integers(8, 13)), int(rng.integers(51, 56)),
                  int(rng.integers(58, 62))):
            draw.rectangle([x, 18, x + 3, 46], fill=(70, 45, 25))  # trunks
    elif setting == "city":
        draw.rectangle([0, 0, n, n], fill=(175, 185, 200))  # hazy sky
        x = 0
        while x < n:
            width, top = int(rng.integers(8, 14)), int(rng.integers(6, 20))
            draw.rectangle([x, top, x + width - 1, 47], fill=(95, 95, 110))
            for wy in range(top + 3, 44, 5):
                for wx in range(x + 2, x + width - 3, 4):
                    draw.rectangle([wx, wy, wx + 1, wy + 1], fill=(230, 210, 110))
            x += width + 1
        draw.rectangle([0, 48, n, n], fill=(55, 55, 60))  # street
    elif setting == "moon":
        draw.rectangle([0, 0, n, 43], fill=(8, 8, 18))  # space
        for _ in range(14):
            sx, sy = int(rng.integers(0, n)), int(rng.integers(0, 42))
            draw.point((sx, sy), fill=(240, 240, 255))
        draw.rectangle([0, 44, n, n], fill=(150, 150, 155))  # regolith
        for _ in range(3):
            cx, cy = int(rng.integers(0, n)), int(rng.integers(50, 62))
            draw.ellipse([cx - 4, cy - 2, cx + 4, cy + 2], fill=(110, 110, 115))  # craters
    else:
        raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    return image


def _draw_figure(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    """Arms, shirt with its pattern, neck, hair, face: all flat colours, sized by `scene.scale`."""
    s = scene.scale
    cx = CENTRE_X + scene.dx
    top = HEAD_TOP_Y + scene.dy

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        """A box given relative to the figure's centre column and head top, scaled."""
        return [cx + x0 * s, top + y0 * s, cx + x1 * s - 1, top + y1 * s - 1]

    shirt = SHIRT_COLOURS[scene.shirt]
    # Arms (bare, skin-coloured) first, so the shirt's shoulders cover their roots.
    for side in (-1, 1):
        inner, outer = side * 11, side * 15
        x0, x1 = min(inner, outer), max(inner, outer)
        if scene.pose == "arms up":
            draw.rectangle(box(x0, -5, x1, 25), fill=SKIN)
        else:
            draw.rectangle(box(x0, 22, x1, 46), fill=SKIN)
    # Shirt: torso from the shoulders to the bottom edge.
    shirt_box = box(-12, 21, 12, 60)
    draw.rounded_rectangle(shirt_box, radius=3 * s, fill=shirt)
    left, upper, right, lower = shirt_box
    if scene.pattern in ("striped", "checked"):
        y = upper + 3 * s
        while y < lower:
            draw.line([left + 1, y, right - 1, y], fill=PATTERN_LINE)
            y += 5 * s
    if scene.pattern == "checked":
        x = left + 3 * s
        while x < right - 1:
            draw.line([x, upper + 1, x, lower], fill=PATTERN_LINE)
            x += 5 * s
    draw.rectangle(box(-2, 16, 2, 22), fill=SKIN)  # neck
    draw.ellipse(box(-9, 0, 9, 14), fill=HAIR_COLOURS[scene.hair])  # hair, behind the face
    draw.ellipse(box(-6, 5, 6, 19), fill=SKIN)  # face
    for side in (-1, 1):
        draw.rectangle(box(side * 3 - 1, 10, side * 3 + 1, 12), fill=EYE)


# --------------------------------------------------------------------------------------------
# Reading


def _distance(pixels: np.ndarray, colour: Colour) -> np.ndarray:
    difference = pixels.astype(np.float32) - np.asarray(colour, np.float32)
    return np.asarray(np.sqrt((difference ** 2).sum(axis=-1)))


def _vote(pixels: np.ndarray, palette: dict[str, Colour], ignore: tuple[Colour, ...] = ()) -> str | None:
    """The palette name most pixels are nearest to (pixels nearest an `ignore` colour vote for no one)."""
    if pixels.size == 0:
        return None
    names = list(palette) + [None] * len(ignore)
    colours = list(palette.values()) + list(ignore)
    nearest = np.argmin(np.stack([_distance(pixels, c) for c in colours], axis=-1), axis=-1).ravel()
    counts = np.bincount(nearest, minlength=len(colours))[:len(palette)]
    if counts.sum() == 0:
        return None
    return names[int(np.argmax(counts))]


def _setting_signature(image: np.ndarray) -> np.ndarray:
    """Mean colour of the left and right margins (never the figure), sky part and ground part."""
    margins = np.concatenate([image[:, :9], image[:, -9:]], axis=1).astype(np.float32)
    return np.concatenate([margins[2:22].mean(axis=(0, 1)), margins[50:64].mean(axis=(0, 1))])


_SETTING_SIGNATURES: dict[str, np.ndarray] = {}


def _reference_signatures() -> dict[str, np.ndarray]:
    """Each setting's margin signature, averaged over a few drawn backgrounds (computed once)."""
    if not _SETTING_SIGNATURES:
        for setting in SETTINGS:
            drawn = [_setting_signature(np.asarray(_background(setting, np.random.default_rng(i))))
                     for i in range(16)]
            _SETTING_SIGNATURES[setting] = np.mean(drawn, axis=0)
    return _SETTING_SIGNATURES


def _find_figure(image: np.ndarray) -> tuple[int, int]:
    """(centre column, head top row): the face's skin tells where the figure stands.

    In each row near the middle the longest run of skin is the face's (raised arms are shorter
    runs beside it, past the hair); the face's centre is the median of those runs' centres. A
    picture without recognisable skin is read at the undisturbed position.
    """
    left = CENTRE_X - JITTER_X - 9
    skin = _distance(image[:, left:CENTRE_X + JITTER_X + 9], SKIN) < 45
    centres, rows = [], []
    for row in range(4, 36):
        best_start, best_length, start = 0, 0, None
        for col, is_skin in enumerate([*skin[row], False]):
            if is_skin and start is None:
                start = col
            elif not is_skin and start is not None:
                if col - start > best_length:
                    best_start, best_length = start, col - start
                start = None
        if best_length >= 5:
            # Twice the centre, so an even run's half-pixel centre stays exact.
            centres.append(2 * (left + best_start) + best_length)
            rows.append(row)
    if len(rows) < 3:
        return CENTRE_X, HEAD_TOP_Y
    cx = int(np.floor(float(np.median(centres)) / 2))
    return cx, rows[0] - 6  # the face ellipse starts 5 rows under the hair; its first row is narrow


def read_scene(image: Image.Image | np.ndarray) -> Scene:
    """What a picture of the world shows: the attributes, read back from its pixels.

    Exact on `draw_scene`'s pictures; on a model's output each attribute is the palette colour most
    pixels of its region are nearest to, and the setting the nearest margin signature.
    """
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if pixels.dtype != np.uint8:  # a pipeline's float output in [0, 1]
        pixels = np.clip(np.asarray(pixels, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if pixels.shape[:2] != (WORLD_RESOLUTION, WORLD_RESOLUTION):
        pixels = np.asarray(Image.fromarray(pixels).resize((WORLD_RESOLUTION,) * 2, Image.Resampling.BILINEAR))

    signature = _setting_signature(pixels)
    references = _reference_signatures()
    setting = min(SETTINGS, key=lambda name: float(np.linalg.norm(references[name] - signature)))

    cx, top = _find_figure(pixels)
    n = WORLD_RESOLUTION

    def region(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return pixels[max(0, top + y0):min(n, top + y1), max(0, cx + x0):min(n, cx + x1)].reshape(-1, 3)

    # Hair: the cap above the face, and its sides beside the forehead.
    hair_pixels = np.concatenate([region(-5, 1, 5, 5), region(-8, 5, -6, 9), region(6, 5, 8, 9)])
    hair = _vote(hair_pixels, HAIR_COLOURS, ignore=(SKIN,)) or "black"
    # Shirt: the chest and belly, the white lines voting for no colour.
    torso = region(-10, 24, 10, 44)
    shirt = _vote(torso, SHIRT_COLOURS, ignore=(PATTERN_LINE, SKIN)) or "red"
    pattern = _read_pattern(pixels, cx, top)
    # Arms up: skin beside the head.
    beside_head = np.concatenate([region(-15, 0, -11, 16), region(11, 0, 15, 16)])
    pose = "arms up" if beside_head.size and (_distance(beside_head, SKIN) < 60).mean() > 0.5 else "arms down"
    return Scene(hair=hair, shirt=shirt, pattern=pattern, pose=pose, setting=setting, dx=cx - CENTRE_X,
                 dy=top - HEAD_TOP_Y)


def _read_pattern(pixels: np.ndarray, cx: int, top: int) -> str:
    """Plain, striped (white rows across the chest) or checked (white rows and columns)."""
    torso = pixels[top + 24:top + 44, cx - 9:cx + 9]
    if torso.size == 0:
        return "plain"
    white = _distance(torso, PATTERN_LINE) < 80
    rows = white.mean(axis=1) > 0.6  # a stripe crosses the whole chest
    cols = white.mean(axis=0) > 0.6
    if cols.any() and rows.any():
        return "checked"
    if rows.any():
        return "striped"
    return "plain"


def with_attributes(scene: Scene, **attributes: str) -> Scene:
    """`scene` with some attributes replaced (tests and the subject's photos build scenes this way)."""
    return replace(scene, **attributes)  # type: ignore[arg-type]
