"""One thing wrong with a custom resource, as the API server would say it and as a user should read it.

The CRD validator (:mod:`sdxl_contract.schema`) reports each problem once, with the field path, the
kind of check that failed, the value and the bound, so two renderings come from one fact:

- :meth:`FieldError.api_text` imitates the API server's wording (``spec.training.maxSteps: Invalid
  value: -5: spec.training.maxSteps in body should be greater than or equal to 1``), which is what
  ``kubectl apply`` prints and what ``crds/examples/invalid/*.yaml`` expect;
- :attr:`FieldError.text` is the message the operator puts on a failed resource and a workload puts
  in its termination message: the field, what is allowed, what was given
  (``spec.training.maxSteps: must be between 1 and 100000, got -5``).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

# CEL `reason` -> the API server's field.ErrorType wording.
_CEL_REASON_WORDING = {
    "FieldValueRequired": "Required value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
}

# Patterns whose regular expression says less to a user than a name does. Keyed by the CRD's pattern
# text; a contract test checks that every key still occurs in a CRD.
PATTERN_NAMES = {
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$":
        'a Kubernetes quantity such as "8", "500m" or "32Gi"',
    r"^inf2\.[0-9]*x?large$": "an Inferentia2 instance type such as inf2.8xlarge",
    r"\S": "a text that is not blank",
    r"^[0-9a-f]{64}$": "a SHA-256 digest: 64 lowercase hexadecimal digits",
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$":
        "a Kubernetes object name (lower case letters, digits, '-' and '.')",
}

# Why a multipleOf holds, said with both the multiple-of and the range message of that field.
_MULTIPLE_OF_REASONS = {8: "(the VAE downsamples by 8)"}


@dataclass(frozen=True)
class FieldError:
    """One failed check at ``path`` (``spec.training.rank``, ``spec.parts[1]``; ``<root>`` for the object)."""

    path: str
    check: str  # unknown | required | type | enum | minimum | maximum | multipleOf | minLength | maxLength
    #             | pattern | minItems | maxItems | maxProperties | format | rule | identity
    value: Any = None
    bound: Any = None
    message: str = ""  # rule and identity checks: the CRD's (or the API server's) own message
    reason: str = ""  # rule checks: the CEL rule's reason
    node: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the field's schema
    sort_key: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def text(self) -> str:
        """``<path>: <what is wrong and what is allowed>`` for a person."""
        return f"{self.path}: {self._problem()}"

    def __str__(self) -> str:
        return self.text

    def api_text(self) -> str:
        """The API server's wording of this error."""
        path, value, bound = self.path, self.value, self.bound
        if self.check == "unknown":
            return f'unknown field "{path}"'
        if self.check == "required":
            return f"{path}: Required value"
        if self.check == "identity":
            return self.message
        if self.check == "type":
            actual = type_name(value)
            return f'{path}: Invalid value: "{actual}": {path} in body must be of type {bound}: "{actual}"'
        if self.check == "enum":
            supported = ", ".join(_quote(option) for option in bound)
            return f"{path}: Unsupported value: {_quote(value)}: supported values: {supported}"
        if self.check == "rule":
            wording = _CEL_REASON_WORDING.get(self.reason)
            if wording:
                return f"{path}: {wording}: {self.message}"
            return f'{path}: Invalid value: "{type_name(value)}": {self.message}'
        if self.check == "maxLength":
            return f"{path}: Too long: may not be more than {bound} bytes"
        if self.check in ("maxItems", "maxProperties"):
            return f"{path}: Too many: {len(value)}: must have at most {bound} items"
        wording = {
            "minimum": f"should be greater than or equal to {bound}",
            "exclusiveMinimum": f"should be greater than {bound}",
            "maximum": f"should be less than or equal to {bound}",
            "exclusiveMaximum": f"should be less than {bound}",
            "multipleOf": f"should be a multiple of {bound}",
            "minLength": f"should be at least {bound} chars long",
            "pattern": f"should match '{bound}'",
            "minItems": f"should have at least {bound} items",
            "format": f"must be of type {bound}",
        }[self.check]
        return f"{path}: Invalid value: {_quote(value)}: {path} in body {wording}"

    def _problem(self) -> str:
        value, bound, node = self.value, self.bound, self.node
        if self.check == "unknown":
            known = [str(name) for name in self.bound or ()]
            return "unknown field" + _suggestion(self.path.rsplit(".", 1)[-1], known)
        if self.check == "required":
            return "required field is missing"
        if self.check in ("identity", "rule"):
            return self._rule_problem()
        if self.check == "type":
            return _type_problem(value, str(bound), node)
        if self.check == "enum":
            options = [str(option) for option in bound]
            hint = difflib.get_close_matches(str(value).lower(), options, n=1)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            return f"must be one of {', '.join(options)}, got {value!r}{extra}"
        if self.check in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            return f"must be {_range(node)}{_why(node)}, got {_number(value)}"
        if self.check == "multipleOf":
            return f"must be a multiple of {_number(bound)}{_why(node)}, got {_number(value)}"
        if self.check in ("minLength", "minItems"):
            unit = "characters" if self.check == "minLength" else "items"
            return "must not be empty" if bound == 1 else f"must have at least {bound} {unit}, got {len(value)}"
        if self.check in ("maxLength", "maxItems", "maxProperties"):
            unit = {"maxLength": "characters", "maxItems": "items", "maxProperties": "entries"}[self.check]
            return f"must have at most {bound} {unit}, got {len(value)}"
        if self.check == "pattern":
            name = PATTERN_NAMES.get(str(bound))
            return f"must be {name}, got {value!r}" if name else f"must match {bound}, got {value!r}"
        return f"must be a {bound}, got {value!r}"  # format

    def _rule_problem(self) -> str:
        message = self.message
        # The CRD's messages name their field for kubectl's sake ("spec.baseModel is required with
        # spec.lora"); after "spec.baseModel: " that would be said twice.
        for prefix in (f"{self.path} is ", f"{self.path} "):
            if message.startswith(prefix):
                message = message[len(prefix):]
                break
        if self.check == "rule" and isinstance(self.value, (str, int, float)) and not isinstance(self.value, bool):
            message = f"{message.rstrip('.')}, got {self.value!r}"
        return message


def type_name(value: Any) -> str:
    """The JSON type of ``value`` as the API server names it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def _describe(value: Any) -> str:
    kind = {"boolean": "a boolean", "integer": "an integer", "number": "a number", "string": "a string",
            "array": "a list", "object": "a mapping", "null": "null"}[type_name(value)]
    return kind if isinstance(value, (list, dict)) or value is None else f"{kind} ({value!r})"


def _type_problem(value: Any, expected: str, node: dict[str, Any]) -> str:
    if expected == "object":
        wanted = "a mapping of fields" if node.get("properties") else "a mapping"
    else:
        wanted = {"array": "a list", "integer": "an integer", "number": "a number", "boolean": "true or false",
                  "string": "a string", "integer,string": "an integer or a string"}.get(expected, expected)
    hint = ""
    if expected == "string" and type_name(value) in ("integer", "number"):
        hint = f' (quote it: "{value}")'  # YAML reads cpu: 8 as a number
    return f"must be {wanted}, got {_describe(value)}{hint}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)


def _range(node: dict[str, Any]) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    low_exclusive, high_exclusive = node.get("exclusiveMinimum") is True, node.get("exclusiveMaximum") is True
    if low is not None and high is not None:
        if low_exclusive or high_exclusive:
            lower = f"greater than {_number(low)}" if low_exclusive else f"at least {_number(low)}"
            upper = f"less than {_number(high)}" if high_exclusive else f"at most {_number(high)}"
            return f"{lower} and {upper}"
        return f"between {_number(low)} and {_number(high)}"
    if low is not None:
        return f"> {_number(low)}" if low_exclusive else f"≥ {_number(low)}"
    return f"< {_number(high)}" if high_exclusive else f"≤ {_number(high)}"


def _why(node: dict[str, Any]) -> str:
    reason = _MULTIPLE_OF_REASONS.get(node.get("multipleOf", 0))
    return f" {reason}" if reason else ""


def _suggestion(key: str, known: list[str]) -> str:
    # Users often write snake_case or the wrong case; compare in a normalised form first.
    head, *rest = key.split("_")
    camel = head + "".join(part[:1].upper() + part[1:] for part in rest)
    normalised = {name.lower(): name for name in known}
    guess = normalised.get(camel.lower()) or normalised.get(key.replace("-", "").lower())
    if guess is None:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f"; did you mean {guess}?" if guess else f"; known fields: {', '.join(known)}"
