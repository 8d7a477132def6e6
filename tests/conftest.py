"""Test-wide settings: no network for model hubs, a small thread count so the 2-core CI stays predictable."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, restored after it: tiny tensors and sparse gathers only spin torch's
    thread pool on a shared 2-core machine (tests ran ~2x slower with 2 threads). Folders and modules opt in
    with an autouse fixture or `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
