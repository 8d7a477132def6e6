"""Shared fixtures: tiny random diffusers pipelines saved once per session, and a red closed-form prior (the tiny
SD3-layout pipeline's folder, `tiny_flow_dir`, is tests/conftest.py's: the CLI and app tests load it too)."""

from __future__ import annotations

import pytest
import torch

from engine.guidance import ClosedFormPrior

from .tiny_models import save_tiny_pipeline

RED = (0.8, 0.1, 0.1)


@pytest.fixture(autouse=True)
def _tiny_tensors_one_thread(one_torch_thread):
    """These tensors are tiny: one thread (tests/conftest.py) for every guidance test."""
    yield


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-eps") / "model", prediction_type="epsilon")


@pytest.fixture(scope="session")
def tiny_vpred_dir(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-v") / "model", prediction_type="v_prediction", seed=1)


@pytest.fixture(scope="session")
def tiny_flow_model(tiny_flow_dir):
    """The tiny SD3-layout pipeline loaded through the real `load_guidance`, offline."""
    from engine.guidance import load_guidance

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_guidance(str(tiny_flow_dir), device="cpu")


@pytest.fixture
def red_prior():
    return ClosedFormPrior(RED)


@pytest.fixture
def half_mask():
    """[2, 8, 8, 1]: left half of each view selected."""
    mask = torch.zeros(2, 8, 8, 1)
    mask[:, :, :4] = 1.0
    return mask
