"""Instance photos: finding, captions, orientation, colour modes, crops, and the bad-input table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage.output import check_writable
from sdxl_workloads.train.instance_data import load_instance_data, open_rgb, to_rgb

PROMPT = "a photo of sks person"


def _photo(path: Path, size: tuple[int, int] = (96, 80), color: tuple[int, int, int] = (200, 40, 40)) -> Path:
    """A small photo with a gradient, so crops and flips are visible in the pixels."""
    w, h = size
    xs = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to(np.array(color, dtype=np.float32) * 0.5 + xs * 0.5, (h, w, 3))
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path)
    return path


def _folder(tmp_path: Path, count: int = 3, size: tuple[int, int] = (96, 80)) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        _photo(folder / f"img{i}.png", size)
    return folder


# ---------------------------------------------------------------------------------------------
# What is found and how it is captioned


def test_captions_come_from_same_named_txt_else_the_instance_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path, 4)
    (folder / "img0.txt").write_text("  sks person\n at  the beach \n")
    (folder / "img1.txt").write_bytes("\ufeffsks person, café".encode())  # a BOM from Windows editors
    (folder / "img2.txt").write_text("   \n")  # empty: fall back, with a warning
    data = load_instance_data(folder, PROMPT, 64)
    assert [(e.path.name, e.caption, e.caption_from_file) for e in data.examples] == [
        ("img0.png", "sks person at the beach", True),
        ("img1.png", "sks person, café", True),
        ("img2.png", PROMPT, False),
        ("img3.png", PROMPT, False),
    ]
    assert "img2.txt is empty" in capsys.readouterr().out


def test_harmless_files_are_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, 3)
    for name in (".DS_Store", "._img0.png", "Thumbs.db", "desktop.ini", "README", "README.md", "notes.json",
                 "dataset.toml", "orphan.txt"):
        (folder / name).write_bytes(b"\x00junk")
    (folder / "extra").mkdir()
    data = load_instance_data(folder, PROMPT, 64)
    assert [e.path.name for e in data.examples] == ["img0.png", "img1.png", "img2.png"]
    skipped = {path.name: why for path, why in data.skipped}
    assert set(skipped) == {".DS_Store", "._img0.png", "Thumbs.db", "desktop.ini", "README", "README.md",
                            "notes.json", "dataset.toml", "orphan.txt", "extra"}
    assert "caption without a photo" in skipped["orphan.txt"]
    assert "subfolders are not searched" in skipped["extra"]
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warned = {Path(e["message"].split(": ")[0].removeprefix("skipping ")).name for e in events
              if e["event"] == "log" and e.get("level") == "warning"}
    assert warned == set(skipped)


def test_loads_a_uri_through_storage(sample_images_path: Path) -> None:
    data = load_instance_data("builtin:sample-subject", PROMPT, 64)
    assert data.folder == sample_images_path
    assert len(data) == 10
    assert all(e.image.size == (64, 64) and e.image.mode == "RGB" for e in data.examples)


# ---------------------------------------------------------------------------------------------
# Orientation and colour modes


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_honoured(tmp_path: Path, fmt: str) -> None:
    upright = np.zeros((120, 80, 3), dtype=np.uint8)
    upright[:60] = (255, 0, 0)  # red on top
    upright[60:] = (0, 0, 255)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / f"phone.{fmt.lower()}"
    stored.save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    image = open_rgb(path)
    assert image.size == (80, 120)
    top, bottom = np.asarray(image)[10, 40], np.asarray(image)[110, 40]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def _rgba() -> Image.Image:
    image = Image.new("RGBA", (4, 4), (0, 0, 255, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    return image


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.info["transparency"] = 0
    return image


def _i16() -> Image.Image:
    image = Image.fromarray(np.array([[65535, 32768], [0, 0]], dtype=np.uint16))  # a 16-bit PNG's mode
    assert image.mode.startswith("I;16")
    return image


def _palette() -> Image.Image:
    image = Image.new("P", (2, 2), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    return image


MODES = [
    # (name, image, pixel to check, expected RGB there)
    ("RGBA transparent -> white", _rgba, (0, 0), (255, 255, 255)),
    ("RGBA opaque keeps colour", _rgba, (1, 1), (0, 0, 255)),
    ("LA transparent -> white", lambda: Image.new("LA", (2, 2), (0, 0)), (0, 0), (255, 255, 255)),
    ("P with transparency", _palette_with_transparency, (0, 0), (255, 255, 255)),
    ("P opaque entry", _palette_with_transparency, (1, 1), (0, 0, 255)),
    ("P without transparency", _palette, (0, 0), (10, 200, 30)),
    ("L grayscale", lambda: Image.new("L", (2, 2), 77), (0, 0), (77, 77, 77)),
    ("1 bit", lambda: Image.new("1", (2, 2), 1), (0, 0), (255, 255, 255)),
    ("I;16 full scale", _i16, (0, 0), (255, 255, 255)),
    ("I;16 half scale", _i16, (1, 0), (128, 128, 128)),
    ("CMYK no ink -> white", lambda: Image.new("CMYK", (2, 2), (0, 0, 0, 0)), (0, 0), (255, 255, 255)),
    ("CMYK full cyan", lambda: Image.new("CMYK", (2, 2), (255, 0, 0, 0)), (0, 0), (0, 255, 255)),
    ("F float", lambda: Image.new("F", (2, 2), 255.0), (0, 0), (255, 255, 255)),
]


@pytest.mark.parametrize(("name", "make", "xy", "expected"), MODES, ids=[m[0] for m in MODES])
def test_colour_modes_become_rgb(name: str, make: Callable[[], Image.Image], xy: tuple[int, int],
                                 expected: tuple[int, int, int]) -> None:
    source = make()
    rgb = to_rgb(source)
    assert rgb.mode == "RGB"
    assert rgb.size == source.size
    assert rgb.getpixel(xy) == expected


def test_modes_survive_a_round_trip_through_files(tmp_path: Path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    _rgba().resize((64, 64)).save(folder / "a.png")
    Image.new("L", (64, 64), 90).save(folder / "b.png")
    Image.new("CMYK", (64, 64), (0, 0, 0, 0)).save(folder / "c.jpg")
    _i16().resize((64, 64)).save(folder / "d.png")
    data = load_instance_data(folder, PROMPT, 64)
    assert [e.image.mode for e in data.examples] == ["RGB"] * 4


# ---------------------------------------------------------------------------------------------
# Cropping and SDXL's time ids


@pytest.mark.parametrize(("size", "resolution", "resized", "top_left"), [
    ((96, 80), 64, (64, 77), (0, 6)),  # landscape: (h, w) = (64, 77), crop moves right
    ((80, 96), 64, (77, 64), (6, 0)),  # portrait: crop moves down
    ((64, 64), 64, (64, 64), (0, 0)),
    ((200, 100), 64, (64, 128), (0, 32)),  # downscaled 2x first
    ((40, 32), 64, (64, 80), (0, 8)),  # upscaled 2x (the most allowed)
])
def test_center_crop_and_time_ids(tmp_path: Path, size: tuple[int, int], resolution: int,
                                  resized: tuple[int, int], top_left: tuple[int, int]) -> None:
    folder = _folder(tmp_path, 3, size)
    example = load_instance_data(folder, PROMPT, resolution).examples[0]
    assert example.image.size == (resolution, resolution)
    assert example.original_size == (size[1], size[0])
    assert example.resized_size == resized
    assert example.crops_coords_top_left == top_left
    assert example.time_ids() == (size[1], size[0], *top_left, resolution, resolution)
    assert example.crop == "center"


def test_flip_mirrors_pixels_and_the_crop_position(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 3, (120, 64))
    example = load_instance_data(folder, PROMPT, 64).examples[0]
    flipped = example.flipped()
    assert np.array_equal(np.asarray(flipped.image), np.asarray(example.image)[:, ::-1])
    # 120 px wide, crop 64 from left 28: the mirrored crop starts 120 - 28 - 64 = 28 from the left.
    assert example.crops_coords_top_left == (0, 28)
    assert flipped.crops_coords_top_left == (0, 120 - 28 - 64)
    assert flipped.flipped().crops_coords_top_left == example.crops_coords_top_left
    assert flipped.caption == example.caption and flipped.original_size == example.original_size


def test_face_crop_follows_the_face(sample_images_path: Path) -> None:
    centre = load_instance_data(sample_images_path, PROMPT, 256, crop="center").examples
    face = load_instance_data(sample_images_path, PROMPT, 256, crop="face").examples
    assert sum(e.crop == "face" for e in face) >= 5
    # subject_04 is landscape with the face well left of centre: the crop moves left.
    centre4, face4 = centre[4], face[4]
    assert face4.crop == "face"
    assert face4.crops_coords_top_left[1] < centre4.crops_coords_top_left[1]


def test_face_crop_falls_back_to_centre_without_a_face(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 3, (120, 64))
    data = load_instance_data(folder, PROMPT, 64, crop="face")
    assert [e.crop for e in data.examples] == ["center"] * 3
    assert data.examples[0].crops_coords_top_left == (0, 28)


# ---------------------------------------------------------------------------------------------
# Bad input: every case is refused before training with a message naming the file and the fix


def _corrupt(folder: Path) -> None:
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)


def _truncated_jpeg(folder: Path) -> None:
    _photo(folder / "cut.jpg", (96, 80))
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])


BAD_INPUT = [
    # (case, how to break a folder of 3 good 96x80 photos, resolution, message fragments)
    ("missing folder", lambda f: __import__("shutil").rmtree(f), 64, ["does not exist"]),
    ("a file, not a folder", lambda f: (__import__("shutil").rmtree(f), f.write_text("x")), 64,
     ["is a file; point instanceImages at a folder"]),
    ("empty folder", lambda f: [p.unlink() for p in f.iterdir()], 64,
     ["is empty; put 10-20 photos of the subject"]),
    ("only junk files", lambda f: ([p.unlink() for p in f.iterdir()], (f / "README.md").write_text("x")), 64,
     ["has no photos; DreamBooth needs at least 3"]),
    ("fewer than 3 photos", lambda f: (f / "img2.png").unlink(), 64,
     ["has only 2 photos; DreamBooth needs at least 3 (10-20 work best)"]),
    ("one photo", lambda f: [(f / n).unlink() for n in ("img1.png", "img2.png")], 64, ["has only 1 photo;"]),
    ("kohya subfolder layout", lambda f: (f / "10_sks person").mkdir() or [
        p.rename(f / "10_sks person" / p.name) for p in list(f.glob("*.png"))], 64,
     ["has no photos (photos in subfolders such as 10_sks person/ are not used: move them up)"]),
    ("corrupt image", _corrupt, 64, ["bad.png cannot be read as an image", "re-export it or remove it"]),
    ("truncated jpeg", _truncated_jpeg, 64, ["cut.jpg cannot be read as an image"]),
    ("image too small", lambda f: _photo(f / "small.png", (100, 120)), 512,
     ["small.png is 100x120 px, too small for resolution 512: its short side must be at least 256 px",
      "lower spec.training.resolution"]),
    ("unknown file type", lambda f: (f / "IMG_0001.HEIC").write_bytes(b"ftypheic"), 64,
     ["IMG_0001.HEIC: neither a photo", "Convert it to JPEG or PNG", "or remove it"]),
    ("two photos share a caption name", lambda f: _photo(f / "img0.jpg"), 64,
     ["img0.jpg and img0.png share a name", "rename one"]),
    ("caption not utf-8", lambda f: (f / "img0.txt").write_bytes(b"caf\xe9"), 64,
     ["img0.txt is not UTF-8 text", "save it as UTF-8"]),
    ("several problems at once", lambda f: (_corrupt(f), _photo(f / "tiny.png", (20, 20))), 64,
     ["bad.png cannot be read", "tiny.png is 20x20 px"]),
]


@pytest.mark.parametrize(("case", "damage", "resolution", "fragments"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_with_one_clear_message(
    tmp_path: Path, case: str, damage: Callable[[Path], object], resolution: int, fragments: list[str]
) -> None:
    folder = _folder(tmp_path, 3, (96, 80) if resolution <= 64 else (600, 520))
    damage(folder)
    with pytest.raises(WorkloadError) as err:
        load_instance_data(folder, PROMPT, resolution)
    assert err.value.reason == "InvalidInput"
    for fragment in fragments:
        assert fragment in err.value.message, err.value.message
    assert str(folder) in err.value.message or folder.name in err.value.message


def test_unwritable_output_is_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the output folder should be")
    with pytest.raises(WorkloadError, match="is a file, not a folder; choose a folder") as err:
        check_writable(str(tmp_path / "out"))
    assert err.value.reason == "InvalidInput"


def test_the_size_rule_allows_exactly_half_the_resolution(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 3, (32, 40))
    assert len(load_instance_data(folder, PROMPT, 64)) == 3
    _photo(folder / "img3.png", (31, 40))
    with pytest.raises(WorkloadError, match=r"img3\.png is 31x40 px"):
        load_instance_data(folder, PROMPT, 64)


def test_unknown_crop_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="center, face"):
        load_instance_data(_folder(tmp_path), PROMPT, 64, crop="smart")



def test_list_form_for_the_trainer(tmp_path: Path) -> None:
    examples = load_instance_data(_folder(tmp_path, 3, (96, 80)), PROMPT, 64).examples
    assert [e.path.name for e in examples] == ["img0.png", "img1.png", "img2.png"]
    assert examples[0].crop_top_left == examples[0].crops_coords_top_left == (0, 6)


def test_class_images_are_captioned_with_the_class_prompt_and_checked(tmp_path: Path) -> None:
    """The trainer's own path (train_command.class_examples_for) over given class images."""
    from sdxl_workloads.spec.finetune_spec import load_finetune_spec
    from sdxl_workloads.train import model_loading, train_command

    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(2):
        _photo(folder / f"c{i}.png", (64, 64))
    (folder / "c0.txt").write_text("ignored: class images use the class prompt")

    def class_examples(count: int) -> list[Any]:
        spec = load_finetune_spec({
            "baseModel": "builtin:tiny", "instanceImages": "builtin:sample-subject", "instancePrompt": PROMPT,
            "classPrompt": "a photo of a person",
            "priorPreservation": {"enabled": True, "numClassImages": count, "classImages": str(folder)},
            "training": {"resolution": 64, "mixedPrecision": "no"}, "resources": {"gpus": 0},
            "output": str(tmp_path / "out"),
        })
        plan = train_command.check_everything(spec, spec.to_dict(), "run", None)
        try:
            return list(train_command.class_examples_for(plan, model_loading.load_base_model(plan.model_path)))
        finally:
            plan.output.close()

    examples = class_examples(2)
    assert [(e.path.name, e.caption, e.caption_from_file) for e in examples] == [
        ("c0.png", "a photo of a person", False), ("c1.png", "a photo of a person", False)]
    _corrupt(folder)
    with pytest.raises(WorkloadError) as err:
        class_examples(3)
    assert err.value.reason == "InvalidInput"
    assert "bad.png cannot be read" in err.value.message
