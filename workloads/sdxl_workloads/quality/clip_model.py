"""A CLIP model loaded with `from_pretrained`: image and text embeddings in one shared space.

CLIP-I (subject fidelity) compares image embeddings of generated images with those of the real
photos; CLIP-T (prompt fidelity) compares each generated image with its prompt's text embedding.
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

# A common choice for CLIP scores of generated images; any CLIPModel folder or hub id with its
# processor files works.
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class ClipModel:
    model: Any  # transformers.CLIPModel, eval mode, on `device`
    processor: Any  # transformers.CLIPProcessor (tokenizer + image processor)
    device: str

    @classmethod
    def load(cls, name_or_path: str, device: str = "cpu") -> ClipModel:
        """Load model and processor; ModelUnavailable (with the reason) when either cannot be loaded."""
        check_local_path("CLIP", name_or_path)
        try:
            from transformers import CLIPModel, CLIPProcessor

            model: Any = CLIPModel.from_pretrained(name_or_path)
            processor = CLIPProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError, ImportError) as error:
            # OSError: not found locally and no hub (or no such repo); ValueError: not a CLIP
            # checkpoint or an invalid repo id; ImportError: transformers not installed.
            raise ModelUnavailable(f"CLIP model {name_or_path} could not be loaded: {error}") from error
        return cls(model=model.eval().to(device), processor=processor, device=device)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """One projected image embedding per image, shape (len(images), projection_dim)."""

        def embed(batch: Sequence[Image.Image]) -> torch.Tensor:
            inputs = self.processor(images=[upright_rgb(image) for image in batch], return_tensors="pt")
            return _features(self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device)))

        return embed_in_batches(images, embed)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """One projected text embedding per text; texts longer than CLIP's 77 tokens are cut, as
        the SDXL text encoders cut them."""

        def embed(batch: Sequence[str]) -> torch.Tensor:
            inputs = self.processor(text=list(batch), padding=True, truncation=True, return_tensors="pt")
            return _features(self.model.get_text_features(
                input_ids=inputs["input_ids"].to(self.device),
                attention_mask=inputs["attention_mask"].to(self.device),
            ))

        return embed_in_batches(texts, embed)


def _features(output: Any) -> torch.Tensor:
    """The projected embeddings: transformers 4.x returns them as a tensor, 5.x as the pooler output
    of a model output (already projected)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
