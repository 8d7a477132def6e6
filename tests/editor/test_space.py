"""Hugging Face Space mode: one port (no Viser), streamed renders with orbit controls, gr.Model3D of the scene,
and GPU work as ZeroGPU runs it: in another process (tests/editor/fake_zerogpu.py), streaming progress and
previews from there, cancelled across the process boundary, with a duration computed from the inputs."""

from __future__ import annotations

import math
import re
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from gradio_client import Client

from editor.runners import gpu_calls, gpu_time
from editor.runners.gpu_calls import GpuResult, GpuStarted
from engine.worker import EditJob, GenerateJob, Progress
from editor.runners.gpu_time import GPU_MAX_DURATION_S, gpu_wrap
from editor.runners.zerogpu import FRONTMATTER_PATH
from engine.io import load
from engine.rotate import turn_scene
from tests.editor import fake_zerogpu
from tests.editor.apphelpers import running_app, small_scene
from tests.editor.fake_zerogpu import FakeZeroGPU


def _edit_config(steps: int, resolution: int = 32, preview_every: int = 2):
    from engine.optimize import DensifyConfig
    from engine.edit import EditConfig

    return EditConfig(prompt="red", model="closed-form:#d02020", steps=steps, resolution=resolution,
                      preview_every=preview_every, densify=DensifyConfig(enabled=False))


def _mask(n: int, selected: int) -> torch.Tensor:
    mask = torch.zeros(n)
    mask[:selected] = 1.0
    return mask


def _view_cameras():
    """One 256² camera looking at small_scene's blob (what the handlers pass: the session's view)."""
    from engine.camera import orbit_cameras

    return orbit_cameras(torch.zeros(3), 1.5, [30.0], [20.0], width=256, height=256)


# ------------------------------------------------------------------------------------ the test double itself
def test_fake_zerogpu_runs_the_function_in_another_process_and_drops_its_globals():
    fake = FakeZeroGPU()
    wrapped = fake.GPU(duration=lambda value: 7 + value)(fake_zerogpu.touch_a_global)
    pid, seen = list(wrapped(5))
    assert pid != __import__("os").getpid()  # another process...
    assert seen == [5] and fake_zerogpu.TOUCHED == []  # ...whose global change never comes back
    assert fake.calls[0].duration == 12  # a callable duration gets the call's arguments, in the app's process
    failing = fake.GPU(fake_zerogpu.fail_inside)
    stream = failing()
    assert next(stream) == 1
    with pytest.raises(RuntimeError, match=r"ZeroGPU worker error: ValueError$"):  # the message is lost
        next(stream)


def test_gpu_edit_streams_previews_from_the_worker_and_stops_when_the_stream_is_closed():
    fake = FakeZeroGPU()
    gpu_edit = fake.GPU(duration=gpu_time.edit_duration)(gpu_calls.run_edit_on_gpu)
    scene = small_scene(60)
    stream = gpu_edit(EditJob(scene, _mask(60, 20), _edit_config(5000), _view_cameras()), None)  # no cancel file
    started = next(stream)
    records = []
    for record in stream:
        records.append(record)
        if sum(r.preview is not None for r in records) >= 2:
            break
    stream.close()  # what the app does on Cancel: ZeroGPU then closes the function's generator in the worker
    call = fake.calls[-1]
    assert call.finished_cleanly(timeout=15)  # 5000 steps take minutes: the edit stopped within a step or so
    assert call.closed_early and all(isinstance(r, Progress) and r.scene is None for r in records)
    assert [r.step for r in records] == list(range(1, len(records) + 1))  # every step reports
    previews = [r.preview for r in records if r.preview is not None]
    assert previews[0].shape == (256, 256, 3) and previews[0].dtype == np.uint8
    assert isinstance(started, GpuStarted) and started.renderer == "torch" and "no CUDA" in started.renderer_reason
    assert 0 < call.duration <= GPU_MAX_DURATION_S


def test_gpu_edit_stops_before_its_first_step_when_its_cancel_file_exists(tmp_path):
    cancel = tmp_path / "cancel"
    cancel.touch()
    records = list(gpu_calls.run_edit_on_gpu(EditJob(small_scene(60), _mask(60, 20), _edit_config(50),
                                                     _view_cameras()), str(cancel)))
    started, result = records
    assert isinstance(result, GpuResult) and result.cancelled and result.steps_done == 0 and result.scene is None
    # without the file it runs, and its result is the edited scene on the CPU
    started, *progress, result = gpu_calls.run_edit_on_gpu(
        EditJob(small_scene(60), _mask(60, 20), _edit_config(3), _view_cameras()), str(tmp_path / "absent"))
    assert len(progress) == 3 and not result.cancelled and result.steps_done == 3
    assert result.scene.means.device.type == "cpu" and result.mask.shape == (60,)


def test_gpu_generate_stops_when_its_cancel_file_exists(tmp_path):
    from engine.generate import GenerateConfig

    config = GenerateConfig(prompt="a red ball", model="closed-form:#d02020", steps=20, resolution=32,
                            num_gaussians=100)
    cancel = tmp_path / "cancel"
    cancel.touch()
    _, result = gpu_calls.run_generate_on_gpu(GenerateJob(config), str(cancel))
    assert result.cancelled and result.steps_done == 0 and result.scene is None


def test_gpu_errors_come_back_as_a_message_not_an_exception():
    bad = _edit_config(3)
    bad.model = "closed-form:not-a-colour"
    (result,) = gpu_calls.run_edit_on_gpu(EditJob(small_scene(60), _mask(60, 20), bad, _view_cameras()), None)
    assert result.error and "closed-form" in result.error


# ------------------------------------------------------------------------------------ duration
def test_duration_grows_with_steps_resolution_and_model_and_the_space_default_fits_a_minute():
    from engine.edit import EditConfig

    robot = 33_839  # the default scene's Gaussians
    sd = EditConfig(prompt="a red scarf", model="stable-diffusion-v1-5/stable-diffusion-v1-5", method="sds",
                    steps=gpu_time.SPACE_EDIT_STEPS, resolution=256, preview_every=5)
    seconds = gpu_time.estimate_edit_seconds(robot, sd, renderer="torch")
    assert seconds < 60  # a default Space edit of the robot fits ZeroGPU's default minute
    more_steps = gpu_time.estimate_edit_seconds(robot, EditConfig(**{**sd.__dict__, "steps": 400}), renderer="torch")
    larger = gpu_time.estimate_edit_seconds(robot, EditConfig(**{**sd.__dict__, "resolution": 512}), renderer="torch")
    dds = gpu_time.estimate_edit_seconds(robot, EditConfig(**{**sd.__dict__, "method": "dds"}), renderer="torch")
    demo = gpu_time.estimate_edit_seconds(robot, EditConfig(**{**sd.__dict__, "model": "closed-form:#d02020"}),
                                       renderer="torch")
    fast = gpu_time.estimate_edit_seconds(robot, sd, renderer="gsplat")
    assert more_steps > 3 * seconds and larger > seconds and dds > seconds and demo < seconds and fast < seconds
    with pytest.raises(ValueError, match=r"GPU time.*lower Steps \(about \d+ fit"):
        gpu_time.check_gpu_time(more_steps, 400, "edit")
    assert gpu_time.check_gpu_time(seconds, 100, "edit") == int(np.ceil(seconds))
    huge = EditConfig(**{**sd.__dict__, "steps": 5000})
    assert gpu_time.edit_duration(EditJob(small_scene(10), torch.zeros(10), huge)) == GPU_MAX_DURATION_S  # capped


# ------------------------------------------------------------------------------------ through the real app
def test_space_mode_serves_one_port_with_model3d_upright(tmp_path):
    start = small_scene()  # saved as a 3DGS .ply without an up comment: a -y-up capture by convention
    with running_app(tmp_path, scene=start, space=True) as app:
        assert app.ctx.registry.viewer_factory is None  # no Viser server in a Space
        html = urllib.request.urlopen(app.url, timeout=30).read().decode()
        assert "viser-frame" not in html
        client = Client(app.url, verbose=False)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert "/model3d" in endpoints and "/click_view" in endpoints
        copy = load(client.predict(api_name="/model3d"))
        (session,) = app.ctx.registry.sessions()
        assert session.up == (0.0, -1.0, 0.0)
        from editor.scenes import for_web_viewer  # centred and sized for the viewer (its own test above)

        unturned = for_web_viewer(load(app.scene_path), up=(0, -1, 0))
        assert torch.allclose(copy.means, unturned.means, atol=1e-5)  # -y up: not turned again
        client.predict("+z", api_name="/set_up")  # the user says +z: the web copy is turned to -y up
        turned = load(client.predict(api_name="/model3d"))
        expected = for_web_viewer(turn_scene(load(app.scene_path), (0, 0, 1), (0, -1, 0)), up=(0, -1, 0))
        assert torch.allclose(turned.means, expected.means, atol=1e-5)
        # The streamed view is the interactive one: a click selects.
        client.predict("brush", "add", 60, "vote", 8, api_name="/set_tool")
        assert int(client.predict(256, 192, api_name="/click_view")) > 0
        assert not any(s.viewer for s in app.ctx.registry.sessions())


def _progress(bar: str) -> dict:
    return {k: re.search(rf'data-{k}="([^"]*)"', bar).group(1) for k in ("state", "step", "total", "previews")}


def test_space_edit_streams_previews_from_the_gpu_process_cancels_and_undoes(tmp_path, monkeypatch):
    fake = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    with running_app(tmp_path, space=True) as app:
        assert ("run_edit_on_gpu", gpu_time.edit_duration) in fake.decorated
        worker = app.ctx.link.worker
        monkeypatch.setattr(worker, "start_edit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("worker edit")))
        client = Client(app.url, verbose=False)
        client.predict("brush", "add", 60, "vote", 8, api_name="/set_tool")
        assert int(client.predict(256, 192, api_name="/click_view")) > 0
        status = client.predict("#d02020", api_name="/use_demo")[0]
        assert "Renderer:" in status and "no CUDA" in status and "GPU jobs render with" in status
        (session,) = app.ctx.registry.sessions()
        selected = session.selection > 0.5
        original = load(client.predict("ply", api_name="/export"))

        # An edit runs in the worker process and streams its previews to the page while it runs.
        job = client.submit("make it red", "", "sds", 16, 0, 64, 0, 2, False, False, 1, api_name="/run_edit")
        bars = [_progress(out[0]) for out in job]
        assert bars[-1]["state"] == "done", bars[-1]
        running = [b for b in bars if b["state"] == "running"]
        assert len({b["previews"] for b in running if int(b["previews"]) > 0}) >= 2, running  # live previews
        assert len({b["step"] for b in running if 0 < int(b["step"]) < 16}) >= 2, running  # the bar moved
        call = fake.calls[-1]
        assert call.name == "run_edit_on_gpu" and call.finished_cleanly() and 0 < call.duration <= GPU_MAX_DURATION_S
        edited = load(client.predict("ply", api_name="/export"))
        changed = (edited.sh0 != original.sh0).flatten(1).any(1)
        assert changed.any() and not (changed & ~selected).any()  # only inside the mask
        assert torch.equal(edited.means[~selected], original.means[~selected])
        assert "GPU jobs render with:** torch" in client.predict("#d02020", api_name="/use_demo")[0]

        # Cancel mid-run: the stream ends, the worker process stops, the scene stays as it was.
        job = client.submit("make it blue", "", "sds", 2000, 0, 64, 0, 5, False, False, 1, api_name="/run_edit")
        deadline = time.monotonic() + 60
        while client.predict(api_name="/edit_status")["step"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        client.predict(api_name="/cancel_edit")
        bars = [_progress(out[0]) for out in job]
        assert bars[-1]["state"] == "cancelled" and int(bars[-1]["step"]) < 2000, bars[-1]
        assert fake.calls[-1].finished_cleanly()  # the worker's edit stopped, nothing left running there
        assert not list((session.workspace / "gpu-jobs").glob("cancel-*"))  # the cancel file is cleaned up
        after_cancel = load(client.predict("ply", api_name="/export"))
        for name, value in edited.items():
            assert torch.equal(getattr(after_cancel, name), value), name

        # Too long for one GPU call: refused before anything runs, saying what to lower.
        calls = len(fake.calls)
        with pytest.raises(Exception, match="GPU time"):
            client.predict("make it red", "", "sds", 2000, 0, 1024, 0, 5, False, False, 1, api_name="/run_edit")
        assert len(fake.calls) == calls

        # The GPU edit is one history entry: undo restores the scene exactly.
        assert "edit (sds): make it red" in client.predict(api_name="/undo")
        restored = load(client.predict("ply", api_name="/export"))
        for name, value in original.items():
            assert torch.equal(getattr(restored, name), value), name


def test_space_generate_runs_in_the_gpu_process_and_undo_restores_the_scene(tmp_path, monkeypatch):
    fake = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    with running_app(tmp_path, space=True) as app:
        assert ("run_generate_on_gpu", gpu_time.generate_duration) in fake.decorated
        worker = app.ctx.link.worker
        monkeypatch.setattr(worker, "start_generate",
                            lambda *a, **k: (_ for _ in ()).throw(AssertionError("worker generate")))
        client = Client(app.url, verbose=False)
        original = load(client.predict("ply", api_name="/export"))

        job = client.submit("a red ball", "closed-form:#d02020", "sds", "sphere", 12, 0, 32, 150,
                            api_name="/generate")
        outputs = list(job)
        bar, _, info = outputs[-1]
        assert 'data-state="done"' in bar, bar
        assert fake.calls[-1].name == "run_generate_on_gpu" and fake.calls[-1].finished_cleanly()
        generated = load(client.predict("ply", api_name="/export"))
        assert len(generated) == 150 != len(original)
        assert "generated: a red ball" in info and "150" in info
        (session,) = app.ctx.registry.sessions()
        assert session.selection.shape == (150,) and not session.selection.any()

        assert "generate (sds): a red ball" in client.predict(api_name="/undo")  # one entry
        restored = load(client.predict("ply", api_name="/export"))
        for name, value in original.items():
            assert torch.equal(getattr(restored, name), value), name


# ------------------------------------------------------------------------------------ small pieces
def test_gpu_wrap_is_transparent_outside_a_space():
    def job(x, *, y=1):
        return x + y

    assert gpu_wrap(job)(1, y=2) == 3  # the installed `spaces` package returns it unchanged off ZeroGPU


def test_space_front_matter_is_valid_yaml():
    import yaml

    text = FRONTMATTER_PATH.read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"


def test_model3d_copy_is_turned_to_y_down_without_changing_shapes():
    from editor.scenes import for_web_viewer
    from engine.render.projection import covariances_3d
    from engine.scene import random_scene
    from engine.up import rotation_between

    scene = random_scene(50, seed=1, sh_degree=1)
    turned = for_web_viewer(scene, framed=False)  # a +z-up scene (the default)
    R = rotation_between((0, 0, 1), (0, -1, 0)).float()
    assert torch.allclose(turned.means, scene.means @ R.T)
    assert torch.allclose(covariances_3d(turned.quats, turned.scales), R @ covariances_3d(scene.quats, scene.scales) @ R.T,
                          atol=1e-5)
    assert torch.equal(turned.sh0, scene.sh0) and turned.sh_degree == 0
    assert torch.allclose(R @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))  # up becomes -y
    capture = for_web_viewer(scene, up=(0.0, -1.0, 0.0), framed=False)  # a -y-up capture is already what web viewers expect
    assert torch.allclose(capture.means, scene.means) and torch.allclose(capture.quats, scene.quats)
    sideways = for_web_viewer(scene, up=(1.0, 0.0, 0.0), framed=False)
    assert torch.allclose(sideways.means, scene.means @ rotation_between((1, 0, 0), (0, -1, 0)).float().T)


def test_model3d_copy_is_centred_and_sized_for_the_viewers_fixed_orbit():
    """Gradio's splat viewer orbits the origin from a fixed distance: the display copy puts the whole subject
    there (a subject far from the origin showed its feet, or nothing), upright, shapes kept."""
    from editor.scenes import WEB_VIEWER_RADIUS, for_web_viewer
    from engine.scene import random_scene

    scene = random_scene(300, seed=2, sh_degree=0)
    scene = scene.replace(means=scene.means * torch.tensor([0.5, 0.5, 3.0]) + torch.tensor([10.0, -4.0, 7.0]))
    shown = for_web_viewer(scene)  # +z up: tall along z, far from the origin
    lo, hi = shown.bounding_box(quantile=0.01)
    assert torch.allclose((lo + hi) / 2, torch.zeros(3), atol=1e-4)
    assert float((hi - lo).norm()) / 2 == pytest.approx(WEB_VIEWER_RADIUS, rel=1e-4)
    extent = hi - lo
    assert int(extent.argmax()) == 1  # the tall axis is the viewer's vertical (-y up)
    first, last = scene.bounding_box(quantile=0.01)
    factor = WEB_VIEWER_RADIUS / (float((last - first).norm()) / 2)
    assert torch.allclose(shown.scales, scene.scales + math.log(factor), atol=1e-5)  # sizes scale with positions


def test_the_space_preloads_its_model_once_and_starts_without_one(tmp_path, monkeypatch):
    """ZeroGPU: models load at start-up in the main process, and the forked GPU workers inherit them; a model
    that cannot load leaves the app starting (the first job reports it)."""
    from tests.guidance.tiny_models import save_tiny_pipeline

    monkeypatch.setattr(gpu_calls, "_MODELS", {})
    model_dir = str(save_tiny_pipeline(tmp_path / "tiny"))
    assert gpu_calls.preload_gpu_model(model_dir)
    (cache,) = gpu_calls._MODELS.values()  # one cache for this process's device
    assert model_dir in cache
    first = cache.get(model_dir)
    device, model = gpu_calls._model(model_dir)
    assert model is first  # a job in this process (or a fork of it) reuses it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no-such-model")
    assert not gpu_calls.preload_gpu_model(missing)
    assert missing not in cache and model_dir in cache
