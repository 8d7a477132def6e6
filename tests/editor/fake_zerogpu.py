"""A test double of the `spaces` package that runs `spaces.GPU` functions the way ZeroGPU does.

What it keeps from ZeroGPU (spaces/zero/wrappers.py of the `spaces` package): the decorated function runs in
another process, started per call; its arguments go there pickled, and everything it yields or returns comes
back pickled through a queue, so a global it changes stays changed only over there. A decorated generator
streams each yield as it is made; when the app closes its generator, a stop event is set, and the worker, on
its next yield, closes the function's generator (ZeroGPU checks the event after each `next`, as here). An
exception in the worker comes back as "ZeroGPU worker error: <class name>" (the message is lost, as there).
A ZeroGPU worker process lives on for the next call, so work a function leaves running would keep the GPU: here
the worker reports the Python threads still alive when the function has ended (`Call.threads_left`).
`duration` is evaluated in the app's process with the call's arguments, as ZeroGPU's scheduler does.

Processes come from the "forkserver" context with editor.runners.gpu_calls preloaded: a fork of a clean, single-threaded
server (forking the test process itself, which runs torch and Gradio threads, can deadlock), started once.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import queue
import threading
import time
import types
from dataclasses import dataclass

_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["torch", "editor.runners.gpu_calls", "engine.edit", "engine.generate", "engine.guidance"])
    return _CONTEXT


@dataclass
class Call:
    """One GPU call: which function, the duration it asked for, and its worker process."""

    name: str
    duration: object
    process: object = None
    yields: int = 0
    closed_early: bool = False
    threads_left: list | None = None  # names of threads the function left running (None: not reported yet)
    results: object = None  # the worker's queue (read the rest of it after the app stopped reading)

    def stopped(self, timeout: float = 10.0) -> bool:
        """Whether the worker process has exited (waiting up to `timeout`)."""
        self.process.join(timeout)
        return self.process.exitcode is not None

    def finished_cleanly(self, timeout: float = 10.0) -> bool:
        """The worker exited and reported that the function left no thread running (its work really stopped)."""
        deadline = time.monotonic() + timeout
        while self.threads_left is None and time.monotonic() < deadline:  # what the app did not read
            try:
                kind, value = pickle.loads(self.results.get(timeout=0.1))
            except queue.Empty:
                if self.process.exitcode is not None:
                    break
                continue
            if kind == "end":
                self.threads_left = value
        return self.stopped(max(0.0, deadline - time.monotonic())) and self.threads_left == []


class FakeZeroGPU(types.ModuleType):
    """Install with `monkeypatch.setitem(sys.modules, "spaces", FakeZeroGPU())` before the app is built."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.decorated: list[tuple[str, object]] = []  # (function name, duration argument)
        self.calls: list[Call] = []

    def GPU(self, task=None, *, duration=None, size=None):  # noqa: N802 - the real package's name
        def decorate(fn):
            self.decorated.append((fn.__name__, duration))
            if inspect.isgeneratorfunction(fn):
                return self._generator_handler(fn, duration)
            return self._regular_handler(fn, duration)

        return decorate(task) if callable(task) else decorate

    # ------------------------------------------------------------------ the app's side
    def _start(self, fn, duration, args, kwargs, generator: bool):
        requested = duration(*args, **kwargs) if callable(duration) else duration
        payload = pickle.dumps((fn, args, kwargs))  # a PicklingError here, in the app, as with ZeroGPU
        ctx = _context()
        results, stop = ctx.Queue(), ctx.Event()
        process = ctx.Process(target=_worker, args=(payload, results, stop, generator), daemon=True)
        call = Call(fn.__name__, requested, process, results=results)
        self.calls.append(call)
        process.start()
        return call, results, stop

    def _generator_handler(self, fn, duration):
        def gradio_handler(*args, **kwargs):
            call, results, stop = self._start(fn, duration, args, kwargs, True)
            try:
                while True:
                    kind, value = _receive(results, call.process)
                    if kind == "yield":
                        call.yields += 1
                        try:
                            yield value
                        except GeneratorExit:
                            call.closed_early = True
                            stop.set()
                            raise
                    elif kind == "error":
                        raise RuntimeError(f"ZeroGPU worker error: {value}")
                    elif kind == "end":
                        call.threads_left = value
                        return
            finally:
                stop.set()

        gradio_handler.__name__ = fn.__name__
        return gradio_handler

    def _regular_handler(self, fn, duration):
        def gradio_handler(*args, **kwargs):
            call, results, _ = self._start(fn, duration, args, kwargs, False)
            kind, value = _receive(results, call.process)
            if kind == "error":
                raise RuntimeError(f"ZeroGPU worker error: {value}")
            return value

        gradio_handler.__name__ = fn.__name__
        return gradio_handler


def _receive(results, process, timeout: float = 600.0):
    """The next (kind, value) from the worker; "GPU task aborted" when it died without saying so."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return pickle.loads(results.get(timeout=0.05))
        except queue.Empty:
            if not process.is_alive():
                try:
                    return pickle.loads(results.get(timeout=0.5))
                except queue.Empty:
                    raise RuntimeError("ZeroGPU worker error: GPU task aborted") from None
            if time.monotonic() > deadline:
                raise TimeoutError("the GPU worker sent nothing in time") from None


# ------------------------------------------------------------------ the worker's side (another process)
def _worker(payload: bytes, results, stop, generator: bool) -> None:
    def send(kind, value=None):
        try:
            results.put(pickle.dumps((kind, value)))
        except Exception as exc:  # noqa: BLE001 - an unpicklable result, as ZeroGPU reports it
            results.put(pickle.dumps(("error", type(exc).__name__)))

    try:
        fn, args, kwargs = pickle.loads(payload)
        if not generator:
            send("return", fn(*args, **kwargs))
            return
        gen = fn(*args, **kwargs)
        while True:
            try:
                value = next(gen)
            except StopIteration:
                break
            if stop.is_set():
                gen.close()
                break
            send("yield", value)
        send("end", _threads_left())
    except Exception as exc:  # noqa: BLE001
        send("error", type(exc).__name__)
    finally:
        results.close()
        results.join_thread()


def _threads_left(grace_s: float = 0.5) -> list[str]:
    """Names of the threads still alive after `grace_s`, besides this one, the queue's feeder and the idle workers
    of thread pools (the CPU renderer keeps one)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = [t.name for t in threading.enumerate()
                 if t is not threading.current_thread() and t.is_alive() and "QueueFeeder" not in t.name
                 and getattr(getattr(t, "_target", None), "__module__", "") != "concurrent.futures.thread"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


# ------------------------------------------------------------------ functions for the double's own tests
TOUCHED: list = []


def touch_a_global(value):
    """A GPU generator that changes a global and reports its pid and what it sees."""
    TOUCHED.append(value)
    yield os.getpid()
    yield list(TOUCHED)


def fail_inside():
    yield 1
    raise ValueError("a detailed message ZeroGPU does not pass on")
