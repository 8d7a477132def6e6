"""The engine thread: cancel, failures, undo/redo, sessions, autosave recovery after a real crash (SIGKILL)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from engine.optimize import DensifyConfig
from engine.guidance.closed_form import ClosedFormPrior
from engine.worker import DoneEvent, EngineWorker, ErrorEvent, PreviewEvent, ProgressEvent, StateEvent
from tests.edit.scenes import params_equal, two_part_scene
from tests.worker.helpers import drain, edit_config, loaded, loader

REPO = Path(__file__).resolve().parents[2]


def test_edit_streams_progress_and_previews_then_becomes_a_history_entry(worker, scene_and_mask):
    scene, mask = scene_and_mask
    events = worker.events("s")
    loaded(worker, scene, mask)
    job = worker.start_edit("s", edit_config(steps=4))
    result = job.result(60)
    got = drain(events)
    mine = [e for e in got if e.job == job.command_id]
    assert [e.step for e in mine if isinstance(e, ProgressEvent)] == [1, 2, 3, 4]
    assert [e.step for e in mine if isinstance(e, PreviewEvent)] == [2, 4]
    assert isinstance(mine[-1], DoneEvent) and not mine[-1].cancelled
    state = [e for e in got if isinstance(e, StateEvent)][-1]
    assert state.labels == ("load scene", "mask", "edit (sds): red") and state.can_undo and not state.busy
    now, _ = worker.snapshot("s").result(10)
    assert params_equal(now, result.scene) and not params_equal(now, scene)


def test_cancel_takes_effect_within_one_step_and_changes_nothing(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    seen = []

    def on_event(event):
        if isinstance(event, ProgressEvent):
            seen.append(event.step)
            if event.step == 3:
                worker.cancel("s")

    worker.subscribe(on_event, "s")
    result = worker.start_edit("s", edit_config(steps=200)).result(60)
    assert result.cancelled and result.steps_done == 3 and seen == [1, 2, 3]
    now, now_mask = worker.snapshot("s").result(10)
    assert params_equal(now, scene) and torch.equal(now_mask, mask)
    assert not worker.undo("s").exception(10) and worker.snapshot("s").result(10)[1] is None  # undo = the mask


def test_exception_mid_job_is_an_error_event_scene_unchanged_worker_keeps_serving(worker, scene_and_mask):
    scene, mask = scene_and_mask
    events = worker.events("s")
    loaded(worker, scene, mask)
    from engine.edit import build_loss

    config = edit_config(steps=10)
    inner, calls = build_loss(config, ClosedFormPrior((1.0, 0.0, 0.0))), [0]

    def failing_loss(*args, **kwargs):  # the 4th step's loss raises, like a device failure mid-job
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("the GPU caught fire")
        return inner(*args, **kwargs)

    failing = worker.start_edit("s", config, loss_fn=failing_loss)
    with pytest.raises(RuntimeError, match="caught fire"):
        failing.result(60)
    errors = [e for e in drain(events) if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and "caught fire" in errors[0].message and errors[0].job == failing.command_id
    now, now_mask = worker.snapshot("s").result(10)
    assert params_equal(now, scene) and torch.equal(now_mask, mask)
    assert worker.start_edit("s", edit_config(steps=2)).result(60).steps_done == 2  # still serving
    assert worker.alive


def test_missing_model_is_an_error_with_instructions_and_the_worker_keeps_running(tmp_path, scene_and_mask):
    scene, mask = scene_and_mask
    w = EngineWorker(device="cpu")  # the real loader (offline in tests)
    try:
        events = w.events("s")
        loaded(w, scene, mask)
        job = w.start_edit("s", edit_config(model="nobody-here/no-such-model"))
        with pytest.raises(OSError):
            job.result(60)
        error = next(e for e in drain(events) if isinstance(e, ErrorEvent))
        assert "no-such-model" in error.message and "closed-form" in error.message
        assert error.kind == "model-unavailable"  # typed: the UI marks the model, never matching the text
        assert w.start_edit("s", edit_config(steps=1, model="closed-form:#d02020")).result(60).steps_done == 1
    finally:
        w.shutdown()


def test_undo_redo_round_trip_is_exact(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    edited = worker.start_edit("s", edit_config(steps=3)).result(60).scene
    assert worker.undo("s").result(10) == "edit (sds): red"
    before, before_mask = worker.snapshot("s").result(10)
    assert params_equal(before, scene) and torch.equal(before_mask, mask)
    assert worker.undo("s").result(10) == "mask"
    assert worker.snapshot("s").result(10)[1] is None
    worker.redo("s").result(10)
    worker.redo("s").result(10)
    assert params_equal(worker.snapshot("s").result(10)[0], edited)
    with pytest.raises(ValueError, match="nothing to redo"):
        worker.redo("s").result(10)


def test_commit_result_is_one_history_entry_that_undo_reverts(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    changed = scene.replace(sh0=scene.sh0 + 0.5)
    assert worker.commit_result("s", changed, mask, label="edit (gpu)").result(10) == (len(scene), "")
    now, now_mask = worker.snapshot("s").result(10)
    assert params_equal(now, changed) and torch.equal(now_mask, mask)
    assert worker.undo("s").result(10) == "edit (gpu)"
    assert params_equal(worker.snapshot("s").result(10)[0], scene)
    with pytest.raises(ValueError, match="weights"):  # a mask of the wrong size changes nothing
        worker.commit_result("s", changed, mask[:5], label="bad").result(10)
    assert params_equal(worker.snapshot("s").result(10)[0], scene)


def test_sessions_are_independent_and_served_while_another_edit_is_paused(worker, scene_and_mask):
    """No sleep decides this: commands run in order and the model is loaded beforehand, so b's commands below
    are served only once a's job has started (nothing parks it). Each b command goes out after the one before
    has answered, and the worker serves it between two of a's steps: a job that ignored the pause would have
    taken a step, and reported it (on the worker thread, before answering), by the next answer."""
    scene, mask = scene_and_mask
    other, other_parts, _ = two_part_scene(30)
    loaded(worker, scene, mask, "a")
    worker.load_scene("b", other).result(30)
    assert worker.start_edit("a", edit_config(steps=1)).result(60).steps_done == 1  # loads the model
    started = []
    worker.subscribe(lambda e: started.append(e.step) if isinstance(e, ProgressEvent) else None, "a")
    worker.pause("a")
    job = worker.start_edit("a", edit_config(steps=5))
    # a's edit is held before its first step; b's commands still run in the meantime
    worker.set_mask("b", (other_parts == 1).float()).result(30)
    for _ in range(10):
        assert worker.snapshot("b").result(30)[1] is not None
    a_mask_cmd = worker.set_mask("a", None)  # a's own command waits for a's job
    for _ in range(10):
        worker.snapshot("b").result(30)
    assert not job.done() and started == [] and not a_mask_cmd.done()
    worker.resume("a")
    assert job.result(60).steps_done == 5 and started == [1, 2, 3, 4, 5]
    a_mask_cmd.result(10)
    assert params_equal(worker.snapshot("b").result(10)[0], other)


def test_cancel_drops_queued_edits(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    worker.pause("s")
    first = worker.start_edit("s", edit_config(steps=50))
    second = worker.start_edit("s", edit_config(steps=50))
    worker.cancel("s")
    assert first.result(60).cancelled and second.result(60).cancelled
    assert params_equal(worker.snapshot("s").result(10)[0], scene)


def test_commands_for_unknown_sessions_and_bad_masks_are_errors(worker, scene_and_mask):
    scene, mask = scene_and_mask
    with pytest.raises(ValueError, match="has no scene"):
        worker.undo("nobody").result(10)
    worker.load_scene("s", scene).result(10)
    with pytest.raises(ValueError, match="mask has 3 weights"):
        worker.set_mask("s", torch.ones(3)).result(10)
    with pytest.raises(ValueError, match="nothing is selected"):
        worker.start_edit("s", edit_config()).result(10)


CRASHING_SCRIPT = textwrap.dedent("""
    import sys, torch
    from engine.worker import EngineWorker, ProgressEvent
    from engine.edit import EditConfig
    from engine.optimize import DensifyConfig
    from engine.guidance.closed_form import ClosedFormPrior
    from tests.edit.scenes import two_part_scene
    workspace, expected = sys.argv[1], sys.argv[2]
    w = EngineWorker(workspace=workspace, model_loader=lambda spec, device=None: ClosedFormPrior((1.0, 0.0, 0.0)))
    scene, parts, _ = two_part_scene(60)
    w.load_scene("alice", scene).result()
    w.set_mask("alice", (parts == 0).float()).result()
    cfg = dict(prompt="red", steps=3, resolution=32, preview_every=0, densify=DensifyConfig(enabled=False))
    w.start_edit("alice", EditConfig(**cfg)).result()
    snap, snap_mask = w.snapshot("alice").result()
    torch.save({"params": dict(snap.items()), "mask": snap_mask}, expected)
    def report(event):
        if isinstance(event, ProgressEvent) and event.step == 2:
            print("RUNNING", flush=True)
    w.subscribe(report)
    cfg["steps"] = 100000
    w.start_edit("alice", EditConfig(**cfg)).result()  # killed during this job
""")


def test_autosave_recovers_everything_but_the_running_job_after_a_kill(tmp_path):
    workspace, expected = tmp_path / "ws", tmp_path / "expected.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_SCRIPT, str(workspace), str(expected)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "RUNNING", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    want = torch.load(expected, weights_only=True)

    fresh = EngineWorker(workspace=workspace, model_loader=loader, device="cpu")
    try:
        assert fresh.saved_sessions() == ["alice"]
        fresh.restore_session("alice").result(30)
        scene, mask = fresh.snapshot("alice").result(10)
        assert all(torch.equal(getattr(scene, n), t) for n, t in want["params"].items())
        assert torch.equal(mask, want["mask"])
        fresh.undo("alice").result(10)  # the restored history still undoes the edit
        assert not params_equal(fresh.snapshot("alice").result(10)[0], scene)
    finally:
        fresh.shutdown()


def test_models_are_loaded_once_per_spec(tmp_path, scene_and_mask):
    scene, mask = scene_and_mask
    loads = []

    def counting_loader(spec, device=None):
        loads.append(spec)
        return ClosedFormPrior((1.0, 0.0, 0.0))

    w = EngineWorker(model_loader=counting_loader, device="cpu")
    try:
        loaded(w, scene, mask)
        for spec in ("closed-form:red", "closed-form:red", "closed-form:blue"):
            w.start_edit("s", edit_config(steps=1, model=spec)).result(60)
        assert loads == ["closed-form:red", "closed-form:blue"]
    finally:
        w.shutdown()


# ---------------------------------------------------------------------------------------------- generation


def _gen_config(steps=3, prompt="a red ball", **kw):
    from engine.generate import GenerateConfig

    kw.setdefault("num_gaussians", 150)
    return GenerateConfig(prompt=prompt, model="closed-form:#d02020", steps=steps, resolution=32, preview_every=2,
                          preview_resolution=16, densify=DensifyConfig(enabled=False), **kw)


def test_generate_replaces_the_scene_as_one_history_entry_and_undo_restores_it(worker, scene_and_mask):
    scene, mask = scene_and_mask
    events = worker.events("s")
    loaded(worker, scene, mask)
    job = worker.start_generate("s", _gen_config(steps=3))
    result = job.result(60)
    got = drain(events)
    mine = [e for e in got if e.job == job.command_id]
    assert [e.step for e in mine if isinstance(e, ProgressEvent)] == [1, 2, 3]
    assert [e.step for e in mine if isinstance(e, PreviewEvent)] == [2, 3]
    assert isinstance(mine[-1], DoneEvent) and mine[-1].action == "generate" and not mine[-1].cancelled
    assert not result.cancelled and result.steps_done == 3 and len(result.scene) == 150
    state = [e for e in got if isinstance(e, StateEvent)][-1]
    assert state.labels == ("load scene", "mask", "generate (sds): a red ball") and state.num_gaussians == 150
    now, now_mask = worker.snapshot("s").result(10)
    assert params_equal(now, result.scene) and torch.equal(now_mask, torch.zeros(150))
    assert worker.undo("s").result(10) == "generate (sds): a red ball"
    before, before_mask = worker.snapshot("s").result(10)
    assert params_equal(before, scene) and torch.equal(before_mask, mask)
    worker.redo("s").result(10)
    assert params_equal(worker.snapshot("s").result(10)[0], result.scene)


def test_generate_can_start_from_the_current_scene_or_a_session_without_one(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    result = worker.start_generate("s", _gen_config(steps=1), from_current=True).result(60)
    assert len(result.scene) == len(scene) and not params_equal(result.scene, scene)
    fresh = worker.start_generate("new", _gen_config(steps=1)).result(60)
    now, now_mask = worker.snapshot("new").result(10)
    assert params_equal(now, fresh.scene) and not bool(now_mask.any())


def test_cancel_mid_generation_leaves_the_scene_as_before(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    events = worker.events("s")

    def on_event(event):
        if isinstance(event, ProgressEvent) and event.step == 2:
            worker.cancel("s")

    worker.subscribe(on_event, "s")
    result = worker.start_generate("s", _gen_config(steps=200)).result(60)
    assert result.cancelled and result.steps_done == 2
    done = [e for e in drain(events) if isinstance(e, DoneEvent)]
    assert done[-1].action == "generate" and done[-1].cancelled
    now, now_mask = worker.snapshot("s").result(10)
    assert params_equal(now, scene) and torch.equal(now_mask, mask)
    assert worker.undo("s").result(10) == "mask"  # no generation entry was added


def test_generate_with_an_empty_prompt_is_an_error_and_the_worker_keeps_serving(worker, scene_and_mask):
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    events = worker.events("s")
    bad = worker.start_generate("s", _gen_config(prompt="  "))
    with pytest.raises(ValueError, match="prompt is empty"):
        bad.result(60)
    errors = [e for e in drain(events) if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].action == "generate" and errors[0].job == bad.command_id
    now, now_mask = worker.snapshot("s").result(10)
    assert params_equal(now, scene) and torch.equal(now_mask, mask)
    assert worker.start_generate("s", _gen_config(steps=1)).result(60).steps_done == 1
    assert worker.alive


# ---------------------------------------------------------------------------------------------- model loading, tasks, parts


def test_a_loading_model_blocks_no_other_session_and_cancel_ends_the_wait(tmp_path, scene_and_mask, time_limit):
    from engine.worker import NoticeEvent

    scene, mask = scene_and_mask
    release = __import__("threading").Event()

    def slow_loader(spec, device=None):
        if spec.startswith("slow"):
            release.wait(60)  # a download that takes long (or hangs on a dead network)
        return ClosedFormPrior((1.0, 0.0, 0.0))

    w = EngineWorker(model_loader=slow_loader, device="cpu")
    try:
        loaded(w, scene, mask, "a")
        loaded(w, scene, mask, "b")
        notices = w.events("a")
        waiting = w.start_edit("a", edit_config(steps=2, model="slow:sd"))
        other = w.start_edit("b", edit_config(steps=2))  # another model: runs while a's model loads
        assert other.result(60).steps_done == 2 and not waiting.done()
        assert any(isinstance(e, NoticeEvent) and "loading the model slow:sd" in e.message for e in drain(notices))
        t = time.monotonic()
        w.cancel("a")
        assert waiting.result(10).cancelled and time.monotonic() - t < time_limit(5)
        release.set()
        assert w.start_edit("a", edit_config(steps=1, model="slow:sd")).result(60).steps_done == 1  # loaded meanwhile
    finally:
        release.set()
        w.shutdown()


def test_task_reports_progress_runs_beside_another_edit_and_cancels(worker, scene_and_mask):
    from engine.worker import TaskCancelled, TaskEvent

    scene, mask = scene_and_mask
    loaded(worker, scene, mask, "a")
    loaded(worker, scene, mask, "b")
    events = worker.events("b")

    def work(progress, should_stop):
        for i in range(3):
            progress(i, 3, f"view {i + 1} of 3")
        return "lifted"

    long_edit = worker.start_edit("a", edit_config(steps=2000))
    assert worker.start_task("b", "sam", work).result(60) == "lifted"  # between two steps of a's edit
    assert not long_edit.done()
    got = [e for e in drain(events) if isinstance(e, TaskEvent)]
    assert [(e.step, e.total, e.action) for e in got] == [(0, 3, "sam"), (1, 3, "sam"), (2, 3, "sam")]
    worker.cancel("a")
    assert long_edit.result(60).cancelled

    started = __import__("threading").Event()

    def endless(progress, should_stop):
        started.set()
        while True:
            progress(0, 1)
            time.sleep(0.01)

    task = worker.start_task("b", "sam", endless)
    started.wait(30)
    worker.cancel("b")
    assert task.result(10) is None
    assert any(isinstance(e, DoneEvent) and e.cancelled and e.action == "sam" for e in drain(events))
    assert issubclass(TaskCancelled, Exception)


def test_parts_are_undoable_history_entries_and_restore_keeps_parts_and_name(tmp_path, scene_and_mask):
    scene, mask = scene_and_mask
    w = EngineWorker(workspace=tmp_path / "ws", model_loader=loader, device="cpu")
    try:
        parts = {"left": mask.clone(), "right": 1 - mask}
        w.load_scene("s", scene, parts=parts, name="robot.ply").result(30)
        w.set_parts("s", {"left": mask.clone()}, label="delete part right").result(30)
        now = w.current("s").result(10)
        assert list(now.parts) == ["left"] and now.name == "robot.ply"
        assert w.undo("s").result(10) == "delete part right"
        assert list(w.current("s").result(10).parts) == ["left", "right"]
        w.redo("s").result(10)
    finally:
        w.shutdown()
    fresh = EngineWorker(workspace=tmp_path / "ws", model_loader=loader, device="cpu")
    try:
        fresh.restore_session("t", "s").result(30)
        back = fresh.current("t").result(10)
        assert list(back.parts) == ["left"] and back.name == "robot.ply" and torch.equal(back.parts["left"], mask)
        fresh.undo("t").result(10)
        assert list(fresh.current("t").result(10).parts) == ["left", "right"]
    finally:
        fresh.shutdown()


def test_a_model_that_finishes_loading_before_the_job_is_set_aside_still_runs(tmp_path, scene_and_mask):
    """The race between the loader thread and parking: the job must run once, not crash the engine."""
    scene, mask = scene_and_mask

    def instant_loader(spec, device=None):
        return ClosedFormPrior((1.0, 0.0, 0.0))

    w = EngineWorker(model_loader=instant_loader, device="cpu")
    try:
        loaded(w, scene, mask)
        for i in range(5):  # a new spec each time: each job starts a load that ends at once
            assert w.start_edit("s", edit_config(steps=1, model=f"closed-form:#{i}0{i}0{i}0")).result(60).steps_done == 1
        assert w.alive
    finally:
        w.shutdown()


def test_warm_up_runs_the_renderer_forward_and_backward_once(worker, monkeypatch):
    import engine.render

    real_render, rendered = engine.render.render, []

    def spy(scene, cameras, **kwargs):
        rendered.append((scene, worker.warming_up))
        return real_render(scene, cameras, **kwargs)

    monkeypatch.setattr(engine.render, "render", spy)
    seconds = worker.warm_up().result(120)
    assert len(rendered) == 1 and rendered[0][1]  # one render, while the worker said it was warming up
    scene = rendered[0][0]
    assert scene.means.grad is not None and bool(scene.means.grad.abs().sum() > 0)  # the backward pass ran
    assert seconds > 0 and not worker.warming_up


# ---------------------------------------------------------------------------------------------- up axis


def test_up_is_a_history_entry_in_the_state_events_and_undo_brings_it_back(worker, scene_and_mask):
    scene, mask = scene_and_mask
    events = worker.events("s")
    worker.load_scene("s", scene, up=(0.0, -1.0, 0.0), up_source="format").result(30)
    now = worker.current("s").result(10)
    assert now.up == (0.0, -1.0, 0.0) and now.up_source == "format"
    assert worker.set_up("s", (0, 0, 2)).result(10) == (0.0, 0.0, 1.0)
    state = [e for e in drain(events) if isinstance(e, StateEvent)][-1]
    assert state.up == (0.0, 0.0, 1.0) and state.up_source == "user" and state.labels[-1] == "up axis +z"
    assert worker.undo("s").result(10) == "up axis +z"
    now = worker.current("s").result(10)
    assert now.up == (0.0, -1.0, 0.0) and now.up_source == "format"
    worker.redo("s").result(10)
    assert worker.current("s").result(10).up == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="up source"):
        worker.set_up("s", (1, 0, 0), "sideways").result(10)


def test_a_scene_opened_without_an_up_is_plus_z_default_and_a_file_gets_its_detected_up(worker, tmp_path):
    from engine.io import save
    from engine.io.detect_up import detect_up

    scene, _, _ = two_part_scene(40)
    worker.load_scene("s", scene).result(30)
    assert (worker.current("s").result(10).up, worker.current("s").result(10).up_source) == ((0.0, 0.0, 1.0),
                                                                                           "default")
    path = tmp_path / "capture.ply"
    save(scene, path)
    guess = detect_up(path)
    worker.load_scene("f", path).result(30)
    now = worker.current("f").result(10)
    assert (now.up, now.up_source) == (guess.up, guess.source) and now.name == "capture.ply"


def test_up_survives_autosave_and_restore(tmp_path, scene_and_mask):
    scene, mask = scene_and_mask
    w = EngineWorker(workspace=tmp_path / "ws", model_loader=loader, device="cpu")
    try:
        w.load_scene("s", scene, up=(0.0, -1.0, 0.0), up_source="geometry").result(30)
        w.set_up("s", (1.0, 0.0, 0.0), label="up axis +x").result(10)
    finally:
        w.shutdown()
    fresh = EngineWorker(workspace=tmp_path / "ws", model_loader=loader, device="cpu")
    try:
        fresh.restore_session("t", "s").result(30)
        back = fresh.current("t").result(10)
        assert back.up == (1.0, 0.0, 0.0) and back.up_source == "user"
        fresh.undo("t").result(10)
        back = fresh.current("t").result(10)
        assert back.up == (0.0, -1.0, 0.0) and back.up_source == "geometry"
    finally:
        fresh.shutdown()


def test_a_generation_brings_its_up_and_undo_brings_the_previous_scenes_up_back(worker, scene_and_mask):
    scene, mask = scene_and_mask
    worker.load_scene("s", scene, up=(0.0, -1.0, 0.0), up_source="format").result(30)
    result = worker.start_generate("s", _gen_config(steps=1, up=(0.0, 1.0, 0.0))).result(60)
    assert result.up == (0.0, 1.0, 0.0)
    now = worker.current("s").result(10)
    assert now.up == (0.0, 1.0, 0.0) and now.up_source == "generated"
    worker.undo("s").result(10)
    now = worker.current("s").result(10)
    assert now.up == (0.0, -1.0, 0.0) and now.up_source == "format" and len(now.scene) == len(scene)
    worker.start_generate("new", _gen_config(steps=1)).result(60)  # a session without a scene before
    assert worker.current("new").result(10).up_source == "generated"


def test_a_committed_result_keeps_the_up_unless_it_brings_its_own(worker, scene_and_mask):
    scene, mask = scene_and_mask
    worker.load_scene("s", scene, up=(0.0, -1.0, 0.0), up_source="format", parts={"left": mask}, name="a").result(30)
    worker.commit_result("s", scene.replace(sh0=scene.sh0 + 0.1), mask, label="edit (gpu)").result(10)
    now = worker.current("s").result(10)
    assert now.up_source == "format" and list(now.parts) == ["left"] and now.name == "a"
    worker.commit_result("s", scene, None, label="generate (gpu)", up=(0.0, 0.0, 1.0), name="ball").result(10)
    now = worker.current("s").result(10)
    assert now.up == (0.0, 0.0, 1.0) and now.up_source == "generated" and now.parts == {} and now.name == "ball"
    worker.undo("s").result(10)
    now = worker.current("s").result(10)
    assert now.up == (0.0, -1.0, 0.0) and list(now.parts) == ["left"] and now.name == "a"


def test_a_committed_edit_with_a_row_map_keeps_the_named_parts(worker, scene_and_mask):
    scene, mask = scene_and_mask
    worker.load_scene("s", scene, parts={"left": mask, "right": 1 - mask}).result(30)
    worker.set_mask("s", mask).result(10)
    rows = torch.cat([torch.arange(len(scene)), torch.tensor([-1])])  # one Gaussian added by the edit
    grown = scene.subset(rows.clamp(min=0))
    worker.commit_result("s", grown, torch.cat([mask, torch.ones(1)]), label="edit (gpu)", row_sources=rows).result(10)
    parts = worker.current("s").result(10).parts
    assert torch.equal(parts["left"], torch.cat([mask, torch.ones(1)]))
    assert torch.equal(parts["right"], torch.cat([1 - mask, torch.zeros(1)]))


def test_a_gpu_result_committed_after_an_undo_lands_after_the_state_it_started_from(worker, scene_and_mask):
    """A Space edit runs outside the worker, so the history can move while it runs. Here it started after a
    densifying edit and the user undid that edit meanwhile: the result (rows of the densified scene) goes after
    its own start, not onto the undone state (where its row map does not fit), and the note says so."""
    scene, mask = scene_and_mask
    events = worker.events("s")
    worker.load_scene("s", scene, parts={"left": mask}).result(30)
    rows = torch.cat([torch.arange(len(scene)), torch.tensor([0])])  # the first edit split row 0
    grown = scene.subset(rows)
    worker.commit_result("s", grown, torch.cat([mask, torch.ones(1)]), label="edit 1", row_sources=rows).result(10)
    now = worker.current("s").result(10)
    start = (now.history_token, now.state_id)
    worker.undo("s").result(10)  # meanwhile, the user undoes edit 1
    second = grown.replace(sh0=grown.sh0 + 0.25)
    size, note = worker.commit_result("s", second, None, label="edit 2", row_sources=torch.arange(len(grown)),
                                      start=start).result(10)
    assert size == len(grown) and "undone" in note and "'edit 1'" in note
    state = [e for e in drain(events) if isinstance(e, StateEvent)][-1]
    assert state.labels == ("load scene", "edit 1", "edit 2") and state.cursor == 2
    now = worker.current("s").result(10)
    assert params_equal(now.scene, second) and now.parts["left"].shape == (len(grown),)
    assert worker.undo("s").result(10) == "edit 2" and params_equal(worker.snapshot("s").result(10)[0], grown)

    worker.load_scene("s", scene).result(30)  # another scene opened while a job ran: its ids start again at 0
    now = worker.current("s").result(10)
    _, note = worker.commit_result("s", second, None, label="edit 3", start=(start[0], now.state_id)).result(10)
    assert "discarded" in note and params_equal(worker.snapshot("s").result(10)[0], scene)


# ---------------------------------------------------------------------------------------------- error kinds


def test_error_events_say_their_kind_from_the_exception_type(worker, scene_and_mask):
    scene, mask = scene_and_mask
    events = worker.events("s")
    loaded(worker, scene, mask)

    def broken_loss(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    worker.start_edit("s", edit_config(steps=3), loss_fn=broken_loss).exception(60)
    worker.start_generate("s", _gen_config(prompt=" ")).exception(60)  # ValueError: empty prompt
    worker.set_mask("s", torch.ones(3)).exception(60)  # ValueError: the wrong size
    (worker.workspace / "s").rename(worker.workspace / "moved")
    (worker.workspace / "s").write_text("")  # a file where the session's autosave folder should be
    worker.set_mask("s", None).exception(60)  # OSError: the autosave cannot be written
    kinds = [(e.action, e.kind) for e in drain(events) if isinstance(e, ErrorEvent)]
    assert kinds == [("edit", "internal"), ("generate", "invalid-input"), ("mask", "invalid-input"),
                     ("mask", "file")]


def test_a_generated_object_has_its_name_and_no_parts_of_the_scene_it_replaced(worker, scene_and_mask):
    scene, mask = scene_and_mask
    worker.load_scene("s", scene, parts={"left": mask, "right": 1 - mask}, name="robot.ply").result(30)
    same_size = _gen_config(steps=1, num_gaussians=len(scene))  # parts of the same length must not carry over
    worker.start_generate("s", same_size, name="generated: a red ball").result(60)
    now = worker.current("s").result(10)
    assert now.name == "generated: a red ball" and now.parts == {}
    worker.undo("s").result(10)
    now = worker.current("s").result(10)
    assert now.name == "robot.ply" and list(now.parts) == ["left", "right"]
    worker.start_generate("s", _gen_config(steps=1), from_current=True).result(60)  # the same rows, refined
    now = worker.current("s").result(10)
    assert now.name == "robot.ply" and list(now.parts) == ["left", "right"]


def test_a_result_is_adopted_after_an_undo_and_redo_came_back_to_its_state_and_on_top_after_a_new_one(
        worker, scene_and_mask):
    """The history rebuilds its State objects on undo/redo (it stores deltas): the job compares states by id.
    (The worker queues a session's commands behind its job; the history is moved directly from the job's
    progress callback, on the worker thread, as anything that ran between its steps would.)"""
    scene, mask = scene_and_mask
    loaded(worker, scene, mask)
    history = worker._sessions.find("s")  # noqa: SLF001 - moved from inside the job

    def undo_redo(event):
        if isinstance(event, ProgressEvent) and event.step == 1:
            history.undo(), history.redo()

    worker.subscribe(undo_redo, "s")
    result = worker.start_edit("s", edit_config(steps=1)).result(60)
    assert params_equal(worker.snapshot("s").result(10)[0], result.scene)  # adopted

    def new_state(event):
        if isinstance(event, ProgressEvent) and event.step == 1 and not history.can_redo:
            history.push("mask", mask=None)

    worker.subscribe(new_state, "s")
    second = worker.start_edit("s", edit_config(steps=1)).result(60)
    assert params_equal(worker.snapshot("s").result(10)[0], second.scene)  # new work meanwhile: the result on top
    assert history.current.label != "mask" and history._records[history._cursor - 1].label == "mask"  # noqa: SLF001
