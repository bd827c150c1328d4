"""A self-supervised ViT (DINO or DINOv2) loaded with `from_pretrained`: an image embedding that
tells one instance of a class from another.

DreamBooth prefers DINO to CLIP-I for subject fidelity because DINO was not trained to map
different objects of one class to nearby points: two different dogs are far apart for DINO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from sdxl_workloads.quality.image_batches import embed_in_batches
from sdxl_workloads.quality.model_unavailable import ModelUnavailable, check_local_path
from sdxl_workloads.quality.upright_rgb import upright_rgb

# The ViT-S/16 DINO model of the DreamBooth evaluation protocol.
DEFAULT_DINO_MODEL = "facebook/dino-vits16"


@dataclass(frozen=True)
class DinoModel:
    model: Any  # transformers ViTModel or Dinov2Model, eval mode, on `device`
    image_processor: Any
    device: str

    @classmethod
    def load(cls, name_or_path: str, device: str = "cpu") -> DinoModel:
        """Load model and image processor; ModelUnavailable (with the reason) when either cannot be loaded."""
        check_local_path("DINO", name_or_path)
        try:
            from transformers import AutoImageProcessor, AutoModel

            model: Any = AutoModel.from_pretrained(name_or_path)
            image_processor: Any = AutoImageProcessor.from_pretrained(name_or_path)  # type: ignore[no-untyped-call]
        except (OSError, ValueError, ImportError) as error:
            raise ModelUnavailable(f"DINO model {name_or_path} could not be loaded: {error}") from error
        return cls(model=model.eval().to(device), image_processor=image_processor, device=device)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The CLS token of the last (layer-normed) hidden state per image, as DINO's own evaluation
        uses it; not ViTModel's pooler, whose extra dense+tanh layer DINO never trained."""

        def embed(batch: Sequence[Image.Image]) -> torch.Tensor:
            inputs = self.image_processor(images=[upright_rgb(image) for image in batch], return_tensors="pt")
            output = self.model(pixel_values=inputs["pixel_values"].to(self.device))
            cls_tokens: torch.Tensor = output.last_hidden_state[:, 0]
            return cls_tokens

        return embed_in_batches(images, embed)
