"""Can a `--model` spec load now? Found out without downloading anything or reading big weights.

`probe(spec)` answers `Availability(state, source, message)`:

- closed-form and reference priors: "available" (no weights);
- a local folder: "available" when it has the diffusers layout (`loading.missing_subfolders`, the loader's own
  check), else "unavailable" naming the missing subfolders;
- a hub id in the Hugging Face cache: "available" (the cache folder is the source);
- a hub id not in the cache: "unavailable" when HF_HUB_OFFLINE is set or the hub cannot be reached (one TCP
  connection attempt of at most REACH_TIMEOUT_S, remembered for REACH_MEMORY_S), else "not downloaded" (the
  first edit downloads it).

A malformed spec raises `ModelSpecError` (a ValueError), as `parse_model_spec` does. Each unavailable answer
carries the download command; `next_steps` lets the caller (the CLI, the app) say how to use the download and
what to try without weights, in its own words. The state names are what the app's Model panel shows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import NamedTuple

from .loading import missing_subfolders, parse_model_spec

REACH_TIMEOUT_S = 1.0  # one connection attempt, name lookup included, waits at most this long
REACH_MEMORY_S = 30.0  # a reachability answer is reused for this long (the probe runs on every status refresh)
CLI_NEXT_STEPS = ("then pass --model {folder} (or set SPLATEDIT_MODEL). Without weights, --model closed-form:#d02020 "
                  "runs the offline closed-form prior, which moves the selected part toward a colour.")

_REACHABLE: dict[tuple[str, int], tuple[float, bool]] = {}  # address -> (monotonic time checked, reachable)


class Availability(NamedTuple):
    state: str  # "available" | "not downloaded" | "unavailable"
    source: str  # where the weights come from ("" when nowhere)
    message: str  # what to do, for a person ("" when nothing needs doing)


def probe(spec: str, *, next_steps: str = CLI_NEXT_STEPS) -> Availability:
    """Whether `spec` can load now (see the module docstring). `next_steps` follows the download command in
    an unavailable model's message; `{folder}` in it becomes the folder the command downloads to."""
    parsed = parse_model_spec(spec)
    if parsed.is_closed_form:
        return Availability("available", "built in (no weights)", "")
    if parsed.kind == "local":
        missing = missing_subfolders(parsed.location)
        if missing:
            return Availability("unavailable", parsed.location, f"{parsed.location} is not a diffusers model "
                                f"folder: missing {', '.join(m + '/' for m in missing)}")
        return Availability("available", parsed.location, "loads with the first edit")
    repo_id = parsed.location
    cached = hub_cache_path(repo_id)
    if cached is not None:
        return Availability("available", f"Hugging Face cache: {cached}", "loads with the first edit")
    folder = f"models/{repo_id.split('/')[-1]}"
    get_it = (f"Download it once while online:\n  hf download {repo_id} --local-dir {folder}\n"
              + next_steps.format(folder=folder))
    not_here = f"The model {repo_id} is not on this machine (not in the Hugging Face cache)"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return Availability("unavailable", "", f"{not_here} and HF_HUB_OFFLINE is set, so it cannot be "
                            f"downloaded. {get_it}")
    if not hub_reachable():
        return Availability("unavailable", "", f"{not_here} and the hub ({hub_address()[0]}) cannot be reached "
                            f"from here, so it cannot be downloaded now. {get_it}")
    return Availability("not downloaded", f"Hugging Face hub: {repo_id}",
                        f"Not in the local cache: the first edit downloads it (several GB; needs internet). {get_it}")


def hub_address() -> tuple[str, int]:
    """(host, port) a download would connect to first: the HTTPS proxy if one is set, else the hub (HF_ENDPOINT)."""
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def hub_reachable() -> bool:
    """Whether a TCP connection to `hub_address()` opens within REACH_TIMEOUT_S. The attempt runs on a helper
    thread: an offline resolver can take many seconds to give up on the name, and the caller waits no longer."""
    address = hub_address()
    checked = _REACHABLE.get(address)
    if checked is not None and time.monotonic() - checked[0] < REACH_MEMORY_S:
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


def hub_cache_path(repo_id: str) -> str | None:
    """The snapshot folder of `repo_id` in the Hugging Face cache when it is there, else None (also when
    huggingface_hub is missing: then the loader says why)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True, allow_patterns=["model_index.json"])
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError and kin), or no hub library
        return None
