"""A labelled grid of served images: one row per prompt, one column per model (base, fine-tuned).

The demo's picture of what a fine-tune learned: the same prompt and seed drawn by the base model
and by the fine-tune side by side, so a reader sees the subject appear in each new setting and
sees whether the plain class prompt ("a photo of a person") started drawing it too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

# Each served image (64 px for builtin:world) is scaled up with nearest neighbour so its flat
# regions stay crisp and readable.
CELL_PIXELS = 128
LABEL_WIDTH = 240  # the prompt column on the left
HEADER_HEIGHT = 24  # the column titles on top
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def sheet_size(rows: int, columns: int) -> tuple[int, int]:
    """(width, height) of a sheet of `rows` prompts by `columns` models."""
    return LABEL_WIDTH + columns * CELL_PIXELS, HEADER_HEIGHT + rows * CELL_PIXELS


def render_contact_sheet(column_titles: Sequence[str], rows: Sequence[tuple[str, Sequence[bytes]]]) -> Image.Image:
    """The grid: `rows` are (prompt, one PNG per column in `column_titles`' order)."""
    width, height = sheet_size(len(rows), len(column_titles))
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(column_titles):
        draw.text((LABEL_WIDTH + column * CELL_PIXELS + 6, 6), title, fill=INK)
    for row, (prompt, images) in enumerate(rows):
        if len(images) != len(column_titles):
            raise ValueError(f"row {prompt!r} has {len(images)} images for {len(column_titles)} columns")
        top = HEADER_HEIGHT + row * CELL_PIXELS
        draw.multiline_text((6, top + CELL_PIXELS // 2 - 12), _wrap(prompt, 36), fill=INK)
        for column, png in enumerate(images):
            cell = Image.open(io.BytesIO(png)).convert("RGB")
            cell = cell.resize((CELL_PIXELS, CELL_PIXELS), Image.Resampling.NEAREST)
            sheet.paste(cell, (LABEL_WIDTH + column * CELL_PIXELS, top))
    return sheet


def save_contact_sheet(sheet: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG", optimize=True)
    return path


def _wrap(text: str, width: int) -> str:
    """`text` broken into lines of at most `width` characters, at spaces."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)
