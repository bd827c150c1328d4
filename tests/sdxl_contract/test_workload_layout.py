"""The facts of the workload protocol and the artifact store that both sides read from the contract."""

from __future__ import annotations

import pytest

from sdxl_contract import accelerators, digests, exit_codes, uris
from sdxl_contract.compiled_artifacts import COMPLETE_MARKER, compiled_relpath, compiled_uri
from sdxl_contract.failure_reasons import (
    ALL_REASONS,
    OPERATOR_ONLY_REASONS,
    WORKLOAD_REASONS,
    FailureReason,
    parse_reason,
)

pytestmark = pytest.mark.compat

KEY = "0123456789abcdef" * 4


@pytest.mark.parametrize(("store", "expected"), [
    ("s3://bucket/store/", f"s3://bucket/store/compiled/{KEY}"),
    ("pvc://sdxl-artifacts/store", f"pvc://sdxl-artifacts/store/compiled/{KEY}"),
    ("/data/store", f"/data/store/compiled/{KEY}"),
])
def test_compiled_models_live_under_compiled_key(store: str, expected: str) -> None:
    assert compiled_uri(store, KEY) == expected
    assert expected.endswith(compiled_relpath(KEY))
    assert COMPLETE_MARKER == "COMPLETE"


@pytest.mark.parametrize(("uri", "scheme", "claim"), [
    ("s3://bucket/prefix", "s3", None),
    ("pvc://claim/some/path", "pvc", "claim"),
    ("pvc://claim", "pvc", "claim"),
    ("pvc://", "pvc", None),
    ("builtin:tiny", "builtin", None),
    ("/data/model", "local", None),
    ("stabilityai/stable-diffusion-xl-base-1.0", "local", None),
])
def test_uri_grammar(uri: str, scheme: str, claim: str | None) -> None:
    assert uris.scheme_of(uri) == scheme
    assert uris.pvc_claim(uri) == claim
    assert uris.is_builtin(uri) == (scheme == "builtin")


def test_sha256_digests_are_compared_lowercase() -> None:
    assert digests.is_sha256("AB" * 32) and digests.is_sha256("ab" * 32)
    assert not digests.is_sha256("ab" * 31) and not digests.is_sha256("zz" * 32) and not digests.is_sha256(None)
    assert digests.normalise_sha256("AB" * 32) == "ab" * 32


def test_every_accelerator_has_one_profile() -> None:
    assert accelerators.ACCELERATORS == ("neuron", "nvidia", "cpu")
    assert accelerators.profile_of("neuron").device_resource == "aws.amazon.com/neuron"
    assert accelerators.profile_of("nvidia").device_resource == "nvidia.com/gpu"
    assert accelerators.profile_of("cpu").device_resource is None
    assert [p.name for p in accelerators.PROFILES.values() if p.compiles_for_fixed_shapes] == ["neuron"]
    with pytest.raises(ValueError, match="neuron, nvidia, cpu"):
        accelerators.profile_of("tpu")


def test_permanent_failures_exit_with_the_permanent_code() -> None:
    for reason in ("InvalidInput", "InvalidSpec", "CompileFailed", "OutOfMemory"):
        assert exit_codes.exit_code_for(reason) == exit_codes.PERMANENT_FAILURE_EXIT_CODE
    for reason in ("StorageError", "InternalError"):
        assert exit_codes.exit_code_for(reason) == exit_codes.RETRYABLE_FAILURE_EXIT_CODE
    assert set(WORKLOAD_REASONS) >= exit_codes.PERMANENT_REASONS


def test_workloads_report_only_their_reasons() -> None:
    assert set(WORKLOAD_REASONS) | {r.value for r in OPERATOR_ONLY_REASONS} == set(ALL_REASONS)
    assert parse_reason("OutOfMemory") is FailureReason.OUT_OF_MEMORY
    assert parse_reason("NameConflict") is FailureReason.INTERNAL_ERROR  # a workload cannot claim it
    assert parse_reason(None, FailureReason.STORAGE_ERROR) is FailureReason.STORAGE_ERROR
