"""What a queued job's progress line says while it waits behind other jobs (issue 26.6)."""

from editor.runners.local import queued_message
from engine.worker import QueueWait


def test_it_names_the_jobs_ahead_whose_they_are_and_the_running_ones_time_left():
    one = QueueWait(ahead=(("other", "edit"),), running_eta_s=41.6)
    assert queued_message(one, "me") == "waiting for the engine: 1 job ahead (another session's edit, ~42 s left)"
    two = QueueWait(ahead=(("other", "generate"), ("third", "edit")), running_eta_s=125)
    assert queued_message(two, "me") == ("waiting for the engine: 2 jobs ahead (another session's generation, "
                                         "~2:05 left; then 1 more)")
    starting = QueueWait(ahead=(("me", "edit"),), running_eta_s=None)  # no progress record yet
    assert queued_message(starting, "me") == "waiting for the engine: 1 job ahead (this session's edit)"
    assert queued_message(QueueWait(ahead=(), running_eta_s=None), "me") == "waiting for the engine"
