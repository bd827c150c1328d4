"""A CRD's CEL rules (``x-kubernetes-validations``), evaluated as the API server does after the schema passed.

``self`` is bound to the value at the rule's node; a rule's ``fieldPath`` moves the error to a child
field and its ``reason`` picks the error type. Transition rules (those that mention ``oldSelf``) run
only on an update, when the old object holds a value at the same path.

Known differences from the API server: standard CEL only (cel-python has no Kubernetes extension
libraries; our rules need none), ``type: number`` values written as integers stay CEL ints, lists are
not correlated with ``oldSelf`` (ours are atomic), and cost budgets and validation ratcheting are not
modelled.
"""

from __future__ import annotations

from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from sdxl_contract.crd_schema import CelRule, LoadedCrd
from sdxl_contract.field_error import FieldError

MISSING: Any = object()  # no old value at this path: a create, or a field the old object lacked


def cel_errors(value: Any, schema: dict[str, Any], crd: LoadedCrd, path: str = "", old: Any = MISSING
               ) -> list[FieldError]:
    """The failed rules at ``schema`` and below, for ``value`` (defaulted and structurally valid)."""
    errors: list[FieldError] = []
    for rule in crd.rules.get(id(schema), []):
        if rule.is_transition and old is MISSING:
            continue
        if not _rule_holds(rule, value, old):
            where = f"{path}{rule.field_path}" if path else rule.field_path.lstrip(".") or "<root>"
            errors.append(FieldError(where, "rule", value, message=_message(rule, value), reason=rule.reason,
                                     node=schema))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for name, item in value.items():
            child = properties.get(name, additional if isinstance(additional, dict) else None)
            if child is None:
                continue
            old_item = old.get(name, MISSING) if isinstance(old, dict) else MISSING
            errors.extend(cel_errors(item, child, crd, f"{path}.{name}" if path else name, old_item))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors.extend(cel_errors(item, schema["items"], crd, f"{path}[{index}]"))
    return errors


def _rule_holds(rule: CelRule, value: Any, old: Any) -> bool:
    activation = {"self": json_to_cel(value)}
    if rule.is_transition:
        activation["oldSelf"] = json_to_cel(old)
    try:
        result = rule.program.evaluate(activation)
    except CELEvalError:
        return False
    # cel-python returns evaluation errors as values as well as raising them.
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def _message(rule: CelRule, value: Any) -> str:
    if rule.message_program is not None:
        try:
            text = rule.message_program.evaluate({"self": json_to_cel(value)})
        except CELEvalError:
            text = None
        if isinstance(text, str) and text.strip():
            return text.strip()
    return rule.message
