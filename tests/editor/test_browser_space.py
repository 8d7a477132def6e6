"""`--space` in headless Chromium: one port, a GPU edit run the way ZeroGPU runs it (tests/editor/fake_zerogpu.py:
another process, progress and previews streamed back), the preview updating during the edit, and the final splat
in the "3D model" tab's gr.Model3D. Screenshots go to tests/artifacts/ (gitignored)."""

from __future__ import annotations

import io
import re
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.editor.browser_env import ARGS, ARTIFACTS, chromium_or_skip, wait_until

pytestmark = pytest.mark.browser

CHROMIUM_EXECUTABLE, sync_api = chromium_or_skip()


def fill(page, selector: str, value) -> None:
    page.locator(f"{selector} input[type=number]").fill(str(value))
    page.locator(f"{selector} input[type=number]").press("Enter")


def test_space_edit_previews_update_live_and_the_result_shows_in_model3d(tmp_path, monkeypatch):
    from engine.io import load
    from tests.editor.apphelpers import running_app
    from tests.editor.fake_zerogpu import FakeZeroGPU

    fake = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    executable = CHROMIUM_EXECUTABLE
    with running_app(tmp_path, space=True) as app, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app.url)
        assert page.locator("#viser-iframe").count() == 0  # one port: no Viser view in a Space

        page.get_by_role("tab", name="Render").click()
        page.wait_for_function("() => { const i = document.querySelector('#stream-view img'); return i && i.src; }")
        page.get_by_role("tab", name="Mask").click()
        page.locator("#mask-tool").get_by_text("Brush").click()
        fill(page, "#mask-radius", 60)
        time.sleep(0.3)
        page.get_by_role("tab", name="Render").click()
        box = page.locator("#stream-view img").first.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        (session,) = wait_until(lambda: [s for s in app.ctx.registry.sessions() if bool(s.selection.any())])

        page.get_by_role("tab", name="Model", exact=True).click()
        page.locator("#model-demo").click()
        wait_until(lambda: "closed-form" in page.locator("#model-status").inner_text())
        assert "Renderer" in page.locator("#model-status").inner_text()
        page.get_by_role("tab", name="Edit").click()
        page.locator("#edit-prompt textarea").fill("make it red")
        fill(page, "#edit-steps", 30)
        page.get_by_text("Advanced").click()
        fill(page, "#edit-res", 64)
        fill(page, "#edit-preview-every", 3)
        time.sleep(0.3)
        page.locator("#edit-run").click()

        previews, steps = set(), set()
        bar = page.locator("#edit-progress")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = bar.get_attribute("data-state")
            if state == "running":
                steps.add(int(bar.get_attribute("data-step") or 0))
                img = page.locator("#edit-preview img")
                if img.count():
                    previews.add(img.first.get_attribute("src"))
            if state in ("done", "error", "cancelled"):
                break
            time.sleep(0.1)
        page.screenshot(path=str(ARTIFACTS / "space-01-edit-done.png"), full_page=True)
        assert bar.get_attribute("data-state") == "done", page.locator("#edit-progress-box").inner_text()
        assert len(previews - {None}) >= 2, previews  # the preview changed while the GPU process edited
        assert len([s for s in steps if 0 < s < 30]) >= 2, steps
        assert fake.calls and fake.calls[-1].name == "run_edit_on_gpu"

        with page.expect_response(lambda r: ".ply" in r.url) as fetched:
            page.get_by_role("tab", name="3D model").click()  # opening the tab shows the scene, no button needed
        assert fetched.value.status == 200  # the page fetched the splat file
        page.locator("#model3d canvas").first.wait_for(state="attached")
        newest = max((session.workspace / "model3d").glob("*.ply"), key=lambda f: f.stat().st_mtime)
        assert len(load(newest)) == len(session.scene)  # the edited scene (not the start one) is shown
        assert re.search(r"scene-\d+-\d+\.ply", newest.name)
        time.sleep(1.5)
        page.screenshot(path=str(ARTIFACTS / "space-02-model3d.png"), full_page=True)
        shot = page.locator("#model3d canvas").first.screenshot()
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)[4:-4, 4:-4]  # no border
        width = pixels.shape[1]  # between the label badge (top left) and the download button (top right)
        subject = (pixels < 235).any(axis=2)[:, width // 2 + 10: width * 9 // 10]
        rows, _ = np.nonzero(subject)
        assert 0.03 < subject.mean() < 0.9 and pixels[-1, -1].min() > 235, subject.mean()  # on white, not black
        height = subject.shape[0]  # the whole subject in view (not cut at the top or bottom), around the middle
        assert rows.min() > 0 and rows.max() < height - 1 and abs(rows.mean() / height - 0.5) < 0.2
        browser.close()
