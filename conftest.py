"""Shared pytest settings for every suite."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The test models are tiny: a second thread gains nothing, and when another process holds a
    core two threads run about ten times slower. Restored at the end."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
