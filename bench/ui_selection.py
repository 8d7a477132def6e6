"""Click-to-feedback latency of the selection tools in the real app, driven by headless Chromium.

Used by `python bench/ui.py --selection`. The app runs in this process (so the end of the server's click
handler can be timed on the same clock); the page runs in Debian's Chromium. For each scene (the bundled robot,
and the robot resampled to N Gaussians) and each path:

- streamed view: a click on the Render tab's image (pick and brush tools);
- Viser view: a click sent over the session viewer's websocket by a second client (the same message the
  browser's canvas sends; the browser's own WebGL drawing time is not part of the figure),

it reports, per click, from the click: `server_s` (the click handler returned with the new mask), `count_s`
(the page's count changed), `tint_s` (the streamed image was replaced / the Viser splat colours arrived), and
the feedback delays after the server's answer (`*_after_server_s`), whose target is <= 0.5 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

WATCH_JS = """() => {
  const t = {texts: [], images: []};
  window.__fb = t;
  const info = document.querySelector('#mask-info');
  const img = () => { const el = document.querySelector('#stream-view img'); return el ? el.src : ''; };
  let lastText = info ? info.innerText : '', lastImg = img();
  const now = () => performance.timeOrigin + performance.now();
  new MutationObserver(() => {
    const text = info ? info.innerText : '';
    if (text !== lastText) { lastText = text; t.texts.push([now(), text]); }
    const src = img();
    if (src !== lastImg) { lastImg = src; t.images.push(now()); }
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
                             attributeFilter: ['src']});
}"""


def resampled_robot(count: int):
    """The robot with each Gaussian split into jittered, smaller copies until there are `count` of them: a
    surface-like scene of real-capture size with the robot's parts."""
    from assets.default_scene import load_default_scene

    scene, part_ids, names = load_default_scene()
    g = torch.Generator().manual_seed(0)
    index = torch.arange(len(scene)).repeat(count // len(scene) + 1)[:count]
    big = scene.subset(index)
    spread = big.scales.exp().mean(1, keepdim=True)
    big = big.replace(means=big.means + 0.5 * spread * torch.randn(count, 3, generator=g), scales=big.scales - 0.4)
    return big, torch.as_tensor(part_ids)[index], names


def _quat_wxyz(rot: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix [3, 3] -> unit quaternion (w, x, y, z)."""
    w = np.sqrt(max(0.0, 1.0 + rot[0, 0] + rot[1, 1] + rot[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1.0 + rot[0, 0] - rot[1, 1] - rot[2, 2])) / 2, rot[2, 1] - rot[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - rot[0, 0] + rot[1, 1] - rot[2, 2])) / 2, rot[0, 2] - rot[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - rot[0, 0] - rot[1, 1] + rot[2, 2])) / 2, rot[1, 0] - rot[0, 1])
    return float(w), float(x), float(y), float(z)


def _targets(scene, camera, k: int) -> list[tuple[float, float]]:
    """k pixels of `camera` that show the scene: projected centres of Gaussians near the middle."""
    means = scene.means.detach().float()
    p = means @ camera.viewmats[0, :3, :3].T + camera.viewmats[0, :3, 3]
    uv = (p @ camera.Ks[0].T)[:, :2] / p[:, 2:3]
    inside = (p[:, 2] > 0) & (uv[:, 0] > 0.3 * camera.width) & (uv[:, 0] < 0.7 * camera.width) \
        & (uv[:, 1] > 0.25 * camera.height) & (uv[:, 1] < 0.75 * camera.height)
    pool = uv[inside]
    g = torch.Generator().manual_seed(1)
    picks = pool[torch.randperm(len(pool), generator=g)[:k]]
    return [(float(u), float(v)) for u, v in picks]


def _summary(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3), "n": len(values)}


def run_selection_bench(sizes: list[str], *, clicks: int = 6) -> dict:
    from playwright.sync_api import sync_playwright

    from editor.config import AppConfig
    from editor.page import build_app
    from engine.io import save
    from tests.editor.apphelpers import free_port
    from tests.editor.viser_client import ViserTestClient

    results = {"machine": f"{os.uname().machine} {os.cpu_count()} cpus", "load_avg_1min": round(os.getloadavg()[0], 2),
               "scenes": {}}
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for size in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="bench-sel-"))
        scene_path = None
        if size != "robot":
            scene, _, _ = resampled_robot(int(size))
            scene_path = tmp / "scene.ply"
            save(scene, scene_path)
        port = free_port()
        config = AppConfig(port=port, viser_port=free_port(), scene=scene_path, workspace=tmp / "ws")
        demo, ctx = build_app(config)
        answered: list[float] = []
        inner = ctx.masking.apply_click

        def timed(*a, _inner=inner, **kw):
            try:
                return _inner(*a, **kw)
            finally:
                answered.append(time.time())

        ctx.masking.apply_click = timed
        demo.queue(default_concurrency_limit=8)
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    allowed_paths=[str(config.workspace.resolve())])
        rows: dict[str, dict[str, list]] = {}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=executable, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 950})
                page.set_default_timeout(120_000)
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("tab", name="Render").click()
                page.wait_for_function("() => { const i = document.querySelector('#stream-view img'); return i && i.src; }")
                session = ctx.registry.sessions()[0]
                count = len(session.scene)
                page.get_by_role("tab", name="Mask").click()
                with session.lock:
                    camera = session.view.cameras(512, 384)
                box = page.locator("#stream-view img").first.bounding_box()
                targets = _targets(session.scene, camera, clicks)

                def settled() -> None:
                    """Wait until the page shows the session's count and its image has not changed for 0.5 s."""
                    deadline = time.monotonic() + 60
                    want = f"{session.selected_count():,} of"
                    while time.monotonic() < deadline and want not in page.locator("#mask-info").inner_text():
                        time.sleep(0.05)
                    src = None
                    stable_since = time.monotonic()
                    while time.monotonic() < deadline and time.monotonic() - stable_since < 0.5:
                        now_src = page.evaluate("() => (document.querySelector('#stream-view img') || {}).src")
                        if now_src != src:
                            src, stable_since = now_src, time.monotonic()
                        time.sleep(0.05)

                def one(path: str, do_click, op: str) -> None:
                    settled()
                    answered.clear()
                    before = session.selected_count()
                    page.evaluate(WATCH_JS)
                    t0 = time.time()
                    do_click()
                    deadline = time.monotonic() + 120
                    count_at = image_at = None
                    while time.monotonic() < deadline:
                        got = page.evaluate("() => window.__fb") or {}
                        if answered:
                            want = f"{session.selected_count():,} of"
                            count_at = next((t / 1000 for t, text in got["texts"] if want in text), None)
                            image_at = got["images"][0] / 1000 if got["images"] else None
                        tint_at = viser_tint[0] if path.startswith("viser") else image_at
                        if count_at and tint_at:
                            break
                        if answered and session.selected_count() == before and time.time() - answered[0] > 2:
                            break  # the click changed nothing (nothing hit): no feedback to time
                        time.sleep(0.02)
                    server = answered[0] - t0 if answered else None
                    count_s = count_at - t0 if count_at else None
                    tint_at = viser_tint[0] if path.startswith("viser") else image_at
                    tint_s = tint_at - t0 if tint_at else None
                    row = rows.setdefault(path, {k: [] for k in ("server_s", "count_s", "tint_s",
                                                                   "count_after_server_s", "tint_after_server_s")})
                    row["server_s"].append(server)
                    row["count_s"].append(count_s)
                    row["tint_s"].append(tint_s)
                    row["count_after_server_s"].append(None if None in (count_s, server) else count_s - server)
                    row["tint_after_server_s"].append(None if None in (tint_s, server) else tint_s - server)

                viser_tint = [None]
                for tool in ("pick", "brush"):
                    page.locator("#mask-tool").get_by_text("Pick" if tool == "pick" else "Brush").click()
                    time.sleep(0.5)
                    page.get_by_role("tab", name="Render").click()
                    for i, (u, v) in enumerate(targets):
                        for op in ("add", "subtract"):
                            with session.lock:
                                session.op = op
                            x, y = box["x"] + u / 512 * box["width"], box["y"] + v / 384 * box["height"]
                            one(f"stream_{tool}", lambda: page.mouse.click(x, y), op)
                    page.get_by_role("tab", name="Mask").click()
                with session.lock:
                    session.op = "add"

                # Viser: a second websocket client of this session's viewer sends the clicks and records the tint.
                if session.viewer is not None:
                    client = ViserTestClient(session.viewer.port)
                    rot = camera.viewmats[0, :3, :3].double().numpy().T  # R_world_camera
                    eye = camera.centers[0].double().numpy()
                    client.send_camera(_quat_wxyz(rot), eye, fov=float(np.radians(50.0)), width=512, height=384)
                    time.sleep(1.0)
                    for u, v in targets:
                        for op in ("add", "subtract"):
                            with session.lock:
                                session.op = op
                            d = rot @ np.array([(u - 256) / float(camera.Ks[0, 0, 0]),
                                                (v - 192) / float(camera.Ks[0, 1, 1]), 1.0])
                            d /= np.linalg.norm(d)
                            seen = len(client.messages)
                            viser_tint[0] = None

                            def watch(seen=seen):
                                deadline = time.monotonic() + 120
                                while time.monotonic() < deadline and viser_tint[0] is None:
                                    for m in list(client.messages)[seen:]:
                                        upd = m.get("updates") or m.get("props") or {}
                                        if "buffer" in upd or m.get("type") in ("GaussianSplatsMessage",):
                                            viser_tint[0] = time.time()
                                            break
                                    else:
                                        time.sleep(0.005)
                                        continue
                                    break

                            watcher = threading.Thread(target=watch, daemon=True)
                            watcher.start()
                            one("viser_pick", lambda: client.click(eye, d, (u / 512, v / 384)), op)
                            watcher.join(1)
                    # The same clicks made by the browser in the embedded Viser canvas, with that tab shown (the
                    # browser's WebGL drawing of the splats then shares the CPU, as for a user).
                    page.get_by_role("tab", name="3D view").click()
                    browser_client = None
                    deadline = time.monotonic() + 60
                    while browser_client is None and time.monotonic() < deadline:
                        others = [c for c in session.viewer.server.get_clients().values()
                                  if c.camera.image_width > 0 and c.camera.update_timestamp > 0
                                  and abs(c.camera.image_width - 512) + abs(c.camera.image_height - 384) > 0]
                        browser_client = others[0] if others else None
                        time.sleep(0.2)
                    time.sleep(3.0)
                    if browser_client is not None:
                        from editor import drawing

                        cam = browser_client.camera
                        bcam = drawing.camera_from_pose(cam.wxyz, cam.position, cam.fov, cam.image_width,
                                                        cam.image_height)
                        frame = page.locator("#viser-iframe").bounding_box()
                        for u, v in _targets(session.scene, bcam, clicks):
                            for op in ("add", "subtract"):
                                with session.lock:
                                    session.op = op
                                seen = len(client.messages)
                                viser_tint[0] = None
                                watcher = threading.Thread(target=watch, args=(seen,), daemon=True)
                                watcher.start()
                                x = frame["x"] + u / bcam.width * frame["width"]
                                y = frame["y"] + v / bcam.height * frame["height"]
                                one("viser_browser_pick", lambda: page.mouse.click(x, y), op)
                                watcher.join(1)
                    client.close()
                browser.close()
        finally:
            demo.close()
            ctx.registry.close_all()
            ctx.link.worker.shutdown(timeout=10)
            shutil.rmtree(tmp, ignore_errors=True)
        results["scenes"][f"{size} ({count:,} Gaussians)"] = {
            path: {k: _summary(v) for k, v in row.items()} for path, row in rows.items()}
    return results
