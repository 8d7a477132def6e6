"""UI benchmark: prints JSON figures of the real app started as `python app.py` in a subprocess.

- startup_s: from launching `python app.py` to the page answering HTTP 200 (and to the first scene render);
- preview updates per second that a client receives while an edit runs on CPU with the closed-form prior
  (default scene, previews every step), next to the engine's own steps per second;
- latency of a click (the mask tool applied at a pixel of the streamed view, answered with the new count)
  when idle and, from a second session, while that edit runs; latency of Pause/Resume during the edit.
- `--selection`: click-to-feedback in headless Chromium, on the robot and on a 150k-Gaussian scene (the robot
  resampled): for clicks on the streamed view and in the Viser view, the time from the click to the server's
  answer (the click handler returned), to the new count on the page and to the tint (the streamed image
  replaced; the Viser splat colours received by a second websocket client of the session's viewer).

    python bench/ui.py [--steps 40 --resolution 64 --clicks 8]
    python bench/ui.py --selection [--clicks 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="edit steps (default 40)")
    parser.add_argument("--resolution", type=int, default=64, help="edit render resolution (default 64)")
    parser.add_argument("--clicks", type=int, default=8, help="clicks timed when idle and during the edit")
    parser.add_argument("--selection", action="store_true",
                        help="time click-to-feedback in headless Chromium on the robot and a 150k scene instead")
    parser.add_argument("--sizes", default="robot,150000", help="--selection scenes: robot and/or Gaussian counts")
    args = parser.parse_args(argv)
    if args.selection:
        from ui_selection import run_selection_bench  # bench/ui_selection.py

        print(json.dumps(run_selection_bench(args.sizes.split(","), clicks=args.clicks), indent=1))
        return 0

    from gradio_client import Client

    port = free_port()
    workspace = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    launched = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--viser-port", str(free_port()),
         "--workspace", str(workspace)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        page_at = wait_for_page(url, proc)
        client = Client(url, verbose=False)
        first_render_at = None
        client.predict(True, api_name="/set_tint")  # renders the default scene for this session
        first_render_at = time.monotonic()

        client.predict("brush", "add", 40, "vote", 8, api_name="/set_tool")
        other = Client(url, verbose=False)  # a second user, clicking while the first one's edit runs
        other.predict("brush", "add", 40, "vote", 8, api_name="/set_tool")

        def click(who) -> float:
            t = time.perf_counter()
            who.predict(256, 170, api_name="/click_view")
            return time.perf_counter() - t

        idle = [click(client) for _ in range(args.clicks)]
        client.predict("#d02020", api_name="/use_demo")

        updates: list[tuple[float, int]] = []  # (time, previews count) as the client receives them
        job = client.submit("make it red", "", "sds", args.steps, 0, args.resolution, 0, 1, False, False,
                            api_name="/run_edit")
        during: list[float] = []
        pause_resume: list[float] = []
        clicker_done = threading.Event()

        def clicker() -> None:
            # Wait until the edit runs, then click (other session) and pause/resume (own session) while it runs.
            while client.predict(api_name="/edit_status")["state"] != "running":
                time.sleep(0.05)
            for _ in range(args.clicks):
                if client.predict(api_name="/edit_status")["state"] != "running":
                    break
                during.append(click(other))
                t = time.perf_counter()
                client.predict(api_name="/pause_edit")
                client.predict(api_name="/pause_edit")  # toggles back to running
                pause_resume.append((time.perf_counter() - t) / 2)
                time.sleep(0.2)
            clicker_done.set()

        threading.Thread(target=clicker, daemon=True).start()
        import re

        for out in job:
            previews = int(re.search(r'data-previews="(\d+)"', out[0]).group(1))
            state = re.search(r'data-state="(\w+)"', out[0]).group(1)
            if state == "running":
                updates.append((time.monotonic(), previews))
        job.result()
        clicker_done.wait(60)
        status = client.predict(api_name="/edit_status")
        span = updates[-1][0] - updates[0][0] if len(updates) > 1 else float("nan")
        distinct = len({p for _, p in updates})
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "scene": "bundled default scene",
            "startup_s": {"page_answers": round(page_at - launched, 2),
                          "first_render": round(first_render_at - launched, 2)},
            "edit": {"steps": args.steps, "resolution": args.resolution, "state": status["state"],
                     "client_updates": len(updates),
                     "preview_updates_per_s": round((distinct - 1) / span, 2) if span == span and span > 0 else None},
            "click_latency_ms": {
                "idle_median": round(1000 * statistics.median(idle), 1),
                "during_edit_median": round(1000 * statistics.median(during), 1) if during else None,
                "during_edit_max": round(1000 * max(during), 1) if during else None,
                "clicks_during_edit": len(during),
                "note": "brush click applied in a second session while the first session's edit runs",
            },
            "pause_or_resume_latency_ms": {
                "median": round(1000 * statistics.median(pause_resume), 1) if pause_resume else None,
                "max": round(1000 * max(pause_resume), 1) if pause_resume else None,
            },
        }
        print(json.dumps(result, indent=1))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
