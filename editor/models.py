"""The session's model choice and what the Model tab says about it.

One model per session: Edit, Generate and Select by text all use `ModelChoice.spec_for(session)` (the Model tab
changes it; the app's --model is the default). Whether a spec can load is found without network or weights
(`probe`: the file system, the Hugging Face cache, at most one quick connection attempt), so a Run with a model
that cannot load is refused before anything is queued; the engine worker loads it for real.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


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


SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def _probe(spec: str) -> tuple[str, str, str]:
    """(state, source, message) of a model spec, from the file system, the hub cache and at most one quick
    connection attempt (see ModelChoice.probe)."""
    from engine.guidance import parse_model_spec

    parsed = parse_model_spec(spec)  # ValueError for a malformed spec
    if parsed.is_closed_form:
        return "available", "built in (no weights)", ""
    if parsed.kind == "local":
        missing = [s for s in SUBFOLDERS if not (Path(parsed.location) / s).is_dir()]
        if missing:
            return ("unavailable", parsed.location,
                    f"{parsed.location} is not a diffusers model folder: missing {', '.join(m + '/' for m in missing)}")
        return "available", parsed.location, "loads with the first edit"
    cached = _hub_cache_path(parsed.location)
    if cached is not None:
        return "available", f"Hugging Face cache: {cached}", "loads with the first edit"
    folder = f"models/{parsed.location.split('/')[-1]}"
    get_it = (f"Download it once while online:\n  hf download {parsed.location} --local-dir {folder}\nthen start the "
              f"app with --model {folder} (or set SPLATEDIT_MODEL, or enter the folder in the Model tab). "
              "To try the editor without weights now: Model tab → \"Use closed-form demo (offline)\" "
              "(model closed-form:#d02020), which moves the selected part toward a colour.")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return ("unavailable", "", f"The model {parsed.location} is not on this machine (not in the Hugging Face "
                f"cache) and HF_HUB_OFFLINE is set, so it cannot be downloaded. {get_it}")
    if not _hub_reachable():
        return ("unavailable", "", f"The model {parsed.location} is not on this machine (not in the Hugging Face "
                f"cache) and the hub ({_hub_address()[0]}) cannot be reached from here, so it cannot be downloaded "
                f"now. {get_it}")
    return ("not downloaded", f"Hugging Face hub: {parsed.location}",
            f"Not in the local cache: the first edit downloads it (several GB; needs internet). {get_it}")


_REACHABLE: dict = {}  # (host, port) -> (checked at, reachable): one connection attempt per half minute
REACH_TIMEOUT_S = 1.0


def _hub_address() -> tuple[str, int]:
    """Where a download would connect first: the HTTPS proxy if one is set, else the hub (HF_ENDPOINT)."""
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def _hub_reachable() -> bool:
    """Whether a TCP connection to the hub (or the proxy) opens within REACH_TIMEOUT_S, name lookup included
    (done on a helper thread: an offline resolver can take many seconds to give up)."""
    import socket

    address = _hub_address()
    checked = _REACHABLE.get(address)
    if checked is not None and time.monotonic() - checked[0] < 30.0:
        return checked[1]
    outcome = [False]

    def attempt() -> None:
        try:
            socket.create_connection(address, timeout=REACH_TIMEOUT_S).close()
            outcome[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=attempt, name="hub-reachable", daemon=True)
    thread.start()
    thread.join(REACH_TIMEOUT_S + 0.2)
    _REACHABLE[address] = (time.monotonic(), outcome[0])
    return outcome[0]


def _hub_cache_path(repo_id: str) -> str | None:
    """The local snapshot folder of a hub model if it is fully in the Hugging Face cache, else None."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True, allow_patterns=["model_index.json"])
    except Exception:  # noqa: BLE001 - not cached, or no hub library: the loader will say why
        return None


def normalise_colour_spec(spec: str) -> str:
    """closed-form:rgba(208, 32, 32, 1) (what a colour picker may send) -> closed-form:#d02020."""
    prefix = "closed-form:"
    if not spec.lower().startswith(prefix):
        return spec
    colour = spec[len(prefix):].strip()
    if colour.lower().startswith(("rgb(", "rgba(")):
        try:
            values = [float(v) for v in colour[colour.index("(") + 1: colour.rindex(")")].split(",")[:3]]
            colour = "#" + "".join(f"{max(0, min(255, round(v))):02x}" for v in values)
        except ValueError:
            pass
    return prefix + colour
