from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One torch thread for the duration of a test.

    Tests made of many small ops run faster this way on 2 shared cores: OpenMP's
    barriers cost more than a second thread gains.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
