"""Status messages are cut to a readable length at the end that matters."""

from __future__ import annotations

from sdxl_operator.status.status_message import MAX_MESSAGE, head_of, tail_of


def test_short_messages_are_only_stripped() -> None:
    assert tail_of("  out of memory \n") == head_of("  out of memory \n") == "out of memory"


def test_a_long_log_keeps_its_last_error_and_a_long_error_list_its_first() -> None:
    text = "first " + "x" * (2 * MAX_MESSAGE) + " last"
    tail, head = tail_of(text), head_of(text)
    assert len(tail) == len(head) == MAX_MESSAGE
    assert tail.startswith("...") and tail.endswith(" last")
    assert head.startswith("first ") and head.endswith("...")
