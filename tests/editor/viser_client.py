"""A minimal Viser websocket client for tests: it speaks the real wire protocol to a real ViserServer.

It connects like the browser client (subprotocol `viser-v<version>`), can send a camera pose and pointer
events (exactly the messages the web client sends), and records every message the server sends, decoded. It
answers localStorage reads at once (a browser that draws instantly; the viewer times frames with them) unless
`answer_reads` is False.
"""

from __future__ import annotations

import asyncio
import threading
import time

import msgspec
import numpy as np
import viser
import zstandard
from viser import _messages


def decode_frame(raw: bytes) -> list[dict]:
    """Server -> client frame: [u64 raw size][u64 compressed size][zstd msgpack][padding][binary buffers]."""
    raw_size = int.from_bytes(raw[0:8], "little")
    comp_size = int.from_bytes(raw[8:16], "little")
    inner = zstandard.ZstdDecompressor().decompress(raw[16 : 16 + comp_size], max_output_size=raw_size)
    payload = msgspec.msgpack.decode(inner)
    offset = 16 + comp_size
    offset += (-offset) % 8
    buffers = []
    for length in payload["binaryBufferLengths"]:
        buffers.append(raw[offset : offset + length])
        offset += length
        offset += (-offset) % 8
    messages = payload["messages"]
    for m in messages:
        m["_binary"] = buffers
    return messages


class ViserTestClient:
    """Connects to ws://host:port in a background thread; `messages` collects what the server sent."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, answer_reads: bool = True) -> None:
        self.url = f"ws://{host}:{port}"
        self.answer_reads = answer_reads
        self.messages: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._ws = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"could not connect to {self.url}")

    def _run(self) -> None:
        import websockets

        async def main() -> None:
            async with websockets.connect(
                self.url, subprotocols=[f"viser-v{viser.__version__}"], max_size=None
            ) as ws:
                self._ws = ws
                self._ready.set()
                try:
                    async for raw in ws:
                        messages = decode_frame(raw)
                        self.messages.extend(messages)
                        await self.answer(ws, messages)
                except Exception:  # noqa: BLE001 - connection closed by close()
                    pass

        self._loop.run_until_complete(main())

    async def answer(self, ws, messages: list[dict]) -> None:
        """Answer the localStorage reads among `messages` (with no value) as the browser client does."""
        for m in messages:
            if self.answer_reads and m.get("type") == "LocalStorageGetItemRequestMessage":
                reply = _messages.LocalStorageGetItemResponseMessage(None, None, m["request_uuid"])
                await ws.send(msgspec.msgpack.encode(reply.as_serializable_dict()))

    def send(self, message: _messages.Message) -> None:
        data = msgspec.msgpack.encode(message.as_serializable_dict())
        asyncio.run_coroutine_threadsafe(self._ws.send(data), self._loop).result(5)

    def send_camera(self, wxyz, position, *, fov: float = 0.9, width: int = 320, height: int = 240) -> None:
        position = tuple(float(v) for v in position)
        self.send(
            _messages.ViewerCameraMessage(
                wxyz=tuple(float(v) for v in wxyz), position=position, fov=fov, near=0.01, far=1000.0,
                image_height=height, image_width=width, look_at=(0.0, 0.0, 0.0), up_direction=(0.0, 0.0, 1.0),
            )
        )

    def click(self, ray_origin, ray_direction, screen_pos) -> None:
        self.send(
            _messages.ScenePointerMessage(
                event_type="click", ray_origin=tuple(map(float, ray_origin)),
                ray_direction=tuple(map(float, ray_direction)), screen_pos=(tuple(map(float, screen_pos)),),
                modifier=None,
            )
        )

    def rect(self, screen_min, screen_max) -> None:
        self.send(
            _messages.ScenePointerMessage(
                event_type="rect-select", ray_origin=None, ray_direction=None,
                screen_pos=(tuple(map(float, screen_min)), tuple(map(float, screen_max))), modifier=None,
            )
        )

    def set_gui_value(self, handle, value) -> None:
        """What the browser sends when the user changes a GUI input (checkbox, slider...)."""
        self.send(_messages.GuiUpdateMessage(handle._impl.uuid, {"value": value}))

    def of_type(self, type_name: str) -> list[dict]:
        return [m for m in list(self.messages) if m.get("type") == type_name]

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            empty = isinstance(result, (list, tuple, dict, set)) and not result
            if result is not None and result is not False and not empty:
                return result
            time.sleep(0.02)
        raise TimeoutError("condition not met in time")

    def close(self) -> None:
        if self._ws is not None:
            future = asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop)
            try:
                future.result(2)
            except Exception:  # noqa: BLE001 - the server may already be gone
                pass
        self._thread.join(2)


def splat_buffer(message: dict) -> np.ndarray:
    """The uint32 [N, 8] buffer of a GaussianSplatsMessage (or a props update carrying `buffer`)."""
    props = message.get("props") or message.get("updates") or {}
    placeholder = props["buffer"]
    data = message["_binary"][placeholder["__binary_index"]] if isinstance(placeholder, dict) else placeholder
    return np.frombuffer(data, dtype=np.uint32).reshape(-1, 8)
