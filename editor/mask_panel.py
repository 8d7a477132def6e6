"""The Mask panel: tool and operation, SAM + lift options, threshold, invert/grow/shrink, parts, save/load.

Gestures themselves happen in the views (Viser or the streamed image); this panel sets what they do and offers
the whole-mask operations. `mask_info` (the selected count) refreshes after each action here and, for clicks
made in Viser, from the page's sync timer (editor.page).
"""

from __future__ import annotations

import gradio as gr

from .context import AppContext
from .session import OPS, TOOLS, Session

TOOL_LABELS = {"pick": "Pick (ray)", "brush": "Brush", "rect": "Rectangle", "sam": "SAM click (multi-view)"}


def mask_summary(session: Session) -> str:
    """The selected count, the SAM task's progress while one runs, and the latest gesture warning (cleared
    by the next change)."""
    with session.lock:
        n, total = session.selected_count(), len(session.scene)
        lift = "" if session.lift is None else f" · lifted mask cut at {session.threshold:.2f}"
        task, notice = session.mask_task, session.notice
        lines = [f"**{n:,}** of {total:,} Gaussians selected{lift}"]
        if task.active:
            share = f" ({task.step}/{task.total})" if task.total else ""
            lines.append(f"⏳ {task.kind or 'mask task'}: {task.message or task.state}{share}")
        if notice:
            lines.append(f"⚠️ {notice}")
    return "  \n".join(lines)


def sam_note_update(tool: str, missing: str) -> dict:
    """The note under the tools: with the SAM tool chosen and no checkpoint, what is missing and the download."""
    shown = tool == "sam" and bool(missing)
    return gr.update(value=f"⚠️ {missing}" if shown else "", visible=shown)


def part_choices(session: Session) -> list[str]:
    with session.lock:
        return list(session.parts)


def build_mask_panel(ctx: AppContext) -> None:
    sam_missing = ctx.masking.sam_missing()
    labels = dict(TOOL_LABELS, sam=TOOL_LABELS["sam"] + (" — no checkpoint installed" if sam_missing else ""))
    with gr.Row():
        tool = gr.Radio([(labels[t], t) for t in TOOLS], value="pick", label="Tool", elem_id="mask-tool")
        op = gr.Radio(list(OPS), value="add", label="Operation", elem_id="mask-op")
    sam_note = gr.Markdown(visible=False, elem_id="mask-sam-note")  # said when SAM is chosen, before a click
    brush = gr.Slider(2, 120, value=24, step=1, label="Brush / pick radius (pixels)", elem_id="mask-radius")
    with gr.Accordion("SAM and lifting", open=False):
        lift_method = gr.Radio([("Voting", "vote"), ("3D-GALP", "galp")], value="vote", label="Lift method",
                               elem_id="mask-lift")
        sam_views = gr.Slider(2, 32, value=8, step=1, label="Views SAM runs on per click")
        threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Threshold of the lifted mask",
                              elem_id="mask-threshold")
    with gr.Accordion("Select by text", open=False):
        with gr.Row():
            text_part = gr.Textbox(label="Part to select", placeholder="e.g. scarf", elem_id="text-part", scale=2)
            text_prompt = gr.Textbox(label="Prompt (optional; must contain the part)",
                                     placeholder="e.g. a toy robot with a red scarf", elem_id="text-prompt", scale=3)
        with gr.Row():
            text_within = gr.Checkbox(False, label="Only around the current selection", elem_id="text-within")
            text_sam = gr.Checkbox(False, label="Refine with SAM", elem_id="text-sam")
            text_go = gr.Button("Select by text", size="sm", variant="primary", elem_id="text-select")
        gr.Markdown("Reads the editing model's attention to the part's word in as many views as *Views SAM runs "
                    "on*, lifted with 3D-GALP; uses the model of the Model tab (the closed-form demo has none).")
    with gr.Accordion("Select a volume (sphere / box)", open=False):
        with gr.Row():
            volume_shape = gr.Radio([("Sphere", "sphere"), ("Box", "box")], value="sphere", label="Shape",
                                    elem_id="volume-shape")
            volume_size = gr.Slider(0.02, 1.0, value=0.25, step=0.01, elem_id="volume-size",
                                    label="Size (share of the scene's extent)")
            volume_go = gr.Button("Select volume", size="sm", variant="primary", elem_id="volume-select")
        gr.Markdown("Centred on the current selection (on the scene when nothing is selected); the Operation "
                    "above adds or subtracts it.")
    info = gr.Markdown(elem_id="mask-info")
    cancel_task = gr.Button("Cancel mask task", size="sm", elem_id="mask-cancel-task", visible=False)
    with gr.Row():
        invert = gr.Button("Invert", size="sm", elem_id="mask-invert")
        grow = gr.Button("Grow", size="sm", elem_id="mask-grow")
        shrink = gr.Button("Shrink", size="sm", elem_id="mask-shrink")
        islands = gr.Button("Remove islands", size="sm", elem_id="mask-islands")
        clear = gr.Button("Clear", size="sm", elem_id="mask-clear")
    with gr.Accordion("Parts", open=True):
        with gr.Row():
            part = gr.Dropdown(choices=[], label="Part", allow_custom_value=True, elem_id="part-select")
            part_name = gr.Textbox(label="New part name", placeholder="e.g. hat", elem_id="part-name")
        with gr.Row():
            select_part = gr.Button("Select", size="sm", elem_id="part-apply")
            add_part = gr.Button("Add to selection", size="sm")
            save_part = gr.Button("Save selection as part", size="sm", elem_id="part-save")
            delete_part = gr.Button("Delete part", size="sm", variant="stop")
        shown = gr.CheckboxGroup(choices=[], label="Shown parts (unticked parts are hidden in the views)",
                                 elem_id="parts-shown")
    with gr.Accordion("Save / load mask and parts", open=False):
        with gr.Row():
            save_mask = gr.Button("Save selection (.npy)", size="sm", elem_id="mask-save")
            save_parts = gr.Button("Save parts (.npy + .json)", size="sm", elem_id="parts-save-file")
        mask_file = gr.File(label="Mask / parts files (download, or drop a .npy [+ .json] here to load)",
                            file_types=[".npy", ".json"], file_count="multiple", elem_id="mask-file")
    ctx.shared.update(mask_info=info, part_select=part, parts_shown=shown, mask_threshold=threshold,
                      mask_cancel=cancel_task)

    # --- settings: stored in the session; the views read them at gesture time
    def set_tool(tool_value: str, op_value: str, radius: float, method: str, views: float, request: gr.Request):
        session = ctx.session(request)
        with session.lock:
            session.tool, session.op, session.brush_radius = tool_value, op_value, float(radius)
            session.lift_method, session.sam_views = method, int(views)
        if session.viewer is not None:
            session.viewer.set_rect_mode(tool_value == "rect")

    settings = [tool, op, brush, lift_method, sam_views]
    for component in settings:
        component.change(set_tool, settings, None, show_progress="hidden", api_name="set_tool" if component is tool else None,
                         api_visibility="public" if component is tool else "private")
    tool.change(lambda t: sam_note_update(t, ctx.masking.sam_missing()), tool, sam_note, show_progress="hidden",
                api_visibility="private")

    # --- whole-mask actions: each returns the selected count; the page's sync re-renders the views
    def action(fn):
        def handler(request: gr.Request) -> int:
            session = ctx.session(request)
            try:
                return fn(session)
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc

        return handler

    count = gr.Number(visible=False)  # the API's return value (the page shows mask_info)
    for button, fn, name in ((invert, ctx.masking.invert, "invert_mask"), (grow, ctx.masking.grow, "grow_mask"),
                             (shrink, ctx.masking.shrink, "shrink_mask"), (clear, ctx.masking.clear, "clear_mask"),
                             (islands, ctx.masking.remove_islands, "remove_islands")):
        ctx.changed(button.click(action(fn), None, count, api_name=name))

    def do_volume(shape: str, size: float, request: gr.Request) -> int:
        try:
            return ctx.masking.select_volume(ctx.session(request), shape, float(size))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    ctx.changed(volume_go.click(do_volume, [volume_shape, volume_size], count, api_name="select_volume"))

    def cut(value: float, request: gr.Request):
        """Live preview while the slider moves: re-cut the lifted mask, quick low-resolution render."""
        from .render_panel import render_stream

        session = ctx.session(request)
        ctx.masking.set_threshold(session, value, live=True)
        return mask_summary(session), render_stream(session, low=True)

    def cut_full(value: float, request: gr.Request) -> int:
        return ctx.masking.set_threshold(ctx.session(request), value)

    threshold.input(cut, threshold, [info, ctx.shared["stream_image"]], show_progress="hidden",
                    trigger_mode="always_last", api_visibility="private")
    ctx.changed(threshold.release(cut_full, threshold, count, show_progress="hidden", api_name="set_threshold"))

    # --- parts
    def parts_update(session: Session, selected: str | None = None):
        """Choices for the part dropdown and the shown-parts boxes; the dropdown keeps the user's choice while
        that part exists."""
        names = part_choices(session)
        with session.lock:
            visible = [n for n in names if n not in session.hidden_parts]
        value = selected if selected in names else (names[0] if names else None)
        return gr.update(choices=names, value=value), gr.update(choices=names, value=visible)

    def do_cancel_task(request: gr.Request) -> None:
        ctx.link.cancel_mask_task(ctx.session(request))

    cancel_task.click(do_cancel_task, None, None, api_name="cancel_sam", concurrency_limit=None)

    def do_select_text(part_text: str, prompt: str, within: bool, sam: bool, request: gr.Request) -> str:
        """Queue a text selection on the engine thread; the count and progress show in the panel's summary."""
        session = ctx.session(request)
        try:
            ctx.masking.select_text(session, part_text, prompt, within_selection=bool(within),
                                    refine_with_sam=bool(sam))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return mask_summary(session)

    text_go.click(do_select_text, [text_part, text_prompt, text_within, text_sam], info, api_name="select_text")
    text_part.submit(do_select_text, [text_part, text_prompt, text_within, text_sam], info,
                     api_visibility="private")

    def do_select(name: str, request: gr.Request, op_value: str = "replace") -> int:
        session = ctx.session(request)
        if not name:
            raise gr.Error("choose a part first")
        try:
            return ctx.masking.select_part(session, name, op_value)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def do_add(name: str, request: gr.Request) -> int:
        return do_select(name, request, "add")

    ctx.changed(select_part.click(do_select, part, count, api_name="select_part"))
    ctx.changed(add_part.click(do_add, part, count, api_visibility="private"))

    def do_save_part(name: str, request: gr.Request):
        session = ctx.session(request)
        try:
            ctx.masking.save_part(session, name)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return (*parts_update(session, name.strip()), "")

    save_part.click(do_save_part, part_name, [part, shown, part_name], api_name="save_part")

    def do_delete(name: str, request: gr.Request):
        session = ctx.session(request)
        if not name:
            raise gr.Error("choose a part first")
        try:
            ctx.masking.delete_part(session, name)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return parts_update(session)

    ctx.changed(delete_part.click(do_delete, part, [part, shown], api_name="delete_part"))

    def do_show(names: list[str], request: gr.Request):
        ctx.masking.set_shown_parts(ctx.session(request), names)

    ctx.changed(shown.input(do_show, shown, None, show_progress="hidden", api_visibility="private"))

    # --- files
    def do_save_mask(request: gr.Request) -> list[str]:
        session = ctx.session(request)
        return [str(ctx.masking.save_mask(session, session.workspace / "exports" / "mask.npy"))]

    save_mask.click(do_save_mask, None, mask_file, api_name="save_mask")

    def do_save_parts(request: gr.Request) -> list[str]:
        session = ctx.session(request)
        try:
            return [str(p) for p in ctx.masking.save_parts(session, session.workspace / "exports" / "parts.npy")]
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    save_parts.click(do_save_parts, None, mask_file, api_name="save_parts")

    def do_load(paths: list[str] | None, request: gr.Request) -> int:
        session = ctx.session(request)
        if not paths:
            return session.selected_count()
        try:
            return ctx.masking.load_files(session, paths)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    ctx.changed(mask_file.upload(do_load, mask_file, count, api_name="load_mask"))

    ctx.shared["parts_update"] = parts_update
