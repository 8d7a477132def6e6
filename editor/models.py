"""The session's model choice and what the Model tab says about it.

One model per session: Edit, Generate and Select by text all use `ModelChoice.spec_for(session)` (the Model tab
changes it; the app's --model is the default). Whether a spec can load is found without network or weights
(`probe`: the file system, the Hugging Face cache, at most one quick connection attempt), so a Run with a model
that cannot load is refused before anything is queued; the engine worker loads it for real.
"""

from __future__ import annotations

import threading


class ModelChoice:
    """Per-session model specs and a status cache per spec ({spec, state, source, message})."""

    def __init__(self, default_spec: str | None = None) -> None:
        from engine.guidance import default_model_spec

        self.default_spec = default_spec or default_model_spec()
        self._lock = threading.RLock()
        self._state: dict[str, dict] = {}

    def spec_for(self, session) -> str:
        return session.model_spec or self.default_spec

    def choose(self, session, spec: str) -> None:
        """Make `spec` the session's model (a colour picker's rgba(...) becomes #rrggbb); ValueError when
        malformed."""
        from engine.guidance import parse_model_spec

        spec = normalise_colour_spec((spec or "").strip())
        parse_model_spec(spec)  # ModelSpecError (a ValueError) for a malformed value
        session.model_spec = spec
        self.probe(spec)

    def status(self, session) -> dict:
        return self.status_of(self.spec_for(session))

    def status_of(self, spec: str) -> dict:
        """{spec, state, source, message} of `spec`, probed now if unknown. state: available | not downloaded |
        loading | loaded | unavailable | error."""
        self.probe(spec)
        with self._lock:
            return dict(self._state[spec])

    def probe(self, spec: str) -> None:
        """Find out, without network or big weights, whether `spec` can load (once; `require` looks again).

        closed-form: always available. A local folder in the diffusers layout, or a hub id already in the
        Hugging Face cache: available (loads with the first edit). A hub id not in the cache: downloaded by the
        first edit when online; "unavailable" when HF_HUB_OFFLINE is set or the hub cannot be reached (one
        connection attempt, at most a second). Each message says what to do.
        """
        with self._lock:
            if spec in self._state:
                return
        try:
            state = _probe(spec)
        except ValueError as exc:
            state = ("error", "", str(exc))
        self.set_state(spec, *state)

    def require(self, spec: str) -> None:
        """Refuse, before anything is queued, a model that cannot load now (ValueError with the whole message:
        what is missing, the download command, the closed-form demo)."""
        with self._lock:
            known = self._state.get(spec, {}).get("state")
            if known not in ("loaded", "available"):
                self._state.pop(spec, None)  # the network or the cache may have changed: look again
        self.probe(spec)
        with self._lock:
            status = dict(self._state[spec])
        if status["state"] in ("unavailable", "error"):
            raise ValueError(status["message"] or f"the model {spec} cannot be loaded")

    def mark_loading(self, spec: str) -> None:
        """A job with `spec` is queued: "loading" until its first step (a closed-form prior has nothing to load,
        and a prompt's colour makes its own spec, which no step would mark loaded)."""
        if spec.strip().lower().startswith("closed-form"):
            return
        with self._lock:
            if self._state.get(spec, {}).get("state") == "loaded":
                return
        self.set_state(spec, "loading", "", "the engine is loading it for this job")

    def mark_loaded(self, spec: str, device: str = "") -> None:
        """A job ran with `spec`: it is loaded (on `device`)."""
        with self._lock:
            if self._state.get(spec, {}).get("state") == "loaded":
                return
        try:
            from engine.guidance import parse_model_spec

            parsed = parse_model_spec(spec)
            source = "built in (no weights)" if parsed.is_closed_form else parsed.location
        except ValueError:
            source = ""
        self.set_state(spec, "loaded", f"{source} · on {device}" if device else source)

    def set_state(self, spec: str, state: str, source: str = "", message: str = "") -> None:
        with self._lock:
            self._state[spec] = {"spec": spec, "state": state, "source": source, "message": message}


# How the app says to use a download, and what to try without weights (the engine's probe words the rest).
APP_NEXT_STEPS = ("then start the app with --model {folder} (or set SPLATEDIT_MODEL, or enter the folder in the "
                  "Model tab). To try the editor without weights now: Model tab → \"Use closed-form demo "
                  "(offline)\" (model closed-form:#d02020), which moves the selected part toward a colour.")


def _probe(spec: str) -> tuple[str, str, str]:
    """(state, source, message) of a model spec (engine.guidance.availability, in the app's words)."""
    from engine.guidance.availability import probe

    return tuple(probe(spec, next_steps=APP_NEXT_STEPS))


def normalise_colour_spec(spec: str) -> str:
    """closed-form:rgba(208, 32, 32, 1) (what a colour picker may send) -> closed-form:#d02020; other specs as
    they are (a named colour stays a name)."""
    from engine.colour import parse_colour, to_hex

    prefix = "closed-form:"
    if not spec.lower().startswith(prefix):
        return spec
    colour = spec[len(prefix):].strip()
    if colour.lower().startswith(("rgb(", "rgba(")):
        try:
            colour = to_hex(parse_colour(colour))
        except ValueError:
            pass  # parse_model_spec says what is wrong with it
    return prefix + colour
