"""Issue 26 in headless Chromium: work that survives an edit and an undo, one model per session, a demo that
says what it does with the prompt, and a queued edit that says why it waits.

- 26.1: a -y-up scene, Generate, Undo: the Scene panel's up is -y again and a .ply export records it;
- 26.2: a saved part survives a densifying edit and its undo (Part list and Shown parts);
- 26.3: with the Model tab on the closed-form demo, Generate with its model field empty runs with it;
- 26.4: the note next to Run and Generate, and a colour word in the prompt picking the demo's colour;
- 26.6: a second session's edit queued behind another session's long edit sees its queue position and why.

Screenshots go to tests/artifacts/ (gitignored) as issue26-*.png.
"""

from __future__ import annotations

import time

import pytest

from tests.editor.browser_env import (ARTIFACTS, chromium_or_skip, click_render, launched_chromium, new_page,
                                      selected_count, session_of, wait_until)

pytestmark = pytest.mark.browser

CHROMIUM_EXECUTABLE, sync_api = chromium_or_skip()
NEG_Y = (0.0, -1.0, 0.0)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.editor.apphelpers import running_app

    # The bundled robot; the default model (Stable Diffusion 1.5) cannot load here (HF_HUB_OFFLINE=1).
    with running_app(tmp_path_factory.mktemp("issue26"), use_default_scene=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with launched_chromium(CHROMIUM_EXECUTABLE, sync_api) as browser:
        yield browser


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"issue26-{name}.png"), full_page=True)


def fill_number(page, selector: str, value) -> None:
    box = page.locator(f"{selector} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def use_demo(page) -> None:
    """The Model tab's closed-form demo (#d02020) becomes the session's model."""
    page.get_by_role("tab", name="Model").click()
    page.locator("#model-demo").click()
    wait_until(lambda: "closed-form:#" in page.locator("#model-status").inner_text().splitlines()[0], timeout=60)


def open_scene(page, session, path, count: int) -> None:
    page.get_by_role("tab", name="Scene").click()
    page.locator("#scene-upload input[type=file]").set_input_files(str(path))
    wait_until(lambda: len(session.scene) == count, timeout=60)
    wait_until(lambda: page.locator("#scene-count").inner_text().strip() == f"{count:,}", timeout=60)


def generate(page, prompt: str, *, steps: int = 3) -> None:
    """Generate from text with the model field left empty (the session's model); waits until it is done."""
    page.get_by_role("tab", name="Scene").click()
    if not page.locator("#generate-prompt").is_visible():
        page.get_by_text("Generate from text").click()
    assert page.locator("#generate-model textarea, #generate-model input").first.input_value() == ""
    page.locator("#generate-prompt textarea").fill(prompt)
    fill_number(page, "#generate-steps", steps)
    fill_number(page, "#generate-res", 32)
    fill_number(page, "#generate-count", 200)
    time.sleep(0.5)
    page.locator("#generate-run").click()
    wait_until(lambda: page.locator("#generate-progress").get_attribute("data-state") in ("done", "error"),
               timeout=300)
    assert page.locator("#generate-progress").get_attribute("data-state") == "done", \
        page.locator("#generate-progress").inner_text()


def scene_up(page) -> str:
    return page.locator("#scene-up").inner_text().strip()


def select_patch(page, session) -> int:
    page.get_by_role("tab", name="Mask").click()
    wait_until(lambda: session.stream_visible, timeout=30)
    time.sleep(1.0)
    click_render(page)
    return wait_until(lambda: selected_count(page) > 0 and selected_count(page), timeout=60)


def run_edit(page, prompt: str, *, steps: int, res: int = 48, lr: float = 1.0, kind: str | None = None) -> None:
    """kind: the "What may change" choice's label start ("Shape too"), or None for the default (auto)."""
    page.get_by_role("tab", name="Edit").click()
    wait_until(lambda: "closed-form" in page.locator("#edit-model").inner_text())
    page.locator("#edit-prompt textarea").fill(prompt)
    fill_number(page, "#edit-steps", steps)
    if not page.locator("#edit-res").is_visible():
        page.get_by_text("Advanced").click()
    fill_number(page, "#edit-res", res)
    fill_number(page, "#edit-lr", lr)
    if kind is not None:
        page.locator("#edit-kind").get_by_text(kind).click()
    time.sleep(0.5)
    page.locator("#edit-run").click()


def test_26_1_undo_after_generate_brings_the_minus_y_up_back_in_the_panel_and_the_export(app, browser, tmp_path):
    from engine.io.detect_up import detect_up, save_with_up
    from tests.editor.apphelpers import small_scene

    capture = tmp_path / "lying-capture.ply"
    save_with_up(small_scene(300, seed=3), capture, NEG_Y)
    page = new_page(browser, app)
    session = session_of(app, page)
    use_demo(page)
    open_scene(page, session, capture, 300)
    wait_until(lambda: scene_up(page) == "-y", timeout=60)
    generate(page, "a red ball")
    wait_until(lambda: scene_up(page) == "+z", timeout=60)  # the generated object is +z up
    page.get_by_role("tab", name="History & export").click()
    page.locator("#hist-undo").click()
    wait_until(lambda: len(session.scene) == 300, timeout=60)
    page.get_by_role("tab", name="Scene").click()
    wait_until(lambda: scene_up(page) == "-y", timeout=60)
    assert "from the file" in page.locator("#scene-info").inner_text()
    assert tuple(session.up) == NEG_Y
    shot(page, "1-undo-generate-up-back")
    page.get_by_role("tab", name="History & export").click()
    page.locator("#export-run").click()  # the default format: 3DGS .ply
    exports = session.workspace / "exports"
    exported = wait_until(lambda: sorted(exports.glob("*.ply")) if exports.exists() else None, timeout=60)[-1]
    wait_until(lambda: page.locator("#export-file a").count() > 0, timeout=60)  # the download reached the page
    guess = detect_up(exported)
    assert guess.source == "file" and tuple(guess.up) == NEG_Y, guess
    page.context.close()


def test_26_2_a_saved_part_survives_a_densifying_edit_and_its_undo(app, browser, tmp_path):
    from engine.io import save
    from engine.scene import SH_C0
    from tests.editor.apphelpers import small_scene

    blob = tmp_path / "blob.ply"
    save(small_scene(400), blob)
    page = new_page(browser, app)
    session = session_of(app, page)
    use_demo(page)
    open_scene(page, session, blob, 400)
    count = select_patch(page, session)
    page.locator("#part-name textarea, #part-name input").first.fill("chest")
    page.locator("#part-save").click()
    wait_until(lambda: "chest" in session.parts, timeout=30)
    assert int((session.parts["chest"] > 0.5).sum()) == count
    # 150 steps: densification refines at step 100; "blue" in the prompt is the demo's colour (26.4). A demo
    # recolour keeps its geometry by default (issue 24): the user asks for shape too.
    run_edit(page, "a blue chest", steps=150, lr=5, kind="Shape too")
    note = page.locator("#edit-prompt-note").inner_text()
    assert "ignores the prompt's meaning" in note and "#0000ff" in note, note
    wait_until(lambda: page.locator("#edit-progress").get_attribute("data-state") in ("done", "error"), timeout=600)
    assert page.locator("#edit-progress").get_attribute("data-state") == "done"
    assert len(session.scene) != 400  # densified: the rows changed
    part = session.parts["chest"] > 0.5
    assert int(part.sum()) >= count
    colour = (SH_C0 * session.scene.sh0[part, 0] + 0.5).mean(0)  # [3] the part's mean colour
    assert colour[2] > colour[0] + 0.2, colour  # moved toward blue, not the Model tab's red
    page.get_by_role("tab", name="Mask").click()
    shown = page.locator("#parts-shown")
    wait_until(lambda: shown.get_by_text("chest").count() > 0, timeout=60)
    shot(page, "2-part-after-densifying-edit")
    page.get_by_role("tab", name="History & export").click()
    page.locator("#hist-undo").click()
    wait_until(lambda: len(session.scene) == 400, timeout=60)
    assert int((session.parts["chest"] > 0.5).sum()) == count
    page.get_by_role("tab", name="Mask").click()
    wait_until(lambda: shown.get_by_text("chest").count() > 0, timeout=60)
    page.locator("#part-select input").click()
    assert page.get_by_role("option", name="chest").count() == 1
    page.keyboard.press("Escape")
    shot(page, "2-part-after-undo")
    page.context.close()


def test_26_3_and_26_4_generate_uses_the_model_tabs_demo_and_says_what_it_does(app, browser):
    page = new_page(browser, app)
    session = session_of(app, page)
    use_demo(page)
    page.get_by_role("tab", name="Scene").click()
    page.get_by_text("Generate from text").click()
    page.locator("#generate-prompt textarea").fill("a mug with a blue glaze")
    note = page.locator("#generate-prompt-note")
    wait_until(lambda: "#0000ff" in note.inner_text(), timeout=30)
    assert "ignores the prompt's meaning" in note.inner_text() and '"blue"' in note.inner_text()
    generate(page, "a mug with a blue glaze", steps=2)
    assert page.locator(".toast-body").count() == 0  # no refusal
    assert "generated: a mug with a blue glaze" in page.locator("#scene-info").inner_text()
    assert len(session.scene) == 200
    shot(page, "3-generate-with-the-sessions-model")
    page.get_by_role("tab", name="Edit").click()
    page.locator("#edit-prompt textarea").fill("a woollen scarf")
    edit_note = page.locator("#edit-prompt-note")
    wait_until(lambda: "toward #d02020" in edit_note.inner_text(), timeout=30)
    shot(page, "4-edit-prompt-note")
    page.context.close()


def test_26_6_a_queued_edit_sees_its_position_and_the_running_edits_time_left(app, browser):
    first, second = new_page(browser, app), new_page(browser, app)
    sessions = []
    for page in (first, second):
        sessions.append(session_of(app, page))
        use_demo(page)
        select_patch(page, sessions[-1])
    run_edit(first, "a red robot", steps=2000, res=64)
    wait_until(lambda: first.locator("#edit-progress").get_attribute("data-state") == "running"
               and int(first.locator("#edit-progress").get_attribute("data-step")) >= 2, timeout=300)
    run_edit(second, "a red robot", steps=3)
    bar = second.locator("#edit-progress")
    wait_until(lambda: "1 job ahead (another session's edit" in bar.inner_text() and "left" in bar.inner_text(),
               timeout=60)
    assert bar.get_attribute("data-state") == "queued"
    shot(second, "6-queued-behind-another-session")
    first.locator("#edit-cancel").click()
    wait_until(lambda: bar.get_attribute("data-state") == "done", timeout=300)
    assert first.locator("#edit-progress").get_attribute("data-state") == "cancelled"
    first.context.close()
    second.context.close()
