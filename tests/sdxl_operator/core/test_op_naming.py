"""Child names are deterministic DNS-1123 labels; long names become slug + hash and stay distinct."""

from __future__ import annotations

import pytest

from sdxl_operator.core import naming

LONG = "a" * 70
LONG_OTHER = "a" * 69 + "b"


@pytest.mark.parametrize(
    ("parent", "suffix", "expected"),
    [
        ("ft", "train", "ft-train"),
        ("my-finetune", "spec", "my-finetune-spec"),
        ("a" * 57, "train", "a" * 57 + "-train"),  # exactly 63
        ("a" * 58, "train", "a" * 48 + "-" + naming.short_hash("a" * 58 + "-train") + "-train"),
        ("My.Fine_Tune", "train", "my-fine-tune-" + naming.short_hash("My.Fine_Tune-train") + "-train"),
        ("web.v1", "", "web-v1-" + naming.short_hash("web.v1")),
    ],
)
def test_child_name_table(parent: str, suffix: str, expected: str) -> None:
    assert naming.child_name(parent, suffix) == expected
    assert naming.is_dns_label(expected)


def test_long_names_that_share_a_prefix_stay_distinct_and_fit() -> None:
    first, second = naming.finetune_job_name(LONG), naming.finetune_job_name(LONG_OTHER)
    assert first != second
    assert len(first) == 63 and len(second) == 63
    assert first.endswith("-train") and naming.is_dns_label(first)
    assert naming.finetune_job_name(LONG) == first  # deterministic


@pytest.mark.parametrize(
    ("function", "args", "expected"),
    [
        (naming.finetune_job_name, ("ft",), "ft-train"),
        (naming.finetune_configmap_name, ("ft",), "ft-spec"),
        (naming.compile_job_name, ("dep", "0123456789abcdef"), "dep-compile-01234567"),
        (naming.deployment_name, ("dep",), "dep"),
    ],
)
def test_named_children(function: object, args: tuple[str, ...], expected: str) -> None:
    assert callable(function)
    assert function(*args) == expected


def test_deployment_name_starts_with_a_letter_for_services() -> None:
    name = naming.deployment_name("1st")
    assert name[0].isalpha() and naming.is_dns_label(name)


@pytest.mark.parametrize(
    ("value", "expected_same"),
    [("ft", True), ("Fine_Tune.v2", True), ("x" * 63, True), ("x" * 64, False), ("a.b-", False)],
)
def test_label_value(value: str, expected_same: bool) -> None:
    result = naming.label_value(value)
    assert (result == value) is expected_same
    assert len(result) <= 63


def test_bad_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match="suffix"):
        naming.child_name("ft", "Train!")


# Names that look alike once a prefix or a slug is applied: each pair must keep distinct children.
# (Only a name copied from another's hashed child name, deliberately, could still collide.)
LOOKALIKES = [
    ("1abc", "d-1abc"),
    ("1.abc", "1-abc"),
    ("web.v1", "web-v1"),
    ("9" * 70, "9" * 69 + "8"),
    ("0", "d-0"),
    ("a" * 63, "a" * 64),
]


@pytest.mark.parametrize(("first", "second"), LOOKALIKES)
def test_deployment_names_are_one_to_one(first: str, second: str) -> None:
    one, other = naming.deployment_name(first), naming.deployment_name(second)
    assert one != other, f"{first!r} and {second!r} would share the Deployment/Service {one!r}"
    for name in (one, other):
        assert naming.is_dns_label(name) and name[0].isalpha(), name  # a Service needs DNS-1035


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dep", "dep"),
        ("d-1abc", "d-1abc"),
        ("1abc", "d-1abc-" + naming.short_hash("1abc")),
        ("9" * 70, "d-" + "9" * 52 + "-" + naming.short_hash("9" * 70)),
    ],
)
def test_deployment_name_table(name: str, expected: str) -> None:
    assert naming.deployment_name(name) == expected
    assert len(expected) <= naming.MAX_LABEL
