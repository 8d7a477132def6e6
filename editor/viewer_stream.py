"""The view's splats as Viser scene nodes, grown a chunk at a time at the pace the browser draws them.

Why: Viser's client draws every splat it holds in every frame, and redraws at least once a second. In a browser
without a GPU (software WebGL) on a busy 2-core machine a frame of 60k splats takes 1-2 s, 20k about 0.5 s, and
while a frame is drawn the page does not answer — Gradio's controls included, they share its main thread. So the
view holds what the browser draws in about FRAME_TARGET_S: a small first chunk (the scene appears seconds after
the page opens), then one chunk more each time the browser has drawn the last one and its frame time leaves room
(every chunk, still one at a time, with "Full detail").

How the browser tells: Viser's client handles the server's messages at the start of a frame, a localStorage read
among them. Two reads in a row: the first is answered at the start of the frame that takes in everything sent
before it, the second at the start of the frame after that one — the time between is one frame drawn with it.

Nodes: one splat node per chunk of the detail order (viewer_lod.chunk_bounds) and one for the selected rows no
chunk holds; a node is sent again only when its bytes changed (a mask change re-tints the chunks holding rows
whose tint changed; a refinement sends only the new chunk).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import drawing
from .viewer_lod import DetailLevels, chunks_within

log = logging.getLogger(__name__)

FRAME_TARGET_S = 0.5  # a chunk more only while the browser's frame would stay under this: a click's answer waits
# for the page's main thread a few times (the click, the request, the answer's events), up to one frame each
SHRINK_FACTOR = 2.5  # a chunk less when a frame took this many times the target (the machine got busier)
ACK_TIMEOUT_S = 60.0  # a browser that does not answer in this long is not sent more
ACK_KEY = "splat-editor-frame"  # the localStorage key read to time a frame (its value does not matter)
SPLAT_BYTES = 32  # Viser's wire size of one splat (centre f32x3, reserved, covariance f16x6, rgba u8x4)
PART_NODE = "/scene_part"  # the selected rows that no chunk holds


PIECE_ROWS = 16_384  # a larger chunk is sent as spatial pieces of this many rows: a selection change re-tints
# the pieces around the part, not every row of a chunk (a chunk samples the whole scene)


def chunk_node(index: int, piece: int = 0) -> str:
    return f"/scene_{index}" if piece == 0 else f"/scene_{index}_{piece}"


def spatial_keys(means: Tensor) -> Tensor:  # [N, 3] -> [N] int64
    """A Morton (Z-order) code of each centre on a 1024^3 grid over the centres' box: near codes, near places."""
    lo, hi = means.min(dim=0).values, means.max(dim=0).values
    cells = ((means - lo) / (hi - lo).clamp(min=1e-12) * 1023).clamp(0, 1023).long()
    keys = torch.zeros(len(means), dtype=torch.long)
    for bit in range(10):
        for axis in range(3):
            keys |= ((cells[:, axis] >> bit) & 1) << (3 * bit + axis)
    return keys


def spatial_pieces(rows: Tensor, keys: Tensor, piece_rows: int = PIECE_ROWS) -> list[Tensor]:
    """`rows` [k] (ascending) cut into pieces of about `piece_rows` neighbouring rows (by `keys` [N], the scene's
    spatial_keys), each ascending; one piece when `rows` is not larger than that."""
    if len(rows) <= piece_rows:
        return [rows]
    count = -(-len(rows) // piece_rows)
    by_place = rows[torch.argsort(keys[rows], stable=True)]
    return [torch.sort(piece).values for piece in torch.tensor_split(by_place, count)]


def next_level(level: int, top: int, frame_s: float | None, shown: int, next_shown: int, *, full: bool,
               target: float = FRAME_TARGET_S) -> int:
    """The level (chunks held) after the browser drew `shown` splats in `frame_s` seconds (None: it did not
    answer). One chunk more (of `top`) when the frame with `next_shown` splats would take <= target (frame time
    taken as proportional to splats: a safe guess, a fixed cost per frame only makes it smaller), always when
    `full`; one less (never below 1) when this frame took more than SHRINK_FACTOR x target."""
    if frame_s is None:
        return level
    if level < top and (full or shown == 0 or frame_s * next_shown / shown <= target):
        return level + 1
    if not full and level > 1 and frame_s > SHRINK_FACTOR * target:
        return level - 1
    return level


class FramePacer:
    """Times one frame of every connected browser (the slowest counts), on a thread of its own, and hands the
    seconds (None: no browser answered) to `on_frame(token, seconds)`."""

    def __init__(self, server, on_frame: Callable[[int, float | None], None]) -> None:
        self._server = server
        self._on_frame = on_frame
        self._busy = threading.Lock()

    def measure(self, token: int) -> bool:
        """Start timing (False: a timing is still running; its answer will come)."""
        if not self._busy.acquire(blocking=False):
            return False
        threading.Thread(target=self._run, args=(token,), name="frame-pacer", daemon=True).start()
        return True

    def _run(self, token: int) -> None:
        slowest: float | None = None
        try:
            for client in list(self._server.get_clients().values()):
                try:
                    client.local_storage.get_item(ACK_KEY, timeout=ACK_TIMEOUT_S)  # the frame taking the news in
                    start = time.monotonic()
                    client.local_storage.get_item(ACK_KEY, timeout=ACK_TIMEOUT_S)  # the frame after it
                except Exception:  # noqa: BLE001 - gone or not answering: it is not sent more
                    log.debug("no frame timing from client %s", client.client_id, exc_info=True)
                    continue
                slowest = max(slowest or 0.0, time.monotonic() - start)
        finally:
            self._busy.release()
        self._on_frame(token, slowest)


class SplatNodes:
    """Named groups of scene rows as Viser splat nodes; `sync` sends a node only when its content changed."""

    def __init__(self, scene_api) -> None:
        self._api = scene_api
        self._sent: dict[str, tuple[object, drawing.SplatArrays]] = {}  # name -> (handle, arrays sent)
        self._geometry_scene = None  # the scene whose geometry is cached
        self._geometry: dict[str, tuple[Tensor, drawing.SplatArrays]] = {}  # name -> (rows, arrays)
        self._visible = True

    @property
    def held(self) -> int:
        """Splats the browser holds."""
        return sum(len(arrays.centers) for _, arrays in self._sent.values())

    def sync(self, scene, mask: Tensor | None, groups: dict[str, Tensor], *, tint: bool, visible: bool) -> int:
        """Make the nodes show `groups` (name -> [k] rows of `scene`, ascending; empty ones are dropped), with
        the mask as a tint when `tint`; returns the splats sent now."""
        if scene is not self._geometry_scene:
            self._geometry_scene, self._geometry = scene, {}
        for name in [n for n in self._sent if len(groups.get(n, ())) == 0]:
            self._sent.pop(name)[0].remove()
            self._geometry.pop(name, None)
        sent = 0
        for name, rows in groups.items():
            if len(rows) == 0:
                continue
            arrays = self._arrays(name, scene, rows, mask if tint else None)
            old = self._sent.get(name)
            if old is not None and _same(old[1], arrays):
                continue
            if old is not None and len(old[1].centers) == len(arrays.centers):
                handle = old[0]
                handle.set_gaussians(arrays.centers, arrays.covariances, arrays.rgbs, arrays.opacities)
            else:
                if old is not None:
                    old[0].remove()
                handle = self._api.add_gaussian_splats(name, arrays.centers, arrays.covariances, arrays.rgbs,
                                                       arrays.opacities, visible=self._visible)
            self._sent[name] = (handle, arrays)
            sent += len(rows)
        self.set_visible(visible)
        return sent

    def set_visible(self, visible: bool) -> None:
        if visible != self._visible:
            self._visible = visible
            for handle, _ in self._sent.values():
                handle.visible = visible

    def _arrays(self, name: str, scene, rows: Tensor, mask: Tensor | None) -> drawing.SplatArrays:
        """The node's arrays; the geometry is reused while the scene and the rows are the same (a mask change
        costs only the colours)."""
        cached = self._geometry.get(name)
        shown = scene.subset(rows)
        shown_mask = None if mask is None else mask[rows]
        if cached is not None and torch.equal(cached[0], rows):
            rgbs = drawing.display_colors(shown, shown_mask).float().cpu().numpy()
            return drawing.SplatArrays(cached[1].centers, cached[1].covariances, rgbs, cached[1].opacities)
        arrays = drawing.splat_arrays(shown, shown_mask, tint=shown_mask is not None)
        self._geometry[name] = (rows.clone(), arrays)
        return arrays


def _same(a: drawing.SplatArrays, b: drawing.SplatArrays) -> bool:
    return all(np.array_equal(x, y) for x, y in ((a.centers, b.centers), (a.rgbs, b.rgbs),
                                                  (a.opacities, b.opacities), (a.covariances, b.covariances)))


class SplatStream:
    """The view's level of detail over time: the first `level` chunks of the scene's detail order (viewer_lod),
    and the selected rows beyond them once a browser drew the first chunk; grown or shrunk by one chunk after
    each timed browser frame. Used on the viewer's update thread only."""

    def __init__(self, server, on_frame: Callable[[int, float | None], None]) -> None:
        self._server = server
        self._levels = DetailLevels()
        self._nodes = SplatNodes(server.scene)
        self._pacer = FramePacer(server, on_frame)
        self.level = 1  # chunks the view holds
        self.drawn = False  # a browser drew the first chunk: the selection's own node may follow
        self._timing = (0, 0)  # (token, splats held) of the frame timing asked for last
        self._top = 1
        self._settled = False  # the last timing kept the level: the browser draws no more in time
        self._keys_of: tuple[object, Tensor] | None = None  # (scene, spatial_keys) of the scene last cut

    def _keys(self, scene) -> Tensor:
        if self._keys_of is None or self._keys_of[0] is not scene:
            self._keys_of = (scene, spatial_keys(scene.means.detach().to("cpu", torch.float32)))
        return self._keys_of[1]

    def restart(self) -> None:
        """The next browser starts from the first chunk (what Viser replays to a page that connects)."""
        self.level, self.drawn, self._settled = 1, False, False

    def push(self, scene, mask, *, cap: int | None, full: bool, tint: bool, visible: bool, editing: bool,
             stats: dict) -> str:
        """Make the nodes hold the current level of `scene` (only changed nodes are sent), time a browser
        frame when the level could change; returns the "Showing X of Y" line."""
        self._levels.rows(scene, 0, None, keep_for_same_count=editing)  # this scene's detail order
        self._top = chunks_within(self._levels.bounds(cap), cap)
        self.level = max(1, min(self.level, self._top))
        chunks, part = self._levels.chunks(scene, self.level, cap, mask, keep_for_same_count=editing)
        # the selection's node first: rows it gives up to a new chunk leave it before the chunk arrives (never twice)
        groups = {PART_NODE: part if self.drawn else part[:0]}
        keys = self._keys(scene) if any(len(rows) > PIECE_ROWS for rows in chunks) else None
        for i, rows in enumerate(chunks):
            pieces = [rows] if keys is None else spatial_pieces(rows, keys)
            groups.update((chunk_node(i, j), piece) for j, piece in enumerate(pieces))
        sent = self._nodes.sync(scene, mask, groups, tint=tint, visible=visible)
        held = self._nodes.held
        if sent:
            stats["splat_updates"] += 1
            stats["splats_sent"] += sent
            stats["splat_bytes"] += SPLAT_BYTES * sent
        stats["splats_shown"], stats["level"] = held, self.level
        clients = bool(self._server.get_clients())
        if (sent or self.level < self._top or not self.drawn) and visible and clients:
            token = self._timing[0] + 1
            if self._pacer.measure(token):
                self._timing = (token, held)
        if held >= len(scene):
            return ""
        more = ""
        if self.level < self._top and clients:
            more = (" (what this browser draws smoothly; Full detail: every splat)" if self._settled
                    else " (more coming)")
        return f"Showing {held:,} of {len(scene):,} splats{more}"

    def paced(self, token: int, seconds: float | None, *, cap: int | None, full: bool, stats: dict) -> bool:
        """A browser frame took `seconds` (None: no answer) with the splats held when it was asked for; True
        when the level (or the selection's node) changed and the view must be pushed again."""
        if token != self._timing[0] or seconds is None:
            return False
        stats["frame_s"] = round(seconds, 3)
        bounds = self._levels.bounds(cap)
        top = chunks_within(bounds, cap)
        shown = self._timing[1]
        grow = bounds[min(self.level + 1, len(bounds) - 1)] - bounds[min(self.level, len(bounds) - 1)]
        level = next_level(self.level, top, seconds, shown, shown + grow, full=full)
        settled = level <= self.level
        if level == self.level and self.drawn and settled == self._settled:
            return False
        self.level, self.drawn, self._settled = level, True, settled
        return True
