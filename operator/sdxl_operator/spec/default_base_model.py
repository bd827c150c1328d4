"""The base model a fine-tune gets when its spec names none: the SDXLFineTune CRD's defaults.

For code that names the model before a fine-tune's spec is at hand (a deployment's LoRA given by URI,
a set of fine-tunes), so every side defaults to the same model and revision.
"""

from __future__ import annotations

from sdxl_contract.finetune_spec import KIND
from sdxl_contract.schema import default_spec

DEFAULT_BASE_MODEL: str = default_spec(KIND, {})["baseModel"]
DEFAULT_REVISION: str = default_spec(KIND, {})["baseModelRevision"]
