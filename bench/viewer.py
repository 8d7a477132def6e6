"""The Viser view and a worker session's memory at real-capture size; prints JSON.

Scene: the playbot capture (/work/shared/data/playbot-lod2/meta.json, 125k Gaussians) tiled --tiles times side
by side (10: ~1.25M), raised to SH degree 3 (zero-padded: the bytes a real SH-3 capture holds). Its head +
hands (y < -0.62) in the first tile are "the part".

- viewer: for the level of detail (`lod`, the default budget) and `full` (every splat, no coarse level: what
  the view sent before viewer_lod), a SessionViewer shows the scene with the part selected; a websocket client
  speaking Viser's protocol counts the bytes it receives and the time until the final splat buffer arrived,
  then the bytes and time of one mask change. With --chromium, a headless Chromium (software WebGL) opens the
  view and reports the seconds until the canvas shows the scene (screenshots compared with an empty scene's)
  and the slowest answer of the page's main thread meanwhile (a `page.evaluate`, i.e. how long a click would
  wait).
- memory (each in a fresh process): RSS with the scene loaded, after a worker session opened it (idle), after
  six edits of the part (five colour edits and one that splits the part's Gaussians: a count change), after
  undo/redo, and after the session closed; `--history old` runs the same with the history of whole scenes
  (engine/worker/history.py as of `git show <rev>:...`, --old-rev).

    python bench/viewer.py [--tiles 10] [--chromium] [--parts viewer,memory] [--old-rev main]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.editor.viser_client import ViserTestClient, decode_frame, splat_buffer  # noqa: E402

CAPTURE = Path("/work/shared/data/playbot-lod2/meta.json")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def trimmed_rss_mb() -> float:
    """RSS after glibc hands its free heap pages back (malloc_trim): what is really held, without what the
    allocator keeps for reuse."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return rss_mb()


def tiled_capture(tiles: int):
    """(scene [N], part [N] bool): the capture tiled `tiles` times along x, SH degree 3."""
    import torch

    from engine.io import load
    from engine.scene import GaussianScene

    base = load(CAPTURE).with_sh_degree(3)
    lo, hi = base.bounding_box(quantile=0.01)
    width = float(hi[0] - lo[0]) * 1.1
    copies = [base.replace(means=base.means + torch.tensor([width * i, 0.0, 0.0])) for i in range(tiles)]
    scene = GaussianScene.concat(copies) if tiles > 1 else base
    part = torch.zeros(len(scene), dtype=torch.bool)
    part[: len(base)] = base.means[:, 1] < -0.62
    return scene, part


# ---------------------------------------------------------------------------------------------- viewer
class ByteCounter(ViserTestClient):
    """A Viser websocket client that counts what it receives and notes when a splat buffer of n rows came."""

    def __init__(self, port: int) -> None:
        self.bytes = 0
        self.splat_rows: list[tuple[float, int]] = []  # (time, rows) of each splat buffer
        super().__init__(port)
        self.send_camera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -3.0))  # Viser counts a client once it sent a camera

    def _run(self) -> None:
        import websockets
        import viser

        async def main() -> None:
            async with websockets.connect(self.url, max_size=None,
                                          subprotocols=[f"viser-v{viser.__version__}"]) as ws:
                self._ws = ws
                self._ready.set()
                try:
                    async for raw in ws:
                        self.bytes += len(raw)
                        for m in decode_frame(raw):
                            updates = m.get("updates") or {}
                            if m.get("type") == "GaussianSplatsMessage" or "buffer" in updates:
                                self.splat_rows.append((time.monotonic(), splat_buffer(m).shape[0]))
                except Exception:  # noqa: BLE001 - closed
                    pass

        self._loop.run_until_complete(main())

    def wait_rows(self, rows: int, after: int = 0, timeout: float = 300.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, n in self.splat_rows[after:]:
                if n == rows:
                    return t
            time.sleep(0.01)
        raise TimeoutError(f"no splat buffer of {rows} rows")


def viewer_case(scene, part, mode: str, chromium: bool, baseline) -> dict:
    import torch

    from editor import viewer as viewer_module
    from editor.orbit import OrbitView
    from editor.viewer_lod import DEFAULT_SPLAT_BUDGET

    viewer_module.COARSE_SPLATS = 10**12 if mode == "full" else COARSE  # full: what the view did before viewer_lod
    viewer = viewer_module.SessionViewer(port=0, splat_budget=None if mode == "full" else DEFAULT_SPLAT_BUDGET)
    lo, hi = scene.bounding_box(quantile=0.01)
    viewer.frame(OrbitView.framing(lo, hi, up=(0.0, -1.0, 0.0)))
    out: dict = {"mode": mode}
    try:
        client = ByteCounter(viewer.port)
        time.sleep(0.5)
        start_bytes, t0 = client.bytes, time.monotonic()
        viewer.show(scene, part.float())
        final = viewer_module.DetailLevels().rows(scene, None if mode == "full" else DEFAULT_SPLAT_BUDGET,
                                                  part.float())
        t_final = client.wait_rows(len(final))
        first_t, first_rows = client.splat_rows[0]
        time.sleep(0.5)
        out.update(first_splats=first_rows, first_buffer_s=round(first_t - t0, 2), splats=len(final),
                   final_buffer_s=round(t_final - t0, 2), bytes_to_final=client.bytes - start_bytes)
        mask = part.float().clone()  # one selection change: half of the part is deselected
        rows = torch.nonzero(part).flatten()
        mask[rows[scene.means[rows, 0] < scene.means[rows, 0].median()]] = 0.0
        seen, b0, t1 = len(client.splat_rows), client.bytes, time.monotonic()
        viewer.show(scene, mask)
        rows = viewer_module.DetailLevels().rows(scene, None if mode == "full" else DEFAULT_SPLAT_BUDGET, mask)
        t2 = client.wait_rows(len(rows), after=seen)
        time.sleep(0.3)
        out.update(mask_change_s=round(t2 - t1, 2), mask_change_bytes=client.bytes - b0)
        client.close()
    finally:
        viewer.close()
    if chromium:  # as in the app: the scene is shown, then the page's view connects
        viewer = viewer_module.SessionViewer(port=0, splat_budget=None if mode == "full" else DEFAULT_SPLAT_BUDGET)
        try:
            viewer.frame(OrbitView.framing(lo, hi, up=(0.0, -1.0, 0.0)))
            viewer.show(scene, part.float())
            while viewer.stats["splat_updates"] == 0:
                time.sleep(0.1)
            out["chromium"] = first_frame(viewer.port, baseline, timeout=240.0)
            out["chromium"]["splats_when_done"] = viewer.stats["splats_shown"]
        finally:
            viewer.close()
    return out


_TILES = [1]  # --tiles, for the viewer case
COARSE = __import__("editor.viewer_lod", fromlist=["COARSE_SPLATS"]).COARSE_SPLATS


def screenshot_diff(a, b) -> float:
    """Share of pixels of the central half of two screenshots (PNG bytes) that differ clearly."""
    import io

    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB")).astype(np.int16)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).astype(np.int16)
    h, w = x.shape[:2]
    crop = (slice(h // 4, 3 * h // 4), slice(w // 6, 2 * w // 3))  # away from the floating GUI panel
    return float((np.abs(x[crop] - y[crop]).max(axis=-1) > 15).mean())


def _browser():
    from playwright import sync_api

    p = sync_api.sync_playwright().start()
    return p, p.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def empty_screenshot(scene) -> bytes:
    """The view of an empty scene from the same camera, once the page has settled."""
    from editor.orbit import OrbitView
    from editor.viewer import SessionViewer

    viewer = SessionViewer(port=0)
    lo, hi = scene.bounding_box(quantile=0.01)
    viewer.frame(OrbitView.framing(lo, hi, up=(0.0, -1.0, 0.0)))
    p, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(f"http://127.0.0.1:{viewer.port}/")
        time.sleep(8.0)
        return page.screenshot()
    finally:
        browser.close()
        p.stop()
        viewer.close()


def first_frame(port: int, baseline: bytes, timeout: float) -> dict:
    """Seconds from opening the view until the canvas shows the scene; the slowest main-thread answer."""
    p, browser = _browser()
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        t0 = time.monotonic()
        page.goto(f"http://127.0.0.1:{port}/", timeout=timeout * 1000)
        slowest, shown = 0.0, None
        while time.monotonic() - t0 < timeout:
            t = time.monotonic()
            page.evaluate("() => 1")
            slowest = max(slowest, time.monotonic() - t)
            shot = page.screenshot(timeout=timeout * 1000)
            if screenshot_diff(shot, baseline) > 0.005:  # the scene fades in: its first visible frame
                shown = time.monotonic() - t0
                break
            time.sleep(0.25)
        # a few answers more while the view keeps drawing (refinement, sorting)
        for _ in range(10):
            t = time.monotonic()
            page.evaluate("() => 1")
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.3)
        return {"first_frame_s": None if shown is None else round(shown, 1), "timeout_s": timeout,
                "slowest_main_thread_answer_s": round(slowest, 2)}
    finally:
        browser.close()
        p.stop()


# ---------------------------------------------------------------------------------------------- memory
def install_old_history(rev: str) -> None:
    """engine.worker.history as of `rev` (the history of whole scenes), before engine.worker is imported."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{rev}:engine/worker/history.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    import engine  # noqa: F401 - the parent packages first

    spec = importlib.util.spec_from_loader("engine.worker.history", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "engine.worker"
    sys.modules["engine.worker.history"] = module
    exec(compile(source, f"{rev}:engine/worker/history.py", "exec"), module.__dict__)


def memory_case(tiles: int, history: str, rev: str) -> dict:
    import torch

    if history == "old":
        install_old_history(rev)
    from engine.worker import EngineWorker

    out: dict = {"history": history, "rss_start_mb": rss_mb()}
    scene, part = tiled_capture(tiles)
    out.update(gaussians=len(scene), scene_mb=round(sum(t.numel() * 4 for _, t in scene.items()) / 2**20, 1),
               part=int(part.sum()), rss_scene_loaded_mb=rss_mb())
    worker = EngineWorker(workspace=None, device="cpu")
    try:
        worker.load_scene("s", scene).result(600)
        worker.set_mask("s", part).result(600)
        gc.collect()
        out["rss_idle_mb"] = rss_mb()
        out["trimmed_rss_idle_mb"] = trimmed_rss_mb()
        current = scene
        g = torch.Generator().manual_seed(0)
        t = time.monotonic()
        for i in range(5):  # five colour edits of the part
            sh0 = current.sh0.clone()
            sh0[part] += 0.05 * torch.randn(int(part.sum()), 1, 3, generator=g)
            current = current.replace(sh0=sh0)
            worker.commit_result("s", current, part, label=f"edit {i}").result(600)
            del sh0
        rows = torch.nonzero(part).flatten()  # a count change: the part's Gaussians split in two
        sources = torch.cat([torch.arange(len(current)), rows])
        current = current.subset(sources)
        mask = torch.cat([part, torch.ones(len(rows), dtype=torch.bool)])
        worker.commit_result("s", current, mask, label="split", row_sources=sources).result(600)
        out["edits_s"] = round(time.monotonic() - t, 1)
        del current, mask, sources
        gc.collect()
        history = worker._sessions.find("s")  # noqa: SLF001 - the bench looks inside
        if hasattr(history, "nbytes"):
            out["history_held_mb"] = round(history.nbytes() / 2**20, 1)
        del history
        out["rss_after_6_edits_mb"] = rss_mb()
        out["trimmed_rss_after_6_edits_mb"] = trimmed_rss_mb()
        t = time.monotonic()
        for step in ("undo", "undo", "redo"):
            getattr(worker, step)("s").result(600)
        out["undo_undo_redo_s"] = round(time.monotonic() - t, 2)
        gc.collect()
        out["rss_after_undo_redo_mb"] = rss_mb()
        out["trimmed_rss_after_undo_redo_mb"] = trimmed_rss_mb()
        worker.close_session("s").result(600)
        gc.collect()
        out["rss_after_close_mb"] = rss_mb()
        out["trimmed_rss_after_close_mb"] = trimmed_rss_mb()
    finally:
        worker.shutdown()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=10)
    parser.add_argument("--parts", default="viewer,memory")
    parser.add_argument("--chromium", action="store_true", help="also time the first frame in headless Chromium")
    parser.add_argument("--modes", default="lod,full")
    parser.add_argument("--old-rev", default="main", help="git revision whose history.py is the 'old' one")
    parser.add_argument("--memory-case", choices=("old", "new"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_case:
        print(json.dumps(memory_case(args.tiles, args.memory_case, args.old_rev)))
        return
    _TILES[0] = args.tiles
    report: dict = {"machine": f"{os.cpu_count()} CPUs (shared)", "tiles": args.tiles}
    parts = args.parts.split(",")
    if "viewer" in parts:
        scene, part = tiled_capture(args.tiles)
        report["gaussians"], report["part"] = len(scene), int(part.sum())
        baseline = empty_screenshot(scene) if args.chromium else None
        report["viewer"] = [viewer_case(scene, part, mode, args.chromium, baseline) for mode in args.modes.split(",")]
        del scene, part
    if "memory" in parts:
        report["memory"] = []
        for history in ("old", "new"):
            done = subprocess.run([sys.executable, __file__, "--tiles", str(args.tiles), "--memory-case", history,
                                   "--old-rev", args.old_rev], capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                report["memory"].append({"history": history, "error": done.stderr[-2000:]})
            else:
                report["memory"].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
