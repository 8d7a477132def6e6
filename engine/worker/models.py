"""Guidance models, loaded once per spec on a loader thread and kept.

A model can take minutes to load (a download, a first read from disk), so whoever needs one must not block the
thread that serves everyone else. `get_or_park(spec)` returns a loaded model or starts its load on a loader
thread and raises `Parked`: the caller sets its job aside and takes it up again when `on_loaded(spec)` fires.
Where blocking is fine (a GPU process that runs one job at a time, a script), `get(spec)` waits instead.

A failed load is remembered and raised once, to the next caller (the job that waited for it); the call after
that tries again (the network or the disk may have changed). The cache knows nothing of queues or sessions.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch

Loader = Callable[..., Any]  # loader(spec, device=...) -> model; engine.guidance.load_guidance by default


class Parked(Exception):
    """The model for `spec` is loading: set the job aside until `on_loaded(spec)`."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.spec = spec


class ModelCache:
    """Models by spec; see the module docstring."""

    def __init__(self, *, device: torch.device | str, loader: Loader | None = None,
                 on_loaded: Callable[[str], None] | None = None) -> None:
        """device: where models run. loader(spec, device=...): engine.guidance.load_guidance by default (tests
        pass their own). on_loaded(spec): called on the loader thread when a load ends, loaded or failed
        (after the outcome is recorded, so `settled(spec)` is already true)."""
        self.device = torch.device(device)
        self._loader = loader
        self._on_loaded = on_loaded
        self._models: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}  # spec -> why its last load failed (raised once)
        self._loading: set[str] = set()  # specs whose loader thread runs
        self._cv = threading.Condition()

    @staticmethod
    def resolve(spec: str | None) -> str:
        """The spec itself, or the default model's spec for None/""."""
        if spec:
            return spec
        from ..guidance.base import default_model_spec

        return default_model_spec()

    def __contains__(self, spec: str) -> bool:
        """Whether `spec`'s model is loaded."""
        with self._cv:
            return spec in self._models

    def settled(self, spec: str) -> bool:
        """Whether `spec`'s load has ended (loaded, or failed with an error not yet reported)."""
        with self._cv:
            return spec in self._models or spec in self._errors

    def get_or_park(self, spec: str | None) -> Any:
        """The loaded model for `spec`; raises Parked (after starting its load) when it is not loaded yet, or
        the load's error, once, when the last load failed."""
        spec = self.resolve(spec)
        with self._cv:
            if self._settled_or_start(spec):
                return self._take(spec)
        raise Parked(spec)

    def get(self, spec: str | None, timeout: float | None = None) -> Any:
        """The model for `spec`, waiting for its load (TimeoutError after `timeout` seconds); the load's error
        when it fails."""
        spec = self.resolve(spec)
        with self._cv:
            if not self._cv.wait_for(lambda: self._settled_or_start(spec), timeout=timeout):
                raise TimeoutError(f"the model {spec} did not load within {timeout} s")
            return self._take(spec)

    def _settled_or_start(self, spec: str) -> bool:
        """(holding _cv) True once `spec`'s load has ended; starts the load when none is running."""
        if spec in self._models or spec in self._errors:
            return True
        if spec not in self._loading:
            self._loading.add(spec)
            threading.Thread(target=self._load, args=(spec,), name=f"load {spec}"[:60], daemon=True).start()
        return False

    def _take(self, spec: str) -> Any:
        """(holding _cv, `spec` settled) the model, or its load's error, raised once."""
        if spec in self._errors:
            raise self._errors.pop(spec)
        return self._models[spec]

    def _load(self, spec: str) -> None:
        loader = self._loader
        if loader is None:
            from ..guidance.loading import load_guidance as loader
        try:
            model, error = loader(spec, device=self.device), None
        except Exception as exc:  # reported to whoever asks for the spec next
            model, error = None, exc
        with self._cv:
            if error is None:
                self._models[spec] = model
            else:
                self._errors[spec] = error
            self._loading.discard(spec)
            self._cv.notify_all()
        if self._on_loaded is not None:
            self._on_loaded(spec)
