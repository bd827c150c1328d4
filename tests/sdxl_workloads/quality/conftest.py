"""Small random CLIP, ViT (DINO) and DINOv2 models, built from configs and saved to a temp folder, so
the quality metrics load them through the same `from_pretrained` calls as the real ones; and the
sample subject's photos as PIL images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

# Small enough to embed a photo in milliseconds, large enough to have several patches per image.
IMAGE_SIZE = 32
PATCH_SIZE = 8
TINY_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLIPModel + CLIPProcessor (the locally built BPE tokenizer of builtin:tiny) in one folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from sdxl_workloads.builtin.tiny_model import END_TOKEN, MODEL_MAX_LENGTH, START_TOKEN, build_tokenizer

    tokenizer = build_tokenizer()
    end = tokenizer.convert_tokens_to_ids(END_TOKEN)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer.get_vocab()), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=MODEL_MAX_LENGTH,
            # CLIP pools the text at the end-of-text token; the ids must be the tokenizer's.
            bos_token_id=tokenizer.convert_tokens_to_ids(START_TOKEN), eos_token_id=end, pad_token_id=end,
        ),
        vision_config=TINY_VIT,
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny-clip")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_vit_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ViTModel (the architecture of facebook/dino-vits16) with its image processor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-dino-vit")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        ViTModel(ViTConfig(**TINY_VIT)).save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dinov2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dinov2Model with the image processor the DINOv2 checkpoints use (BitImageProcessor)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("tiny-dinov2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        Dinov2Model(Dinov2Config(**TINY_VIT)).save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def subject_photos(sample_images_path: Path) -> list[Image.Image]:
    """The builtin sample subject's photos, upright (one is stored rotated with an EXIF tag)."""
    return [ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            for path in sorted(sample_images_path.glob("*.png"))]


@pytest.fixture(scope="session")
def faceless_images() -> list[Image.Image]:
    """Images with no subject and no face: colour noise and flat colours."""
    noise = [np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8) for seed in (0, 1)]
    return [Image.fromarray(pixels, "RGB") for pixels in noise] + [
        Image.new("RGB", (256, 256), colour) for colour in ((128, 128, 128), (20, 60, 200))
    ]
