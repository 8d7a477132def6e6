"""CommandQueue: FIFO order, what runs between a job's steps, pause flags, and parking without a lost wake-up."""

from engine.worker.queue import JOB, QUICK, TASK, CommandQueue


def _names(queue, n):
    out = []
    for _ in range(n):
        cmd = queue.take()
        out.append((cmd.session, cmd.action))
    return out


def test_between_steps_runs_other_sessions_quick_commands_and_tasks_but_no_job_and_nothing_of_its_own():
    q = CommandQueue()
    q.submit("a", "edit", None, JOB)
    running = q.take()
    q.submit("a", "mask", None)  # its own session: waits for the job
    q.submit("b", "edit", None, JOB)  # another job: waits
    q.submit("b", "mask", None)
    q.submit("c", "sam", None, TASK)
    ran = []
    assert q.between_steps(running, lambda cmd: ran.append((cmd.session, cmd.action))) is False
    assert ran == [("b", "mask"), ("c", "sam")]
    q.cancel("a")
    assert q.between_steps(running, ran.append) is True
    assert _names(q, 2) == [("a", "mask"), ("b", "edit")]  # the rest, in the order sent


def test_a_paused_sessions_jobs_start_paused_and_flags_say_so():
    q = CommandQueue()
    q.pause("a")
    job = q.submit("a", "edit", None, JOB)
    task = q.submit("a", "sam", None, TASK)
    assert q.flags("a") == (True, True) and q.flags("b") == (False, False)
    first, second = q.take(), q.take()
    assert first.future is job and not first.control.unpaused.is_set()
    assert second.future is task and second.control.unpaused.is_set()  # tasks do not pause
    q.resume("a")
    assert first.control.unpaused.is_set() and q.flags("a") == (True, False)
    q.release(first)
    q.release(second)
    assert q.flags("a") == (False, False)


def test_parking_holds_the_sessions_later_commands_and_a_model_settled_meanwhile_runs_at_once():
    q = CommandQueue()
    q.submit("a", "edit", None, JOB)
    q.submit("a", "mask", None, QUICK)
    q.submit("b", "mask", None, QUICK)
    job = q.take()
    assert q.park(job, "m", settled=lambda spec: False) is True
    assert _names(q, 1) == [("b", "mask")]  # a's mask waits behind its parked job
    q.unpark("m")
    assert q.take() is job and _names(q, 1) == [("a", "mask")]
    assert q.park(job, "m", settled=lambda spec: spec == "m") is False  # loaded before it was set aside
    assert q.take() is job


def test_cancel_brings_a_parked_job_back_to_the_front_and_close_ends_take():
    q = CommandQueue()
    q.submit("a", "edit", None, JOB)
    job = q.take()
    q.park(job, "m", settled=lambda spec: False)
    q.submit("b", "mask", None)
    q.cancel("a")
    assert q.take() is job and job.control.cancel.is_set()
    assert q.close() == {"b"}
    assert _names(q, 1) == [("b", "mask")] and q.take() is None
