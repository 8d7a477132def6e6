"""The editor app: `python app.py` serves the Gradio page (+ a Viser 3D viewer per session) on 127.0.0.1.

Heavy imports (torch, gradio, viser) happen inside `main`, after the arguments are parsed, so `--help` is
instant. Inside a Hugging Face Space (SPACE_ID set) or with --space the app uses one port only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Part-level, text-prompted editing of 3D Gaussian Splatting scenes (Gradio + Viser UI).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port of the Gradio page (default: 7860)")
    parser.add_argument(
        "--viser-port", type=int, default=8080,
        help="first port for the per-session Viser viewers (default: 8080; each session takes the next free one)",
    )
    parser.add_argument(
        "--share", action="store_true",
        help="create a public Gradio share link (opt-in; the 3D view then uses streamed renders, not Viser)",
    )
    parser.add_argument(
        "--space", action="store_true",
        help="Hugging Face Space mode: one port, streamed renders + 3D model view (automatic when SPACE_ID is set)",
    )
    parser.add_argument("--scene", type=Path, help="scene file opened in every new session (default: bundled scene)")
    parser.add_argument(
        "--model",
        help="guidance model: a hub id, a local diffusers directory, or closed-form:<colour> (offline demo)",
    )
    parser.add_argument(
        "--sam-checkpoint", type=Path, default=os.environ.get("SPLATEDIT_SAM") or None,
        help="SAM checkpoint (.pth, e.g. sam_vit_b_01ec64.pth) for the SAM click tool (default: $SPLATEDIT_SAM)",
    )
    parser.add_argument("--workspace", type=Path, default=Path("workspace"),
                        help="folder for uploads, exports and autosaves (default: ./workspace)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload in MB (default: 200)")
    parser.add_argument("--max-viewers", type=int, default=16,
                        help="most Viser viewers alive at once (default: 16); later sessions get streamed renders")
    return parser


def config_from_args(args: argparse.Namespace):
    from editor.config import AppConfig, running_in_space

    if args.port < 0 or args.viser_port < 0:
        raise ValueError("ports must be >= 0")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if args.scene is not None and not args.scene.is_file():
        raise ValueError(f"--scene {args.scene}: no such file")
    return AppConfig(
        host=args.host,
        port=args.port,
        viser_port=args.viser_port,
        share=args.share,
        space=args.space or running_in_space(),
        scene=args.scene,
        model=args.model,
        sam_checkpoint=args.sam_checkpoint,
        workspace=args.workspace,
        max_upload_mb=args.max_upload_mb,
        max_viewers=args.max_viewers,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from editor.page import launch

    launch(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
