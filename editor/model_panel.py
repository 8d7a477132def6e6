"""Model status: which guidance model this session edits with, whether it is loaded and from where.

When no diffusion model can be loaded (offline, no weights) the panel says so with the engine's instructions
and offers the closed-form prior (`closed-form:<colour>`: no weights; edits move the selected part toward the
colour) as an offline demo mode. Below the model it says which renderer draws and why (gsplat only where it was
found to work here, else our CPU rasterizer: engine/render/availability.py); in Space mode also what the GPU
function reported from its own process.
"""

from __future__ import annotations

import html

import gradio as gr

from .context import AppContext
from .session import Session


def status_markdown(status: dict) -> str:
    """status: {spec, state: available|not downloaded|loading|loaded|unavailable|error, source, message}."""
    spec, state = status.get("spec", "?"), status.get("state", "not loaded")
    icon = {"loaded": "🟢", "available": "🟢", "loading": "🟡", "not downloaded": "🟡", "unavailable": "🔴",
            "error": "🔴"}.get(state, "⚪")
    lines = [f"{icon} **{html.escape(spec)}** — {state}"]
    if status.get("source"):
        lines.append(f"from `{status['source']}`")
    if status.get("message"):
        lines.append("")
        lines.append(html.escape(status["message"]).replace("\n", "  \n"))
    if state in ("unavailable", "error", "not downloaded"):
        lines.append("")
        lines.append("**Offline demo:** choose a colour below and press *Use closed-form demo*; edits then move "
                     "the selected part toward that colour with the exact closed-form prior (no weights needed).")
    return "\n".join(lines)


def build_model_panel(ctx: AppContext) -> None:
    status = gr.Markdown(elem_id="model-status")
    with gr.Row():
        spec = gr.Textbox(label="Model (hub id, local folder, or closed-form:<colour>)", elem_id="model-spec",
                          scale=3)
        load = gr.Button("Use this model", elem_id="model-load", scale=1)
    with gr.Row():
        colour = gr.ColorPicker(value="#d02020", label="Demo colour", elem_id="model-colour")
        demo = gr.Button("Use closed-form demo (offline)", elem_id="model-demo", variant="secondary")
    ctx.shared.update(model_status=status, model_spec=spec)

    def describe(session: Session):
        from .runners.gpu_calls import renderer_report

        text = status_markdown(ctx.models.status(session)) + "\n\n" + renderer_report(bool(ctx.config.space))
        return text, ctx.models.spec_for(session)

    def use_model(value: str, request: gr.Request):
        session = ctx.session(request)
        try:
            ctx.models.choose(session, value)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return (*describe(session), ctx.shared["edit_model_text"](session))

    def use_demo(value: str, request: gr.Request):
        return use_model(f"closed-form:{value}", request)

    outputs = [status, spec, ctx.shared["edit_model"]]
    load.click(use_model, spec, outputs, api_name="set_model")
    demo.click(use_demo, colour, outputs, api_name="use_demo")
    ctx.shared["describe_model"] = describe
