"""The cosine arithmetic behind every metric, on vectors whose answer is known."""

from __future__ import annotations

import pytest
import torch

from sdxl_workloads.quality.pairwise_cosine import mean_matched_cosine, mean_pairwise_cosine


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([[1.0, 0.0]], [[3.0, 0.0]], 1.0),  # length does not matter
        ([[1.0, 0.0]], [[0.0, 2.0]], 0.0),
        ([[1.0, 0.0]], [[-1.0, 0.0]], -1.0),
        ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0]], 0.5),  # every pair: (1 + 0) / 2
        ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], 0.5),  # (1 + 0 + 0 + 1) / 4
    ],
)
def test_mean_pairwise_cosine(a: list[list[float]], b: list[list[float]], expected: float) -> None:
    assert mean_pairwise_cosine(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, abs=1e-6)


def test_mean_matched_cosine_pairs_rows_in_order() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert mean_matched_cosine(a, a.clone()) == pytest.approx(1.0)
    assert mean_matched_cosine(a, a.flip(0)) == pytest.approx(0.0)


def test_half_precision_embeddings_are_scored_in_float32() -> None:
    a = torch.full((1, 4096), 0.01, dtype=torch.float16)
    assert mean_pairwise_cosine(a, a) == pytest.approx(1.0, abs=1e-5)


def test_empty_or_mismatched_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        mean_pairwise_cosine(torch.zeros(0, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="as many rows"):
        mean_matched_cosine(torch.ones(2, 2), torch.ones(3, 2))
