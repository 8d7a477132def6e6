"""The real app through its public API (gradio_client): select, edit with the closed-form prior, cancel, undo,
export, bad input, upload cap. Uses a small scene so every edit takes a second or two on CPU."""

from __future__ import annotations

import re
import time
import urllib.request

from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from engine.io import load, save
from engine.scene import random_scene
from tests.editor.apphelpers import running_app

RED = "#d02020"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app"), max_upload_mb=0.05) as running:
        yield running


def _client(app) -> Client:
    return Client(app.url, verbose=False)


def _select_blob(client: Client) -> int:
    client.predict("brush", "add", 60, "vote", 8, api_name="/set_tool")
    return int(client.predict(256, 192, api_name="/click_view"))


def _run(client: Client, steps: int, *, prompt: str = "make it red"):
    """Run an edit and collect every streamed progress bar; returns (progress htmls, final outputs)."""
    job = client.submit(prompt, "", "sds", steps, 0, 64, 0, 1, False, False, api_name="/run_edit")
    bars = [out[0] for out in job]
    final = job.result()  # raises AppError when the app refused the job
    return bars, final


def _state(bar: str) -> dict:
    return {k: v for k, v in re.findall(r'data-(\w+)="([^"]*)"', bar)}


def test_page_answers_and_api_is_listed(app):
    with urllib.request.urlopen(app.url, timeout=30) as response:
        assert response.status == 200
    endpoints = _client(app).view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/click_view", "/run_edit", "/cancel_edit", "/undo", "/redo", "/export", "/open_scene"):
        assert name in endpoints


def test_click_edit_undo_export_round_trip(app, tmp_path):
    client = _client(app)
    original = load(app.scene_path)
    selected = _select_blob(client)
    assert 0 < selected < len(original)
    client.predict(RED, api_name="/use_demo")
    bars, _ = _run(client, 12)
    states = [_state(b) for b in bars]
    assert states[-1]["state"] == "done", bars[-1]
    assert int(states[-1]["previews"]) > 0
    assert any(s["state"] == "queued" for s in states[:1])

    edited = load(client.predict("ply", api_name="/export"))
    assert len(edited) == len(original)  # densify off
    changed = (edited.sh0 != original.sh0).flatten(1).any(1)
    assert 0 < int(changed.sum()) <= selected  # only the selected Gaussians moved...
    red = torch.tensor([0.816, 0.125, 0.125])
    before = (original.base_colors()[changed] - red).norm(dim=1).mean()
    after = (edited.base_colors()[changed] - red).norm(dim=1).mean()
    assert after < before  # ...toward the demo colour
    assert torch.equal(edited.means[~changed], original.means[~changed])

    history = client.predict(api_name="/undo")
    assert "edit (sds): make it red" in history
    restored = load(client.predict("ply", api_name="/export"))
    for name, value in original.items():
        assert torch.equal(getattr(restored, name), value), name  # exact parameters back
    client.predict(api_name="/redo")
    assert torch.equal(load(client.predict("ply", api_name="/export")).sh0, edited.sh0)


def test_cancel_stops_the_job_and_keeps_the_scene(app):
    client = _client(app)
    _select_blob(client)
    client.predict(RED, api_name="/use_demo")
    job = client.submit("make it red", "", "sds", 2000, 0, 64, 0, 1, False, False, api_name="/run_edit")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.predict(api_name="/edit_status")
        if status["state"] == "running" and status["step"] > 0:
            break
        time.sleep(0.1)
    client.predict(api_name="/cancel_edit")
    bars = [out[0] for out in job]
    final = _state(bars[-1])
    assert final["state"] == "cancelled", bars[-1]
    assert 0 < int(final["step"]) < 2000
    scene = load(client.predict("ply", api_name="/export"))
    assert torch.equal(scene.sh0, load(app.scene_path).sh0)


def test_a_variant_with_a_schedule_edits_on_a_saved_sd3_pipeline(app, tiny_flow_dir, monkeypatch):
    """A tiny SD3-layout pipeline saved to a folder (tests/conftest.py) as the session's model, loaded offline by
    the engine worker Run uses: DreamCatalyst with DreamTime's schedule, both chosen in the Edit panel, runs to the
    end on the flow family and changes only selected Gaussians, colour only."""
    import engine.edit.loop as edit_loop
    from engine.guidance.methods import family_of

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen, build = [], edit_loop.build_loss
    monkeypatch.setattr(edit_loop, "build_loss", lambda config, model: (
        seen.append((config.method, config.schedule, family_of(model))), build(config, model))[1])
    client = _client(app)
    client.predict(str(tiny_flow_dir), api_name="/set_model")
    selected = _select_blob(client)
    original = load(app.scene_path)
    job = client.submit("a red blob", "a grey blob", "dreamcatalyst", 2, 0, 32, 0, 1, False, False, 1.0,
                        "appearance", "dreamtime", api_name="/run_edit")
    bars = [out[0] for out in job]
    assert _state(bars[-1])["state"] == "done" and _state(bars[-1])["step"] == "2", bars[-1]
    assert seen == [("dreamcatalyst", "dreamtime", "flow")]
    edited = load(client.predict("ply", api_name="/export"))
    changed = (edited.sh0 != original.sh0).flatten(1).any(1)
    assert 0 < int(changed.sum()) <= selected
    for name, value in original.items():
        assert torch.equal(getattr(edited, name)[~changed], value[~changed]), name
    for name in ("means", "scales", "quats", "opacities"):
        assert torch.equal(getattr(edited, name), getattr(original, name)), name


def test_bad_input_is_refused_with_a_message(app):
    client = _client(app)
    client.predict(RED, api_name="/use_demo")
    with pytest.raises(AppError, match="select the part"):
        _run(client, 5)
    _select_blob(client)
    with pytest.raises(AppError, match="prompt is empty"):
        _run(client, 5, prompt="  ")
    with pytest.raises(AppError, match="closed-form"):
        client.predict("closed-form:", api_name="/set_model")
    assert client.predict(api_name="/edit_status")["state"] == "idle"


def test_upload_cap_and_bad_files(app, tmp_path):
    client = _client(app)
    big = tmp_path / "big.ply"
    save(random_scene(3000, seed=1), big)  # ~0.7 MB > the 0.05 MB cap of this app
    with pytest.raises(Exception, match="(?i)(limit|too large|exceed|size)"):
        client.predict(handle_file(str(big)), api_name="/open_scene")
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    with pytest.raises(AppError, match="junk.ply") as refused:
        client.predict(handle_file(str(junk)), api_name="/open_scene")
    assert "/tmp/" not in str(refused.value) and "gradio" not in str(refused.value)  # the user's name, no temp path
    small = tmp_path / "small.ply"
    save(random_scene(50, seed=2), small)
    info = client.predict(handle_file(str(small)), api_name="/open_scene")
    assert "50" in info and "small.ply" in info


def test_spz_frame_choice_on_open_and_export(app, tmp_path):
    """An .spz as SuperSplat / splat-transform write it (raw .ply-frame values) opens upright by default and the
    default export writes the same values back; opened as "spec" it is turned 180 degrees about x; the RUB export
    choice stores the README's frame; exports are named after the opened file."""
    client = _client(app)
    scene = random_scene(40, seed=3)
    raw = tmp_path / "tool.spz"
    save(scene, raw)
    client.predict(handle_file(str(raw)), "raw", api_name="/open_scene")
    exported = client.predict("spz", api_name="/export")
    assert Path(exported).name == "tool-edited.spz"
    as_raw = load(exported)
    assert torch.allclose(as_raw.means, load(raw).means, atol=1e-6)
    as_rub = load(client.predict("spz-spec", api_name="/export"), spz_frame="spec")
    assert torch.allclose(as_rub.means, as_raw.means, atol=1e-3)
    client.predict(handle_file(str(raw)), "spec", api_name="/open_scene")
    turned = load(client.predict("spz", api_name="/export"))
    assert torch.allclose(turned.means[:, 0], as_raw.means[:, 0], atol=1e-3)  # 180 degrees about x
    assert torch.allclose(turned.means[:, 1:], -as_raw.means[:, 1:], atol=1e-3)

    # the turntable's length, frame rate and size reach the video; bad options are refused before rendering
    import imageio.v2 as imageio

    video = client.predict("mp4", 0.5, 8, 128, api_name="/export")
    with imageio.get_reader(video) as reader:
        frames = [frame.shape for frame in reader]
    assert Path(video).name == "tool-turntable.mp4" and frames == [(128, 128, 3)] * 4
    with pytest.raises(Exception, match="multiple of 16"):
        client.predict("mp4", 2, 24, 200, api_name="/export")


def test_mask_file_round_trip_and_length_check(app, tmp_path):
    client = _client(app)
    n = _select_blob(client)
    [path] = client.predict(api_name="/save_mask")
    weights = np.load(path)
    assert weights.shape == (len(load(app.scene_path)),) and int((weights > 0.5).sum()) == n
    client.predict(api_name="/clear_mask")
    assert int(client.predict([handle_file(path)], api_name="/load_mask")) == n
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones(7, dtype=np.float32))
    with pytest.raises(AppError, match="7 weights"):
        client.predict([handle_file(str(wrong))], api_name="/load_mask")
    # Named parts travel as .npy [P, N] + .json names.
    client.predict("blob", api_name="/save_part")
    npy, meta = sorted(client.predict(api_name="/save_parts"), key=lambda p: p.endswith(".json"))
    assert np.load(npy).shape == (1, len(load(app.scene_path))) and "blob" in open(meta).read()
    other = _client(app)
    other.predict([handle_file(npy), handle_file(meta)], api_name="/load_mask")
    assert int(other.predict("blob", api_name="/select_part")) == n


def test_restore_an_autosaved_session_into_a_new_page(app):
    first = _client(app)
    n = _select_blob(first)
    first.predict("blob", api_name="/save_part")
    first.predict(RED, api_name="/use_demo")
    _run(first, 4)
    exported = load(first.predict("ply", api_name="/export"))
    first_id = first.session_hash
    # The first page goes away (a closed tab, or a restarted app): its autosave stays on disk.
    app.ctx.link.forget(first_id)
    app.ctx.registry.close(first_id)
    second = _client(app)
    second.predict(api_name="/saved_sessions")
    assert first_id in [value for _, value in app.ctx.link.saved_sessions()]
    info = second.predict(first_id, api_name="/restore_session")
    assert "start.ply" in info  # the scene keeps its name
    restored = load(second.predict("ply", api_name="/export"))
    assert torch.equal(restored.sh0, exported.sh0) and torch.equal(restored.means, exported.means)
    # The whole history came back: one undo goes to the state before the edit, with the brushed mask.
    assert "edit (sds): make it red" in second.predict(api_name="/undo")
    mask = np.load(second.predict(api_name="/save_mask")[0])
    assert int((mask > 0.5).sum()) == n
    assert int(second.predict("blob", api_name="/select_part")) == n  # the parts list came back too


def test_export_every_format(app):
    client = _client(app)
    original = load(app.scene_path)
    for kind in ("ply", "splat", "spz"):
        path = client.predict(kind, api_name="/export")
        assert path.endswith("." + kind)
        assert len(load(path)) == len(original), kind
    _select_blob(client)
    mask = np.load(client.predict("mask", api_name="/export"))
    assert mask.shape == (len(original),) and (mask > 0.5).any()
    import imageio.v2 as imageio

    video = client.predict("mp4", api_name="/export")
    reader = imageio.get_reader(video)
    frames = [frame for frame in reader]
    assert len(frames) == 48 and frames[0].shape[2] == 3
    assert not np.array_equal(frames[0], frames[12])  # it turns
