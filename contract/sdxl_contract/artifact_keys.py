"""The keys of a workload result's ``artifacts`` and ``metrics`` that the operator reads.

A result is ``{"status": "Succeeded", "artifacts": {...}, "metrics": {...}}`` in the termination
message (see :mod:`sdxl_contract.workload_protocol`). The artifact values are URIs.
"""

from __future__ import annotations

# Artifacts.
LORA = "lora"  # train: the diffusers-format LoRA file
KOHYA_LORA = "kohyaLora"  # train: the kohya/A1111/ComfyUI-format copy
VALIDATION_IMAGES = "validationImages"  # train: the folder of validation images
COMPILED = "compiled"  # compile/prepare: the folder a server loads
TRAIN_ARTIFACTS: tuple[str, ...] = (LORA, KOHYA_LORA, VALIDATION_IMAGES)

# Metrics.
LORA_SHA256 = "loraSha256"  # train: sha256 of the LoRA file, which keys compiled models
STEPS = "steps"  # train: the optimizer steps run
FINAL_LOSS = "finalLoss"  # train: the loss of the last step
COMPILE_KEY = "key"  # compile: the compile key the artifact was published under
CACHE_HIT = "cacheHit"  # compile: an artifact under the same key was reused, nothing compiled
