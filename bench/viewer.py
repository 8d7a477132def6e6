"""The Viser view and a worker session's memory at real-capture size; prints JSON.

Scene: the playbot capture (/work/shared/data/playbot-lod2/meta.json, 125k Gaussians) tiled --tiles times side
by side (10: ~1.25M), raised to SH degree 3 (zero-padded: the bytes a real SH-3 capture holds). Its head +
hands (y < -0.62) in the first tile are "the part".

- wire: for the level of detail (`lod`, the default budget) and `full` ("Full detail": every splat), a
  SessionViewer shows the scene with the part selected; a websocket client speaking Viser's protocol (drawing
  instantly: it answers the frame timings at once) counts the bytes it receives and the time until it holds
  its final level, then the bytes and time of one mask change.
- browser: as in the app (the scene shown, then the page connects), headless Chromium (software WebGL) opens
  the Viser page: seconds until the canvas shows the scene (screenshots compared with an empty scene's), the
  slowest answer of the page's main thread until --seconds later (a `page.evaluate`), screenshots (--shots);
  then a Gradio page holding the view in an iframe, as the app does, whose button is clicked once a second
  for --seconds: the seconds until each click's answer shows. Browser RSS is Chromium's process tree.
- memory (each in a fresh process): RSS with the scene loaded, after a worker session opened it (idle), after
  six edits of the part (five colour edits and one that splits the part's Gaussians: a count change), after
  undo/redo, and after the session closed; `--history old` runs the same with the history of whole scenes
  (engine/worker/history.py as of `git show <rev>:...`, --old-rev).
- autosave (alone): a worker with a workspace; megabytes written and seconds per autosaved edit, the folder's
  size, a restore's seconds and RSS and whether it gives the same scene.

    python bench/viewer.py [--tiles 10] [--parts wire,browser,memory] [--modes lod,full] [--shots DIR]
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
    """A Viser websocket client that counts what it receives and keeps the splat nodes it holds (name -> rows);
    it answers the viewer's frame timings at once, like a browser that draws instantly."""

    def __init__(self, port: int) -> None:
        self.bytes = 0
        self.held: dict[str, int] = {}
        self.buffers: list[tuple[float, int]] = []  # (time, rows) of each splat buffer received
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
                        messages = decode_frame(raw)
                        for m in messages:
                            kind, updates = m.get("type"), m.get("updates") or {}
                            if kind == "GaussianSplatsMessage" or (kind == "SceneNodeUpdateMessage"
                                                                   and "buffer" in updates):
                                self.held[m["name"]] = splat_buffer(m).shape[0]
                                self.buffers.append((time.monotonic(), self.held[m["name"]]))
                            elif kind == "RemoveSceneNodeMessage":
                                self.held.pop(m["name"], None)
                        await self.answer(ws, messages)
                except Exception:  # noqa: BLE001 - closed
                    pass

        self._loop.run_until_complete(main())

    def wait_held(self, rows: int, timeout: float = 300.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(self.held.values()) == rows:
                return time.monotonic()
            time.sleep(0.01)
        raise TimeoutError(f"the client never held {rows} splats (holds {sum(self.held.values())})")


def expected_rows(scene, mask, full: bool) -> int:
    """Splats a browser that draws fast enough ends up holding: the budget (or all) and the selection."""
    from editor.viewer_lod import DEFAULT_SPLAT_BUDGET, DetailLevels, chunks_within

    levels = DetailLevels()
    cap = None if full else DEFAULT_SPLAT_BUDGET
    levels.rows(scene, 0)
    chunks, part = levels.chunks(scene, chunks_within(levels.bounds(cap), cap), cap, mask)
    return sum(len(c) for c in chunks) + len(part)


def make_viewer(mode: str):
    from editor.viewer import SessionViewer
    from editor.viewer_lod import DEFAULT_SPLAT_BUDGET

    return SessionViewer(port=0, splat_budget=None if mode == "full" else DEFAULT_SPLAT_BUDGET)


def wire_case(scene, part, mode: str) -> dict:
    """A client that draws instantly: bytes and seconds until it holds its final level, then for a mask change."""
    from editor.orbit import OrbitView

    viewer = make_viewer(mode)
    lo, hi = scene.bounding_box(quantile=0.01)
    viewer.frame(OrbitView.framing(lo, hi, up=(0.0, -1.0, 0.0)))
    out: dict = {"mode": mode}
    try:
        client = ByteCounter(viewer.port)
        time.sleep(0.5)
        start_bytes, t0 = client.bytes, time.monotonic()
        viewer.show(scene, part.float())
        t_final = client.wait_held(expected_rows(scene, part.float(), mode == "full"))
        first_t, first_rows = client.buffers[0]
        time.sleep(0.5)
        out.update(first_splats=first_rows, first_buffer_s=round(first_t - t0, 2), splats=sum(client.held.values()),
                   final_s=round(t_final - t0, 2), bytes_to_final=client.bytes - start_bytes,
                   nodes=len(client.held))
        mask = part.float().clone()  # one selection change: half of the part is deselected
        import torch

        rows = torch.nonzero(part).flatten()
        mask[rows[scene.means[rows, 0] < scene.means[rows, 0].median()]] = 0.0
        b0, t1 = client.bytes, time.monotonic()
        updates = viewer.stats["splat_updates"]
        viewer.show(scene, mask)
        t2 = client.wait_held(expected_rows(scene, mask, mode == "full"))
        while viewer.stats["splat_updates"] == updates:
            time.sleep(0.01)
        time.sleep(0.5)
        out.update(mask_change_s=round(max(t2, time.monotonic() - 0.5) - t1, 2), mask_change_bytes=client.bytes - b0)
        client.close()
    finally:
        viewer.close()
    return out


def browser_case(scene, part, mode: str, baseline: bytes, shots: Path | None, seconds: float) -> dict:
    """As in the app (the scene shown, then the page connects): the Viser page alone in headless Chromium (first
    frame, slowest main-thread answer, screenshots), then a Gradio page with the view in an iframe and a button
    clicked once a second while the view loads and refines (seconds until each click's answer shows)."""
    from editor.orbit import OrbitView

    lo, hi = scene.bounding_box(quantile=0.01)
    out: dict = {"mode": mode}
    viewer = make_viewer(mode)
    try:
        if mode == "empty":
            raise _Skip
        viewer.frame(OrbitView.framing(lo, hi, up=(0.0, -1.0, 0.0)))
        viewer.show(scene, part.float())
        while viewer.stats["splat_updates"] == 0:
            time.sleep(0.1)
        cpu0 = time.process_time()
        out["viser_page"] = first_frame(viewer.port, baseline, timeout=240.0, shots=shots, tag=mode,
                                        settle_s=seconds, stats=lambda: _viewer_stats(viewer))
        out["viser_page"].update(server_cpu_s=round(time.process_time() - cpu0, 1))
    except _Skip:
        pass
    finally:
        viewer.close()
    viewer = make_viewer(mode)
    try:
        viewer.frame(OrbitView.framing(lo, hi, up=(0.0, -1.0, 0.0)))
        if mode != "empty":  # "empty": the control, the same pages with no splats at all
            viewer.show(scene, part.float())
            while viewer.stats["splat_updates"] == 0:
                time.sleep(0.1)
        out["gradio_page"] = button_answers(viewer, seconds)
    finally:
        viewer.close()
    out["server_rss_mb"] = rss_mb()
    return out


class _Skip(Exception):
    pass


def _viewer_stats(viewer) -> dict:
    keys = ("splats_shown", "splats_sent", "splat_bytes", "level", "frame_s")
    return {k: viewer.stats.get(k) for k in keys}


_TILES = [1]  # --tiles, for the viewer case


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


def browser_tree_mb() -> float:
    """RSS of this process's children (playwright's driver and the Chromium it started)."""
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


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


def first_frame(port: int, baseline: bytes, timeout: float, shots: Path | None = None, tag: str = "",
                settle_s: float = 10.0, stats=dict) -> dict:
    """Seconds from opening the view until the canvas shows the scene; the slowest main-thread answer until
    `settle_s` after it; screenshots of the first frame and of the view then (into `shots`)."""
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
                if shots is not None:
                    (shots / f"{tag}_first_frame.png").write_bytes(shot)
                break
            time.sleep(0.25)
        rss = browser_tree_mb()
        end = time.monotonic() + settle_s  # answers while the view keeps drawing (refinement, sorting)
        while time.monotonic() < end:
            t = time.monotonic()
            page.evaluate("() => 1")
            slowest = max(slowest, time.monotonic() - t)
            rss = max(rss, browser_tree_mb())
            time.sleep(0.3)
        if shots is not None:
            page.screenshot(path=str(shots / f"{tag}_after_{int(settle_s)}s.png"), timeout=timeout * 1000)
        return {"first_frame_s": None if shown is None else round(shown, 1), "timeout_s": timeout,
                "slowest_main_thread_answer_s": round(slowest, 2), "browser_rss_mb": rss, **stats()}
    finally:
        browser.close()
        p.stop()


def button_answers(viewer, seconds: float) -> dict:
    """A Gradio page holding the view in an iframe (as the app does) and a button whose click writes a counter
    into a textbox: clicked once a second for `seconds` from the page's load; seconds until each answer shows."""
    import gradio as gr

    with gr.Blocks() as demo:
        gr.HTML(f'<iframe src="http://127.0.0.1:{viewer.port}/" style="width:100%;height:560px;border:0"></iframe>')
        button = gr.Button("Ping", elem_id="ping")
        box = gr.Textbox(elem_id="pong")
        button.click(lambda text: str(int(text or 0) + 1), inputs=box, outputs=box)
    demo.launch(prevent_thread_lock=True, server_port=None, quiet=True)
    p, browser = _browser()
    answers: list[float] = []
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        t0 = time.monotonic()
        page.goto(demo.local_url, timeout=120000)
        loaded = time.monotonic() - t0
        count, at = 0, []
        while time.monotonic() - t0 < seconds:
            count += 1
            t = time.monotonic()
            # force: no wait for two steady animation frames first (Playwright's check, not the user's)
            page.click("#ping", timeout=120000, force=True)
            page.wait_for_function(f"() => document.querySelector('#pong textarea').value === '{count}'",
                                   timeout=120000, polling=50)
            answers.append(round(time.monotonic() - t, 2))
            at.append(round(t - t0, 1))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
        return {"page_loaded_s": round(loaded, 1), "clicks": len(answers), "slowest_click_answer_s": max(answers),
                "median_click_answer_s": sorted(answers)[len(answers) // 2], "click_answers_s": answers,
                "clicked_at_s": at, "browser_rss_mb": browser_tree_mb(), **_viewer_stats(viewer)}
    finally:
        browser.close()
        p.stop()
        demo.close()


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


def folder_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


def autosave_case(tiles: int) -> dict:
    """A worker with a workspace: the part edited six times (five recolours, one split: a count change), each
    commit autosaved; bytes written and seconds per commit, then undo/redo, and a restore in a new worker
    (seconds, RSS, the same scene bit for bit)."""
    import resource
    import tempfile

    import psutil
    import torch

    from engine.worker import EngineWorker

    out: dict = {"case": "autosave"}
    scene, part = tiled_capture(tiles)
    out.update(gaussians=len(scene), part=int(part.sum()))
    io = psutil.Process().io_counters
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/tmp")) as tmp:
        workspace = Path(tmp)
        worker = EngineWorker(workspace=workspace, device="cpu")
        try:
            w0, t0 = io().write_bytes, time.monotonic()
            worker.load_scene("s", scene).result(600)
            worker.set_mask("s", part).result(600)
            out.update(first_save_s=round(time.monotonic() - t0, 1), first_save_mb=round((io().write_bytes - w0) / 2**20, 1),
                       folder_after_load_mb=folder_mb(workspace))
            current, per_edit = scene, []
            g = torch.Generator().manual_seed(0)
            for i in range(6):
                if i < 5:
                    sh0 = current.sh0.clone()
                    sh0[part] += 0.05 * torch.randn(int(part.sum()), 1, 3, generator=g)
                    current, sources, mask = current.replace(sh0=sh0), None, part
                else:
                    rows = torch.nonzero(part).flatten()
                    sources = torch.cat([torch.arange(len(current)), rows])
                    current = current.subset(sources)
                    mask = torch.cat([part, torch.ones(len(rows), dtype=torch.bool)])
                w0, t0, c0 = io().write_bytes, time.monotonic(), time.process_time()
                worker.commit_result("s", current, mask, label=f"edit {i}", row_sources=sources).result(600)
                per_edit.append({"s": round(time.monotonic() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                                 "written_mb": round((io().write_bytes - w0) / 2**20, 1)})
            out["per_edit"] = per_edit
            out["folder_after_6_edits_mb"] = folder_mb(workspace)
            for step in ("undo", "undo", "redo"):
                getattr(worker, step)("s").result(600)
            out["folder_after_undo_redo_mb"] = folder_mb(workspace)
            expected, _ = worker.snapshot("s").result(600)
            worker.close_session("s").result(600)
        finally:
            worker.shutdown()
        del scene
        gc.collect()
        out["rss_before_restore_mb"] = trimmed_rss_mb()
        worker = EngineWorker(workspace=workspace, device="cpu")
        try:
            t0, c0 = time.monotonic(), time.process_time()
            worker.restore_session("s").result(600)
            restored, _ = worker.snapshot("s").result(600)
            out.update(restore_s=round(time.monotonic() - t0, 1), restore_cpu_s=round(time.process_time() - c0, 1),
                       rss_after_restore_mb=rss_mb(),
                       restored_equal=all(torch.equal(a, b) for (_, a), (_, b) in zip(restored.items(), expected.items())))
        finally:
            worker.shutdown()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=10)
    parser.add_argument("--parts", default="wire,browser,memory")
    parser.add_argument("--modes", default="lod,full")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the pages are watched")
    parser.add_argument("--shots", type=Path, help="folder for the browser's screenshots")
    parser.add_argument("--old-rev", default="main", help="git revision whose history.py is the 'old' one")
    parser.add_argument("--memory-case", choices=("old", "new"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "autosave" in args.parts.split(",") and args.parts != "autosave":
        parser.error("run --parts autosave alone (a fresh process: its peak RSS is the autosave's)")
    if args.parts == "autosave":
        print(json.dumps(autosave_case(args.tiles), indent=1))
        return
    if args.memory_case:
        print(json.dumps(memory_case(args.tiles, args.memory_case, args.old_rev)))
        return
    _TILES[0] = args.tiles
    import psutil

    report: dict = {"machine": f"{os.cpu_count()} CPUs (shared), load {os.getloadavg()[0]:.1f}",
                    "tiles": args.tiles, "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                                  capture_output=True, text=True).stdout.strip()}
    parts = args.parts.split(",")
    modes = args.modes.split(",")
    if "wire" in parts or "browser" in parts:
        scene, part = tiled_capture(args.tiles)
        report["gaussians"], report["part"] = len(scene), int(part.sum())
        if "wire" in parts:
            report["wire"] = [wire_case(scene, part, mode) for mode in modes]
        if "browser" in parts:
            if args.shots:
                args.shots.mkdir(parents=True, exist_ok=True)
            baseline = empty_screenshot(scene)
            report["browser"] = [browser_case(scene, part, mode, baseline, args.shots, args.seconds)
                                 for mode in modes]
        del scene, part
    report["load_after"] = round(psutil.getloadavg()[0], 1)
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
