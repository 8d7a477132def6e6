"""What the worker's tests share: a loader of weight-free priors (one that fails on demand), a small edit
config, loading a scene with its mask, draining an event queue."""

from __future__ import annotations

import queue

from engine.edit import EditConfig
from engine.guidance.closed_form import ClosedFormPrior
from engine.optimize import DensifyConfig


class FailingPrior(ClosedFormPrior):
    """The closed-form prior, except that its `fail_at`-th noise prediction raises."""

    def __init__(self, *args, fail_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.fail_at = fail_at

    def predict_noise(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the GPU caught fire")
        return super().predict_noise(*args, **kwargs)


def loader(spec, device=None):
    if spec.startswith("failing:"):
        return FailingPrior((1.0, 0.0, 0.0), fail_at=int(spec.split(":")[1]))
    return ClosedFormPrior((1.0, 0.0, 0.0))


def edit_config(steps=4, model="closed-form:red", **kw):
    return EditConfig(prompt="red", model=model, steps=steps, resolution=32, preview_every=2,
                      preview_resolution=16, densify=DensifyConfig(enabled=False), **kw)


def loaded(worker, scene, mask, session="s"):
    worker.load_scene(session, scene).result(30)
    worker.set_mask(session, mask).result(30)


def drain(q):
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out
