"""Test-wide settings: no network for model hubs, a small thread count so the 2-core CI stays predictable, one
scale for every timing bound."""

import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _triton_interpreter_without_gpu() -> None:
    """Without a GPU the triton render backend's kernels run in triton's CPU interpreter, which is chosen when
    triton is first imported (diffusers imports it): switched on here, before any test module loads
    (tests/render/test_triton_backend.py). Nothing else triton-compiled runs on a CPU machine."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


_triton_interpreter_without_gpu()


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


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache and offline mode for this test, so a hub id is "not on this machine" whatever
    this machine has cached. Setting HF_HOME would do nothing: huggingface_hub reads it once, at import; its
    module constants are what huggingface_hub and transformers read at call time. The env var HF_HUB_OFFLINE is
    set too, for code that reads it (editor.jobs). Returns the cache folder (not created)."""
    cache = tmp_path / "hf-cache" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    return cache


TIME_SCALE_VAR = "SPLATEDIT_TIME_SCALE"


@pytest.fixture(scope="session")
def time_limit():
    """`time_limit(seconds)`: a timing bound ("answers at once", "refused quickly") times SPLATEDIT_TIME_SCALE
    (default 1). Each bound guards a real responsiveness promise, so it keeps asserting; a slow or loaded machine
    scales all of them at once (SPLATEDIT_TIME_SCALE=3) instead of each test growing its own headroom."""
    raw = os.environ.get(TIME_SCALE_VAR, "1")
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{TIME_SCALE_VAR} must be a positive number, got {raw!r}")
    return lambda seconds: seconds * scale


@pytest.fixture(scope="session")
def tiny_flow_dir(tmp_path_factory):
    """A tiny random SD3-layout pipeline (tests/guidance/tiny_models.py's tiny_flow_parts), saved once per session
    for every folder's tests (guidance, CLI, app)."""
    from tests.guidance.tiny_models import save_tiny_flow_pipeline

    return save_tiny_flow_pipeline(tmp_path_factory.mktemp("tiny-flow") / "model")
