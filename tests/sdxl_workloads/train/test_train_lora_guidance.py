"""Which UNet layers a LoRA touches decides whether classifier-free guidance keeps what it learned.

The pipeline's unconditional branch feeds the UNet zero text embeddings
(`force_zeros_for_empty_prompt`). A LoRA on the cross-attention keys and values (`attn2.to_k`,
`attn2.to_v`) multiplies those zeros, so the unconditional prediction stays the base model's and
guidance amplifies the learned subject. A LoRA on the projections of the image features (`to_q`,
`to_out.0`, the self-attention) moves the unconditional prediction too, and guidance, which pushes
away from it, cancels part of the subject: on `builtin:world` identity fell from 0.67 without
guidance to 0.12 at guidance 5 (bench/README.md, "Does the fine-tune learn the subject?"). The
small world's example recipe (crds/examples/finetune-world.yaml) trains the keys and values only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdxl_workloads.train.lora_setup import add_unet_lora

CROSS_ATTENTION_KV = ("attn2.to_k", "attn2.to_v")
CRD_DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def _unet_predictions(model_path: Path, targets: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor,
                                                                           torch.Tensor, torch.Tensor]:
    """(base unconditional, LoRA unconditional, base conditional, LoRA conditional) noise predictions."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(str(model_path), subfolder="unet").eval()
    config = unet.config
    latents = torch.randn(1, config.in_channels, 8, 8)
    timestep = torch.tensor([500])
    text_width = config.cross_attention_dim
    pooled_width = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
    zeros = (torch.zeros(1, 77, text_width), torch.zeros(1, pooled_width))
    prompt = (torch.randn(1, 77, text_width), torch.randn(1, pooled_width))

    def predict(embeds: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return unet(latents, timestep, encoder_hidden_states=embeds[0],
                        added_cond_kwargs={"text_embeds": embeds[1], "time_ids": time_ids}).sample

    base_uncond, base_cond = predict(zeros), predict(prompt)
    add_unet_lora(unet, rank=4, alpha=4, target_modules=targets)
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    return base_uncond, predict(zeros), base_cond, predict(prompt)


@pytest.mark.timeout(120)
def test_a_cross_attention_key_value_lora_leaves_the_unguided_branch_as_the_base_model(tiny_model_path: Path
                                                                                     ) -> None:
    base_uncond, lora_uncond, base_cond, lora_cond = _unet_predictions(tiny_model_path, CROSS_ATTENTION_KV)
    assert torch.equal(lora_uncond, base_uncond)
    assert not torch.allclose(lora_cond, base_cond, atol=1e-4), "the adapter changed nothing: the test is void"


@pytest.mark.timeout(120)
def test_a_lora_on_every_attention_projection_moves_the_unguided_branch(tiny_model_path: Path) -> None:
    base_uncond, lora_uncond, _, _ = _unet_predictions(tiny_model_path, CRD_DEFAULT_TARGETS)
    assert not torch.allclose(lora_uncond, base_uncond, atol=1e-4)
