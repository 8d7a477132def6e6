"""Where a queued job stands (CommandQueue.wait_of, EngineWorker.queue_wait): what a session waiting behind
another session's long edit is told (issue 26.6)."""

import threading

from engine.worker import EngineWorker, ProgressEvent
from engine.worker.queue import JOB, QUICK, TASK, CommandQueue
from tests.worker.helpers import edit_config, loaded, loader


def test_wait_of_counts_the_running_job_parked_jobs_and_earlier_jobs_but_no_quick_commands():
    q = CommandQueue()
    q.submit("a", "edit", None, JOB)
    running = q.take()
    q.submit("p", "edit", None, JOB)
    parked = q.take()
    q.park(parked, "sd", settled=lambda spec: False)
    q.submit("c", "mask", None, QUICK)
    q.submit("d", "sam", None, TASK)
    q.submit("e", "generate", None, JOB)
    mine = q.submit("b", "edit", None, JOB)
    later = q.submit("f", "edit", None, JOB)
    with q.running(running):
        wait = q.wait_of(mine.command_id)
        assert wait.ahead == (("a", "edit"), ("p", "edit"), ("e", "generate"))
        assert wait.running_eta_s is None  # no progress record yet
        q.note_eta(parked, 99.0)  # only the running job's records count
        assert q.wait_of(mine.command_id).running_eta_s is None
        q.note_eta(running, 40.0)
        eta = q.wait_of(mine.command_id).running_eta_s
        assert 39.0 < eta <= 40.0
        assert len(q.wait_of(later.command_id).ahead) == 4
    assert q.wait_of(mine.command_id).ahead == (("p", "edit"), ("e", "generate"))  # a has ended
    assert q.wait_of(running.id) is None and q.wait_of(parked.id) is None and q.wait_of(12345) is None


def test_a_second_sessions_edit_sees_the_first_sessions_running_edit_and_its_time_left(tmp_path, scene_and_mask):
    scene, mask = scene_and_mask
    worker = EngineWorker(workspace=None, model_loader=loader, device="cpu")
    try:
        loaded(worker, scene, mask, "a")
        loaded(worker, scene, mask, "b")
        stepped = threading.Event()

        def hold_after_first_step(event):
            if isinstance(event, ProgressEvent) and event.step >= 4 and not stepped.is_set():  # an ETA by then
                worker.pause("a")  # on the worker thread, before a's next step: a stays running, held
                stepped.set()

        worker.subscribe(hold_after_first_step, "a")
        long_edit = worker.start_edit("a", edit_config(steps=200))
        assert stepped.wait(60)
        queued = worker.start_edit("b", edit_config(steps=2))
        wait = worker.queue_wait(queued.command_id)
        assert wait.ahead == (("a", "edit"),)
        assert wait.running_eta_s is not None and wait.running_eta_s > 0  # 196 steps left
        worker.cancel("a")
        assert long_edit.result(60).cancelled
        assert queued.result(60).steps_done == 2
        assert worker.queue_wait(queued.command_id) is None  # it ran: no longer waiting
    finally:
        worker.shutdown()


def test_the_next_running_job_starts_without_the_last_ones_eta():
    q = CommandQueue()
    q.submit("a", "edit", None, JOB)
    first = q.take()
    with q.running(first):
        q.note_eta(first, 30.0)
    q.submit("c", "edit", None, JOB)
    second = q.take()
    mine = q.submit("b", "edit", None, JOB)
    with q.running(second):
        assert q.wait_of(mine.command_id).running_eta_s is None  # the next job's estimate is its own
