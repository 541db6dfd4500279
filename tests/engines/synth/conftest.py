import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Data generation runs single-threaded (one per DataLoader worker); intra-op threads only
    add overhead on these small ops. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
