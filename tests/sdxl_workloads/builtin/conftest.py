"""The builtin:world tests run on one torch thread: the model is small and overhead-bound, and
threads spinning against each other on a shared 2-core machine make it many times slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
