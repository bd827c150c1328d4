"""Own only what you created: whether an object in a child's place is this resource's child.

The operator reads, patches, scales and deletes an object only when its *controller* owner
reference carries this custom resource's uid (controller-runtime's rule). Anything else with a
child's name, including a child of an older object of the same name (another uid), is in the way:
the resource reports :class:`NameConflict` naming it and what to do, and the object is left exactly
as it is. Pure; both controllers (and the end-to-end tests) use it.

Compile Jobs are shared by compile key between the SDXLDeployments of a namespace, so one
deployment may follow a Job that another one owns: :func:`shared_compile_owner` says which
deployment's Job it is, and the controller trusts it only while that deployment still exists with
that uid. A Job with the key's label but no SDXLDeployment controller is never trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxl_contract.failure_reasons import FailureReason
from sdxl_operator.core.custom_resources import GROUP

DEPLOYMENT_KIND = "SDXLDeployment"


class NameConflict(Exception):
    """An object this resource did not create stands where one of its children must go."""

    reason = FailureReason.NAME_CONFLICT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def controller_reference(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference marked ``controller: true``, or None."""
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return reference  # type: ignore[no-any-return]
    return None


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether ``owner`` (a custom resource body) is the controller of ``obj``, by uid."""
    uid = (owner.get("metadata") or {}).get("uid")
    reference = controller_reference(obj)
    return bool(uid) and reference is not None and reference.get("uid") == uid


def _holder(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> str:
    reference = controller_reference(obj)
    if reference is None:
        return "it has no controller owner reference (another application or a person created it)"
    owner_meta = owner.get("metadata") or {}
    kind, name, uid = reference.get("kind"), reference.get("name"), reference.get("uid")
    if kind == owner.get("kind") and name == owner_meta.get("name"):
        return (f"it belongs to an older {kind} of the same name (uid {uid}, this one is {owner_meta.get('uid')}); "
                "it goes when the garbage collector removes it")
    return f"it is controlled by {kind} {name} (uid {uid})"


def name_conflict(obj: Mapping[str, Any], owner: Mapping[str, Any], kind: str | None = None) -> NameConflict:
    """The conflict for ``obj`` standing where a child of ``owner`` must go."""
    meta, owner_meta = obj.get("metadata") or {}, owner.get("metadata") or {}
    what = f"{kind or obj.get('kind') or 'object'} {meta.get('namespace') or owner_meta.get('namespace')}/{meta.get('name')}"
    return NameConflict(
        f"{what} is in the way of this {owner.get('kind')}'s child of that name, and the operator did not create it: "
        f"{_holder(obj, owner)}. The operator leaves it untouched. Delete or rename it if it is not needed, or "
        f"create this {owner.get('kind')} under another name."
    )


def require_controlled(obj: Mapping[str, Any] | None, owner: Mapping[str, Any], kind: str) -> None:
    """Raise :class:`NameConflict` unless ``obj`` is absent or controlled by ``owner``."""
    if obj is not None and not is_controlled_by(obj, owner):
        raise name_conflict(obj, owner, kind)


def shared_compile_owner(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the SDXLDeployment controlling a compile Job, or None when no SDXLDeployment does."""
    reference = controller_reference(job)
    if reference is None or reference.get("kind") != DEPLOYMENT_KIND:
        return None
    if str(reference.get("apiVersion") or "").split("/")[0] != GROUP:
        return None
    name, uid = reference.get("name"), reference.get("uid")
    if not isinstance(name, str) or not isinstance(uid, str) or not name or not uid:
        return None
    return name, uid
