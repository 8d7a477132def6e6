"""Issue 26's smaller fixes, tested on their handler functions (no browser): export names after the source,
where `--space` binds, one history entry per brush stroke, sphere/box volume selection, the SAM note before the
first click, Generate's button states, the Edit model line refreshed while a run streams, the orbit sliders of a
new scene, the large view's size, framing the selection, and the tint turned off after an edit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from editor.config import AppConfig
from editor.edit_panel import run_outputs
from editor.history_panel import export_path
from editor.job_status import JobStatus
from editor.mask_panel import sam_note_update
from editor.masking import Masking
from editor.page import serve_address
from editor.render_panel import large_size, selection_view, slider_angles
from editor.runners import show_after
from editor.scene_panel import generate_buttons
from editor.scenes import SceneBundle
from editor.session import Session
from engine.worker.history import History
from tests.editor.apphelpers import small_scene


def _session(tmp_path, n: int = 300) -> Session:
    return Session("s", SceneBundle(small_scene(n), "guitar.spz"), tmp_path)


# ------------------------------------------------------------------------------------------ export names
def test_exports_are_named_after_the_source(tmp_path):
    assert export_path(tmp_path, "guitar.compressed.ply", "ply").name == "guitar-edited.ply"
    assert export_path(tmp_path, "biker.spz", "spz-spec").name == "biker-edited.spz"
    assert export_path(tmp_path, "biker.spz", "compressed.ply").name == "biker-edited.compressed.ply"
    assert export_path(tmp_path, "biker.spz", "mask").name == "biker-mask.npy"
    assert export_path(tmp_path, "biker.spz", "mp4").name == "biker-turntable.mp4"
    assert export_path(tmp_path, "default scene (toy robot)", "ply").name == "default-scene-toy-robot-edited.ply"
    assert export_path(tmp_path, "../..", "ply").name == "scene-edited.ply"
    (tmp_path / "guitar-edited.ply").write_bytes(b"")
    assert export_path(tmp_path, "guitar.ply", "ply").name == "guitar-edited-2.ply"  # never overwrites


# ------------------------------------------------------------------------------------------ --space host
def test_space_mode_binds_loopback_locally_and_every_interface_on_a_space():
    local = AppConfig(host="127.0.0.1", port=7860, space=True)
    assert serve_address(local, {}) == ("127.0.0.1", 7860)
    assert serve_address(AppConfig(host="10.0.0.5", space=True), {}) == ("10.0.0.5", 7860)
    assert serve_address(local, {"SPACE_ID": "me/app"}) == ("0.0.0.0", 7860)
    assert serve_address(local, {"GRADIO_SERVER_NAME": "::", "GRADIO_SERVER_PORT": "9000"}) == ("::", 9000)
    assert serve_address(AppConfig(host="127.0.0.1"), {"GRADIO_SERVER_NAME": "0.0.0.0"}) == ("127.0.0.1", 7860)


# ------------------------------------------------------------------------------------------ brush strokes
def test_history_groups_a_stroke_into_one_entry():
    history = History(small_scene(20), label="load")
    mask = torch.zeros(20)
    for i in range(5):  # five clicks of one stroke
        mask = mask.clone()
        mask[i] = 1
        history.push("mask: brush add", mask=mask, group=i > 0)
    assert history.labels() == ["load", "mask: brush add"]
    assert int(history.current.mask.sum()) == 5
    history.push("mask: rectangle add", mask=torch.ones(20), group=True)  # another label: its own entry
    history.push("mask: brush add", mask=torch.zeros(20), group=True)
    assert history.labels() == ["load", "mask: brush add", "mask: rectangle add", "mask: brush add"]
    history.undo()
    history.push("mask: rectangle add", mask=torch.ones(20), group=True)  # after an undo: a new entry
    assert history.labels() == ["load", "mask: brush add", "mask: rectangle add", "mask: rectangle add"]
    assert history.undo().label == "mask: rectangle add" and history.undo().label == "mask: brush add"
    assert history.undo().label == "load" and history.current.mask is None  # one undo took the stroke back


def test_brush_clicks_close_together_are_one_stroke(tmp_path, monkeypatch):
    import editor.masking as masking_module

    session = _session(tmp_path)
    changes = []
    session.on_user_change.append(lambda _, change: changes.append(change))
    masking, clock = Masking(), [100.0]
    monkeypatch.setattr(masking_module.time, "monotonic", lambda: clock[0])
    blob = torch.zeros(len(session.scene))
    for step, tool in ((0.2, "brush"), (0.3, "brush"), (0.3, "brush"), (5.0, "brush"), (0.1, "rectangle"),
                       (0.1, "brush")):
        clock[0] += step
        blob = blob.clone()
        blob[len(changes)] = 1
        masking._apply(session, blob, "add", tool)
    assert [c.group for c in changes] == [False, True, True, False, False, False]
    assert changes[1].label == changes[0].label == "mask: brush add"


# ------------------------------------------------------------------------------------------ volumes
def test_sphere_and_box_select_around_the_selection(tmp_path):
    session = _session(tmp_path, 400)
    means = session.scene.means
    seed = (means - means[0]).norm(dim=-1) < 1e-6  # one Gaussian: the volume is centred on it
    session.set_selection(seed.float())
    masking = Masking()
    lo, hi = session.scene.bounding_box(quantile=0.01)
    radius = float(((hi - lo) / 2).norm()) * 0.3
    count = masking.select_volume(session, "sphere", 0.3)
    inside = (means - means[0]).norm(dim=-1) <= radius
    assert count == int(inside.sum()) > 1 and torch.equal(session.selection > 0.5, inside)
    session.set_selection(torch.zeros(len(means)))
    session.op = "add"
    masking.select_volume(session, "box", 1.0)  # nothing selected: the scene's own box
    assert 0.9 * len(means) < session.selected_count() < len(means) + 1
    session.op = "subtract"
    centre = means[session.selection > 0.5].mean(0)  # the volume's centre: the selection's
    masking.select_volume(session, "box", 0.2)
    kept = session.selection > 0.5
    near = ((means - centre).abs() <= (hi - lo) / 2 * 0.2).all(-1)
    assert near.any() and not (kept & near).any()
    before = session.selection.clone()
    for shape, size in (("cone", 0.5), ("sphere", 0.0), ("box", 1.5)):
        with pytest.raises(ValueError):
            masking.select_volume(session, shape, size)
    assert torch.equal(session.selection, before)  # a refused volume changes nothing


# ------------------------------------------------------------------------------------------ SAM note
def test_sam_tool_says_no_checkpoint_before_the_first_click():
    missing = Masking(None).sam_missing()
    assert "sam_vit_b_01ec64.pth" in missing and "--sam-checkpoint" in missing
    assert Masking(None, segmenter=object()).sam_missing() == ""
    shown = sam_note_update("sam", missing)
    assert shown["visible"] and "--sam-checkpoint" in shown["value"]
    assert not sam_note_update("brush", missing)["visible"] and not sam_note_update("sam", "")["visible"]


# ------------------------------------------------------------------------------------------ buttons and lines
def test_generate_cancel_is_enabled_only_while_a_generation_runs():
    for state, running in (("idle", False), ("queued", True), ("running", True), ("done", False),
                           ("error", False)):
        run, cancel = generate_buttons(JobStatus(state=state))
        assert run["interactive"] is not running and cancel["interactive"] is running


def test_edit_model_line_follows_the_model_during_a_run(tmp_path):
    session = _session(tmp_path)
    states = iter(["loading", "loading", "loaded", "loaded"])
    models = SimpleNamespace(status=lambda _: {"spec": "sd", "state": next(states)})
    jobs = [JobStatus(state="queued"), JobStatus(state="running", step=1), JobStatus(state="running", step=2)]
    jobs.append(JobStatus(state="done"))
    lines = [out[-1] for out in run_outputs(SimpleNamespace(models=models), session, jobs[0], iter(jobs[1:]))]
    assert "loading" in lines[0] and "loaded" in lines[2]
    assert not isinstance(lines[1], str) and not isinstance(lines[3], str)  # unchanged: skipped, not re-sent


# ------------------------------------------------------------------------------------------ views
def test_a_new_scene_resets_the_orbit_sliders(tmp_path):
    session = _session(tmp_path)
    session.view = session.view.rotated(90, 40)
    assert slider_angles(session) == pytest.approx((120.0, 60.0))
    session.set_bundle(SceneBundle(small_scene(50), "other.ply"))
    assert slider_angles(session) == pytest.approx((30.0, 20.0))


def test_undoing_a_generation_frames_the_object_that_comes_back(tmp_path):
    """The robot came back from an undone generation still framed on the generated ball (cut at the top):
    another object re-frames the view, from the same angles; an edit of the same object keeps the view."""
    from engine.scene import random_scene

    session = _session(tmp_path, 300)
    session.view = session.view.rotated(60, 10)
    ball = random_scene(200, seed=5, extent=0.2)
    session.show_state(ball, None, {}, "generated: a ball")
    framed = session.view
    lo, hi = ball.bounding_box()  # 200 Gaussians: the whole box
    assert framed.target == pytest.approx(tuple(((lo + hi) / 2).tolist()), abs=1e-5)
    assert (framed.azimuth, framed.elevation) == pytest.approx((90.0, 30.0))
    moved = framed.rotated(10, 0)
    session.view = moved
    session.show_state(ball.replace(sh0=ball.sh0 + 0.1), None, {}, "generated: a ball")  # an edit of it
    assert session.view == moved


def test_large_view_size_follows_the_browser_window():
    assert large_size(1600, 970) == (1600, 900)
    w, h = large_size(3840, 2160)
    assert max(w, h) == 1920 and abs(w / h - 3840 / 2090) < 0.01
    assert large_size(0, None) == (1280, 650)


def test_frame_selection_centres_on_the_selection(tmp_path):
    session = _session(tmp_path, 400)
    means = session.scene.means
    corner = means[:, 0] > torch.quantile(means[:, 0], 0.9)
    session.set_selection(corner.float())
    session.view = session.view.rotated(45, 0)
    framed = selection_view(session)
    lo, hi = session.scene.subset(corner).bounding_box()  # a small selection: its whole box
    assert framed.target == pytest.approx(tuple(((lo + hi) / 2).tolist()), abs=1e-5)
    assert framed.radius < session.view.radius and framed.azimuth == session.view.azimuth
    session.set_selection(torch.zeros(len(means)))
    assert selection_view(session).radius == pytest.approx(session.view.radius, rel=1e-5)  # nothing: the scene


def test_tint_goes_off_after_an_edit(tmp_path, monkeypatch):
    import numpy as np

    import editor.runners as runners

    monkeypatch.setattr(runners, "view_image", lambda scene, view: np.zeros((4, 4, 3), np.uint8))  # no render
    session = _session(tmp_path, 100)
    revision = session.revision
    assert session.tint
    show_after(session)
    assert not session.tint and session.revision > revision and session.job.preview is not None


def test_the_progress_line_says_estimating_until_the_engine_has_an_eta():
    from editor.edit_panel import progress_html
    from editor.job_status import JobStatus

    assert "ETA estimating…" in progress_html(JobStatus(state="running", step=2, total=300, eta_s=None))
    line = progress_html(JobStatus(state="running", step=9, total=300, eta_s=174.0))
    assert "ETA 2:54" in line and "estimating" not in line
    assert "ETA" not in progress_html(JobStatus(state="done", step=300, total=300, eta_s=None))


def test_turntable_options_are_bounded_with_messages_that_name_the_bound():
    from editor.drawing import turntable_frames

    assert turntable_frames(2, 24, 384) == 48 and turntable_frames(0.5, 6, 128) == 3
    for args, words in [((0.1, 24, 384), "length must be between 0.5 s and 30 s"),
                        ((2, 100, 384), "frames per second must be between 6 and 60"),
                        ((2, 24, 4000), "size must be between 128 px and 1920 px"),
                        ((2, 24, 200), "multiple of 16 px"), ((2, 24.5, 384), "whole numbers"),
                        (("2", 24, 384), "length")]:
        with pytest.raises(ValueError, match=words):
            turntable_frames(*args)
