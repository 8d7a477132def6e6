"""Render a few moving Gaussians in front of, among and behind many frozen ones, redrawing only their tiles.

An edit renders the same scene from a fixed set of views step after step, and only its part (a few thousand
rows) changes; the rest of a real capture (up to millions of rows) never does. `FrozenView` draws the frozen
rows once per camera with the CPU backend and keeps, per 16x16 tile, their depth-sorted list, the picture and
the transmittance. `render_over_frozen` then projects and shades the part only, merges the part's entries into
the lists of the tiles its footprint touches, composites those tiles again, and copies every other pixel from
the frozen picture. The result is the picture (and the part's gradients) of a full render of
`frozen + part` (frozen rows first, the edit's row order) bit for bit:
- each row's projection, colour and tile box depend on that row alone; each tile's list in a full render is
  its rows sorted by (float32 depth, row), so a frozen-first merge rebuilds it exactly;
- a tile the part does not touch has the frozen list alone: the frozen picture is that tile's pixels;
- a frozen tile list keeps only its live entries: those that reach a pixel not yet done (transmittance
  <= 1e-4) when the frozen rows alone are composited. Gaussians put in front can only lower the
  transmittance, so a pixel ends there or earlier whatever the part does, and the other entries can never
  change a pixel (tests/render/test_frozen_view.py).
Memory: a view keeps lists only for the tiles the part may reach (its region's silhouette and a tile around it,
grown when the part reaches further), their live entries only: not every frozen row in its frustum.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..camera import Cameras
from ..scene import PARAM_NAMES, GaussianScene
from . import _cpu_kernels as K
from . import _finish
from .cpu import Tiles, _grad_or_zeros, _np, _parallel, interleaved, project_fast, raster_args, sh_colors_fast
from .culling import reaching
from .types import RenderOutput


@njit(cache=True, nogil=True)
def _merge_lists(touched, f_offsets, f_ids, f_keys, p_offsets, p_ids, p_keys, n_frozen, offsets, ids):
    """For each touched tile t, ids[offsets[t]:offsets[t+1]] = its frozen list merged with its part list by
    depth, a frozen entry first on equal depth (it has the lower row); part rows are numbered after the
    n_frozen frozen ones."""
    for t in touched:
        i, i_end = f_offsets[t], f_offsets[t + 1]
        j, j_end = p_offsets[t], p_offsets[t + 1]
        o = offsets[t]
        while i < i_end or j < j_end:
            if j >= j_end or (i < i_end and f_keys[f_ids[i]] <= p_keys[p_ids[j]]):
                ids[o] = f_ids[i]
                i += 1
            else:
                ids[o] = n_frozen + p_ids[j]
                j += 1
            o += 1


def _grown(grid: np.ndarray) -> np.ndarray:  # [TH, TW] bool
    """The tiles of `grid` and their eight neighbours."""
    rows = grid.copy()
    rows[1:] |= grid[:-1]
    rows[:-1] |= grid[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def tiles_under(mask: Tensor) -> np.ndarray:  # [H, W] -> [tiles_h * tiles_w] bool
    """The tiles where `mask` is non-zero, and their neighbours: where a part inside a region whose silhouette
    is `mask` can reach (a first guess for `FrozenView(allowed=...)`; `ensure` corrects it)."""
    H, W = mask.shape[:2]
    th, tw = -(-H // K.TILE_SIZE), -(-W // K.TILE_SIZE)
    padded = np.zeros((th * K.TILE_SIZE, tw * K.TILE_SIZE), np.bool_)
    padded[:H, :W] = _np(mask.reshape(H, W) > 0)
    grid = padded.reshape(th, K.TILE_SIZE, tw, K.TILE_SIZE).any(axis=(1, 3))
    return _grown(grid).reshape(-1)


@njit(cache=True, nogil=True, fastmath=K.FASTMATH)
def _live_entries(tiles, means2d, conics, opac, spans, offsets, ids, width, height, tiles_w, tiles_h, pxs, pys,
                  consts, live):
    """live[k] = True for the list entries k of `tiles` that reach (alpha >= 1/255) a pixel not yet done when
    the frozen rows alone are composited: the forward of rasterize_fwd without colours. Rows composited in
    front only end pixels earlier, so no other entry can ever change a pixel. Conservative on purpose: a pixel
    counts as done only at half the transmittance threshold, and alpha is compared with 0.99 of the
    threshold, so float rounding can only keep more."""
    max_alpha = consts[K.C_MAX_ALPHA]
    thr = consts[K.C_ALPHA_THR]
    t_done = consts[K.C_T_EPS] * consts[K.C_HALF]
    loose = thr * np.float32(0.99)
    one = consts[K.C_ONE]
    half = consts[K.C_HALF]
    zero = consts[K.C_ZERO]
    sigma_max = consts[K.C_SIGMA_MAX]
    T = np.empty((K.TILE_SIZE, K.TILE_SIZE), pxs.dtype)
    done = np.empty((K.TILE_SIZE, K.TILE_SIZE), np.bool_)
    c0s = np.empty(K.TILE_SIZE, np.int64)
    c1s = np.empty(K.TILE_SIZE, np.int64)
    for t in tiles:
        cam, x0, y0, x1, y1 = K._tile_box(t, tiles_w, tiles_h, width, height)
        T[:] = one
        done[:] = False
        left = (y1 - y0) * (x1 - x0)
        for k in range(offsets[t], offsets[t + 1]):
            if left == 0:
                break
            g = ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            a = conics[g, 0]
            b = conics[g, 1]
            cc = conics[g, 2]
            o = opac[g]
            sp = spans[g]
            r0, r1 = K._rows(np.float64(my), sp, y0, y1)
            K._row_spans(np.float64(mx), my, np.float64(b), sp, y0, r0, r1, x0, x1, pys, c0s, c1s)
            for li in range(r0 - y0, r1 - y0):
                dy = my - pys[y0 + li]
                for lj in range(c0s[li] - x0, max(c0s[li], c1s[li]) - x0):
                    if done[li, lj]:
                        continue
                    dx = mx - pxs[x0 + lj]
                    sigma = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    alpha = min(max_alpha, o * K.fexp(-min(max(sigma, zero), sigma_max)))
                    if alpha < loose:
                        continue
                    live[k] = True
                    if sigma < zero or alpha < thr:
                        continue
                    nT = T[li, lj] * (one - alpha)
                    if nT <= t_done:
                        done[li, lj] = True
                        left -= 1
                    else:
                        T[li, lj] = nT


class FrozenView:
    """The frozen rows of a scene drawn once from one camera (CPU backend): the picture without background and,
    for the tiles in `allowed` (the tiles a part may touch; None: all), each tile's depth-sorted list (cut
    where the tile's pixels were all done) and the projected rows those lists use. The frozen rows are
    `rows` [N] bool of `scene` (None: all of them), read from it in place: an edit's frozen rows are its
    input minus the part, and a copy of them would be a second whole scene.

    A part that reaches a tile outside `allowed` extends it (`ensure`: the frozen rows are drawn again), so
    the lists are always right and only as large as the part's reach."""

    def __init__(self, scene: GaussianScene, camera: Cameras, sh_degree: int,
                 allowed: np.ndarray | None = None,  # [tiles_h * tiles_w] bool
                 rows: Tensor | None = None) -> None:  # [N] bool
        if len(camera) != 1:
            raise ValueError(f"a FrozenView is one camera, got {len(camera)}")
        if scene.device.type != "cpu":
            raise ValueError(f"a FrozenView is drawn on the CPU, got a scene on {scene.device}")
        if rows is not None and tuple(rows.shape) != (len(scene),):
            raise ValueError(f"rows must be [{len(scene)}] bool, got {list(rows.shape)}")
        self.scene, self.frozen_rows, self.camera, self.sh_degree = scene, rows, camera, int(sh_degree)
        self.width, self.height = int(camera.width), int(camera.height)
        self.tiles_w, self.tiles_h = -(-self.width // K.TILE_SIZE), -(-self.height // K.TILE_SIZE)
        n_tiles = self.tiles_w * self.tiles_h
        self.allowed = np.ones(n_tiles, np.bool_) if allowed is None else np.asarray(allowed, np.bool_).copy()
        if self.allowed.shape != (n_tiles,):
            raise ValueError(f"allowed must be [{n_tiles}] tiles, got {list(self.allowed.shape)}")
        self._draw()

    def _in_view(self) -> Tensor | None:  # [K] sorted rows of `scene`, or None: every row
        """The frozen rows that can show in the camera (engine/render/culling.py's test, row by row)."""
        scene = self.scene
        if not len(scene):
            return None
        keep = reaching(scene.means, scene.scales, scene.opacities, self.camera)
        if self.frozen_rows is not None:
            keep &= self.frozen_rows.to(keep.device)
        return None if bool(keep.all()) else keep.nonzero().flatten()

    def _draw(self) -> None:
        frozen, camera = self.scene, self.camera
        with torch.no_grad():
            keep = self._in_view()
            if keep is not None:
                frozen = GaussianScene.trusted(**{name: t[keep] for name, t in frozen.items()})
            proj = project_fast(frozen, camera)
            colours = sh_colors_fast(frozen, camera, self.sh_degree, proj.radii)
            feats = torch.cat([colours, proj.depths[..., None].to(colours.dtype)], dim=-1).to(frozen.dtype)
            tiles = Tiles(proj.means2d, proj.radii, proj.depths, self.width, self.height)
        dt = _np(feats[:0]).dtype
        rows = (_np(proj.means2d[0], dt), _np(proj.conics[0], dt), _np(proj.opacities[0], dt), _np(feats[0]))
        args = raster_args(*rows, tiles.offsets, tiles.ids, self.width, self.height, self.tiles_w, self.tiles_h)
        F = rows[3].shape[1]
        out = np.zeros((1, self.height, self.width, F), dt)
        T_final = np.ones((1, self.height, self.width), dt)
        last = np.full((1, self.height, self.width), -1, np.int32)
        _parallel(K.rasterize_fwd, [(t, *args, out, T_final, last) for t in tiles.task_tiles])
        self.out, self.T_final = out, T_final  # [1, H, W, F] (colour, depth), [1, H, W]
        # the allowed tiles' live entries (in list order), renumbered onto the rows they use
        live = np.zeros(len(tiles.ids), np.bool_)
        wanted = interleaved(np.flatnonzero(self.allowed).astype(np.int64))
        _parallel(_live_entries, [(t, *args[:3], *args[4:], live) for t in wanted])  # args[3]: colours, unused
        tile_of = np.repeat(np.arange(len(tiles.offsets) - 1), np.diff(tiles.offsets))
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(tile_of[live], minlength=len(self.allowed)))])
        used, local = np.unique(tiles.ids[live], return_inverse=True)
        self.ids = local.astype(np.int32)
        self.rows = tuple(np.ascontiguousarray(r[used]) for r in rows)  # means2d, conics, opacities, feats
        self.keys = _np(proj.depths[0, used], np.float32)  # the sort key, float32 as in Tiles

    def ensure(self, tiles: np.ndarray) -> None:  # [K] tile numbers a part touches
        """Keep the lists of these tiles too (drawing the frozen rows again, with a one-tile border, when one
        is missing)."""
        missing = tiles[~self.allowed[tiles]]
        if missing.size == 0:
            return
        grid = np.zeros((self.tiles_h, self.tiles_w), np.bool_)
        grid.flat[missing] = True
        self.allowed |= _grown(grid).reshape(-1)
        self._draw()

    @property
    def num_rows(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Memory this view holds."""
        arrays = (self.out, self.T_final, self.offsets, self.ids, self.keys, self.allowed, *self.rows)
        return int(sum(a.nbytes for a in arrays))


class PartTiles:
    """The part's own tile lists in one camera (gsplat's rule, front to back) and the tiles it touches."""

    def __init__(self, means2d: Tensor, radii: Tensor, depths: Tensor, tiles_w: int, tiles_h: int) -> None:
        rect, counts = K.tile_rects(_np(means2d[None], np.float32), _np(radii[None]), tiles_w, tiles_h)
        self.offsets = np.cumsum(counts)
        self.keys = _np(depths, np.float32)
        visible = np.flatnonzero((_np(radii) > 0).all(axis=-1))
        order = visible[K.argsort_depths(self.keys[visible].view(np.uint32))]
        self.ids = np.empty(int(self.offsets[-1]), np.int32)
        K.tile_fill(rect, order, self.offsets[:-1].copy(), tiles_w, tiles_h, 0, tiles_h, self.ids)
        self.counts = np.diff(self.offsets)
        self.touched = np.flatnonzero(self.counts > 0).astype(np.int64)


class _OverFrozen(torch.autograd.Function):
    """(part means2d [P,2], conics [P,3], opacities [P], feats [P,F]) of one camera -> (out [H,W,F],
    alpha [H,W,1]) of the frozen view with the part composited in; gradients to the part's rows only."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor, view: FrozenView,
                part: PartTiles):
        dt = view.rows[3].dtype
        merged = np.where(part.counts > 0, part.counts + np.diff(view.offsets), 0)
        offsets = np.concatenate([[0], np.cumsum(merged)]).astype(np.int64)
        ids = np.empty(int(offsets[-1]), np.int32)
        R = view.num_rows
        _merge_lists(part.touched, view.offsets, view.ids, view.keys, part.offsets, part.ids, part.keys, R,
                     offsets, ids)
        rows = (_np(means2d, dt), _np(conics, dt), _np(opacities, dt), _np(feats, dt))
        rows = [np.concatenate([f, p]) for f, p in zip(view.rows, rows)]
        args = raster_args(*rows, offsets, ids, view.width, view.height, view.tiles_w, view.tiles_h)
        out, T_final = view.out.copy(), view.T_final.copy()
        last = np.full(T_final.shape, -1, np.int32)
        # the full render's tile sets per task, restricted to the touched tiles: the part's gradients are summed
        # in the same order, so they are the full render's bit for bit (one camera per render)
        touched = part.counts > 0
        tasks = [t[touched[t]] for t in interleaved(np.arange(len(touched), dtype=np.int64))]
        _parallel(K.rasterize_fwd, [(t, *args, out, T_final, last) for t in tasks])
        ctx.args, ctx.tasks, ctx.T_final, ctx.last, ctx.num = args, tasks, T_final, last, (R, len(part.keys))
        return torch.from_numpy(out[0]), 1.0 - torch.from_numpy(T_final[0])[..., None]

    @staticmethod
    def backward(ctx, v_out: Tensor | None, v_alpha: Tensor | None):
        R, P = ctx.num
        feats = ctx.args[3]
        dt, F = feats.dtype, feats.shape[1]
        H, W = ctx.T_final.shape[1:]
        v_out = _grad_or_zeros(None if v_out is None else v_out[None], (1, H, W, F), dt)
        v_alpha = _grad_or_zeros(None if v_alpha is None else v_alpha[None, ..., 0], (1, H, W), dt)
        grads = np.zeros((len(ctx.tasks), P, K.G_FEAT + F), dt)
        _parallel(K.rasterize_bwd, [(t, *ctx.args, ctx.T_final, ctx.last, v_out, v_alpha, grads[i], R)
                                    for i, t in enumerate(ctx.tasks)])
        g = torch.from_numpy(grads.sum(axis=0))
        return g[:, K.G_MX : K.G_MY + 1], g[:, K.G_A : K.G_C + 1], g[:, K.G_O], g[:, K.G_FEAT :], None, None


def render_over_frozen(
    views: list[FrozenView],  # one per camera, built from the same frozen rows
    part: dict[str, Tensor],  # the moving rows (GaussianScene's parameters, each [P, ...]; may require grad)
    background: Tensor | tuple | None = None,
) -> RenderOutput:
    """The render of frozen + part from the views' cameras (engine.render.render's contract, CPU backend),
    drawing only the tiles the part touches. meta's radii and means2d [C, P, ...] are the part's rows only."""
    scene = GaussianScene.trusted(**{name: part[name] for name in PARAM_NAMES})
    cameras = Cameras.concat([v.camera for v in views]) if len(views) > 1 else views[0].camera
    cameras = cameras.to(scene.device, scene.dtype)
    proj = project_fast(scene, cameras)
    colours = sh_colors_fast(scene, cameras, views[0].sh_degree, proj.radii)
    feats = torch.cat([colours, proj.depths[..., None].to(colours.dtype)], dim=-1).to(scene.dtype)
    outs, alphas = [], []
    for c, view in enumerate(views):
        tiles = PartTiles(proj.means2d[c], proj.radii[c], proj.depths[c], view.tiles_w, view.tiles_h)
        view.ensure(tiles.touched)
        out, alpha = _OverFrozen.apply(proj.means2d[c], proj.conics[c], proj.opacities[c], feats[c], view, tiles)
        outs.append(out)
        alphas.append(alpha)
    out, alpha = torch.stack(outs), torch.stack(alphas)
    return _finish(out[..., :-1], alpha, out[..., -1:], background,
                   {"radii": proj.radii, "means2d": proj.means2d, "backend": "torch-frozen-view"})
