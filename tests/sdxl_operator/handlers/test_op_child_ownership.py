"""Own only what you created: the ownership rule, the conflict message, and which shared compile Jobs count."""

from __future__ import annotations

from typing import Any

import pytest

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.handlers.child_ownership import (
    NameConflict,
    is_controlled_by,
    name_conflict,
    require_controlled,
    shared_compile_owner,
)
from sdxl_operator.manifests.compile_job import build_compile_job
from sdxl_operator.manifests.inference_service import build_inference_service

OWNER = {"apiVersion": "sdxl.io/v1alpha1", "kind": "SDXLDeployment",
         "metadata": {"name": "alice", "namespace": "team-a", "uid": "uid-now"}}


def ref(uid: str, *, controller: bool = True, kind: str = "SDXLDeployment", name: str = "alice",
        api_version: str = "sdxl.io/v1alpha1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": controller}


def obj(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": "alice", "namespace": "team-a", "ownerReferences": list(refs)}}


# name: (object, controlled by OWNER?)
CASES = {
    "built by the operator for this owner": (build_inference_service(OWNER), True),
    "controller reference with this uid": (obj(ref("uid-now")), True),
    "no owner references (another application)": (obj(), False),
    "an older object of the same name (other uid)": (obj(ref("uid-old")), False),
    "this uid, but not as controller": (obj(ref("uid-now", controller=False)), False),
    "controlled by something else, this owner only a plain owner": (
        obj(ref("uid-now", controller=False), ref("x", kind="Deployment", name="web")), False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_only_the_controller_uid_counts(case: str) -> None:
    found, mine = CASES[case]
    assert is_controlled_by(found, OWNER) is mine
    if mine:
        require_controlled(found, OWNER, "Service")
    else:
        with pytest.raises(NameConflict) as raised:
            require_controlled(found, OWNER, "Service")
        assert raised.value.reason is FailureReason.NAME_CONFLICT
    require_controlled(None, OWNER, "Service")  # nothing in the way


def test_owner_without_uid_owns_nothing() -> None:
    assert not is_controlled_by(obj(ref("")), {**OWNER, "metadata": {**OWNER["metadata"], "uid": ""}})


@pytest.mark.parametrize(("found", "says"), [
    (obj(), "has no controller owner reference"),
    (obj(ref("uid-old")), "older SDXLDeployment of the same name (uid uid-old, this one is uid-now)"),
    (obj(ref("u2", kind="Deployment", name="web", api_version="apps/v1")), "controlled by Deployment web (uid u2)"),
])
def test_the_conflict_names_the_object_who_holds_it_and_what_to_do(found: dict[str, Any], says: str) -> None:
    message = name_conflict(found, OWNER, "Service").message
    assert message.startswith("Service team-a/alice is in the way")
    assert says in message
    assert "leaves it untouched" in message and "Delete or rename it" in message and "another name" in message


@pytest.mark.parametrize(("found", "owner"), [
    (obj(ref("u1", name="bob")), ("bob", "u1")),
    (obj(), None),
    (obj(ref("u1", kind="Deployment", api_version="apps/v1")), None),
    (obj(ref("u1", api_version="other.io/v1")), None),  # same kind name, another API group
    (obj(ref("u1", controller=False)), None),
])
def test_a_compile_job_is_shared_only_from_an_sdxldeployment(found: dict[str, Any], owner: Any) -> None:
    assert shared_compile_owner(found) == owner


def test_a_built_compile_job_names_its_deployment_as_shared_owner() -> None:
    from sdxl_operator.core.settings import OperatorSettings

    resolved = {"accelerator": "cpu", "baseModel": "builtin:tiny", "lora": "s3://b/l", "loraScale": 1.0}
    job = build_compile_job(OWNER, resolved, "a" * 64, OperatorSettings())
    assert shared_compile_owner(job) == ("alice", "uid-now") and is_controlled_by(job, OWNER)
