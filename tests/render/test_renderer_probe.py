"""`backend="auto"` uses gsplat where a probe found it working (import + a tiny GPU render), else the triton backend
where a one-Gaussian render (forward + backward) through it works, else our CPU rasterizer, with the reason; decided
once per process. No real CUDA compile is ever started here: the triton probe runs its real kernels on the CPU
under triton's interpreter (switched on by tests/conftest.py)."""

from __future__ import annotations

import importlib.abc
import sys
import types

import pytest
import torch

from engine.render import availability, render
from render_scenes import orbit_pair, random_view_scene


@pytest.fixture(autouse=True)
def fresh_choice():
    availability.reset_renderer_choice()
    yield
    availability.reset_renderer_choice()


class _ImportSpy(importlib.abc.MetaPathFinder):
    """Records (and refuses) any import of gsplat."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name == "gsplat" or name.startswith("gsplat."):
            self.attempts.append(name)
            raise ImportError("gsplat must not be imported in this test")
        return None


def test_without_cuda_the_probe_says_so_without_importing_gsplat(monkeypatch):
    spy = _ImportSpy()
    monkeypatch.setattr(sys, "meta_path", [spy, *sys.meta_path])
    for name in [n for n in sys.modules if n == "gsplat" or n.startswith("gsplat.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(availability, "_tiny_triton_render", lambda: pytest.fail("probed triton without CUDA"))
    choice = availability.renderer_choice()
    assert not choice.gsplat and choice.name == "torch" and "no CUDA" in choice.reason
    assert spy.attempts == []  # on a machine with nvcc and no GPU an import could start a compile
    assert "torch (CPU rasterizer)" in choice.describe()


def test_this_machine_falls_back_cleanly():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the probe may legitimately choose gsplat")
    choice = availability.renderer_choice()
    assert choice.name == "torch" and "no CUDA" in choice.reason
    out = render(random_view_scene(20, seed=0), orbit_pair(16, 16))  # auto on a CPU scene: our rasterizer
    assert out.meta["backend"] != "gsplat"


def _fake_gsplat(monkeypatch, rasterization):
    module = types.ModuleType("gsplat")
    module.rasterization = rasterization
    monkeypatch.setitem(sys.modules, "gsplat", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _no_triton(monkeypatch, message="triton: no usable GPU\nlong log ..."):
    def fails():
        raise RuntimeError(message)

    monkeypatch.setattr(availability, "_tiny_triton_render", fails)


def test_a_gsplat_that_fails_to_compile_is_caught_and_becomes_the_reason(monkeypatch):
    calls = []

    def rasterization(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Error building extension 'gsplat_cuda': nvcc: not found\nlong compiler log ...")

    _fake_gsplat(monkeypatch, rasterization)
    _no_triton(monkeypatch)
    monkeypatch.setattr(availability, "_PROBE_DEVICE", "cpu")  # no GPU here: the tiny scene lives on the CPU
    choice = availability.renderer_choice()
    assert not choice.gsplat and choice.name == "torch"
    assert "RuntimeError" in choice.reason and "nvcc: not found" in choice.reason and "compiler log" not in choice.reason
    assert "triton cannot run here either (RuntimeError: triton: no usable GPU)" in choice.reason
    assert "long log" not in choice.reason
    assert availability.renderer_choice() is choice and len(calls) == 1  # decided once, cached


def test_a_missing_gsplat_package_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # `import gsplat` raises ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _no_triton(monkeypatch)
    choice = availability.renderer_choice()
    assert not choice.gsplat and "ModuleNotFoundError" in choice.reason


def test_a_working_gsplat_is_chosen(monkeypatch):
    def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs):
        return torch.ones(1, height, width, 3), torch.ones(1, height, width, 1), {}

    _fake_gsplat(monkeypatch, rasterization)
    monkeypatch.setattr(availability, "_tiny_triton_render", lambda: pytest.fail("probed triton after gsplat worked"))
    monkeypatch.setattr(availability, "_PROBE_DEVICE", "cpu")
    choice = availability.renderer_choice()
    assert choice.gsplat and choice.name == "gsplat" and "rasterized" in choice.reason


def test_an_empty_test_render_is_not_trusted(monkeypatch):
    def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs):
        return torch.zeros(1, height, width, 3), torch.zeros(1, height, width, 1), {}

    _fake_gsplat(monkeypatch, rasterization)
    _no_triton(monkeypatch)
    monkeypatch.setattr(availability, "_PROBE_DEVICE", "cpu")
    assert availability.renderer_choice().name == "torch"


def test_without_gsplat_a_working_triton_is_chosen_after_a_real_test_render(monkeypatch):
    """The real triton probe: one Gaussian rendered forward and backward by the kernels (interpreted here)."""
    from engine.render.triton_backend import interpreted

    if not interpreted():
        pytest.skip("triton is not in interpreter mode in this process (a GPU machine): no CPU test render")
    monkeypatch.setitem(sys.modules, "gsplat", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(availability, "_PROBE_DEVICE", "cpu")
    choice = availability.renderer_choice()
    assert choice.name == "triton" and not choice.gsplat
    assert "gsplat cannot run here (ModuleNotFoundError" in choice.reason and "triton compiled" in choice.reason
    assert choice.describe().startswith("triton (GPU kernels compiled at run time): gsplat cannot run here")


def test_a_triton_whose_test_render_is_empty_is_not_trusted(monkeypatch):
    from engine.render import triton_backend

    real = triton_backend.render_triton

    def blank(*args, **kwargs):  # a kernel that silently draws nothing
        out = real(*args, **kwargs)
        return type(out)(out.rgb * 0, out.alpha * 0, out.depth, out.meta)

    if not triton_backend.interpreted():
        pytest.skip("triton is not in interpreter mode in this process (a GPU machine): no CPU test render")
    monkeypatch.setitem(sys.modules, "gsplat", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(availability, "_PROBE_DEVICE", "cpu")
    monkeypatch.setattr(triton_backend, "render_triton", blank)
    choice = availability.renderer_choice()
    assert choice.name == "torch" and "triton cannot run here either (RuntimeError: the test render" in choice.reason


def test_auto_never_probes_for_a_cpu_scene(monkeypatch):
    monkeypatch.setattr(availability, "_probe", lambda: pytest.fail("probed for a CPU scene"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = render(random_view_scene(20, seed=1), orbit_pair(16, 16))
    assert out.meta["backend"] != "gsplat"


def test_the_cpu_fallback_for_a_device_scene_keeps_gradients():
    """`_on_cpu` (what a GPU scene without gsplat renders through) gives the CPU renderer's images and passes
    gradients back to the scene's own tensors (exercised here on CPU tensors: no GPU in CI)."""
    from engine.render import _on_cpu
    from engine.render.cpu import render_cpu

    scene = random_view_scene(30, seed=2)
    leaf = scene.sh0.detach().clone().requires_grad_(True)
    scene = type(scene)(**{**{n: getattr(scene, n) for n in ("means", "quats", "scales", "opacities", "shN")},
                           "sh0": leaf})  # the scene's colours are a leaf that should get a gradient
    cams = orbit_pair(16, 16)
    out = _on_cpu(render_cpu, scene, cams, sh_degree=scene.sh_degree, background=torch.tensor([0.1, 0.2, 0.3]),
                  colors=None)
    direct = render_cpu(scene, cams, sh_degree=scene.sh_degree, background=torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(out.rgb, direct.rgb)
    out.rgb.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
