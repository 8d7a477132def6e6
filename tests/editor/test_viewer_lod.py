"""The browser's level of detail: the budget holds, the selection is always in, the choice is deterministic and
prefers the Gaussians that cover the most screen."""

import pytest
import torch

from editor.viewer_lod import (DetailLevels, choose_rows, chunk_bounds, chunks_within, detail_order, row_uniforms,
                               splat_importance)
from engine.scene import random_scene


def _scene(n=2000, seed=0):
    return random_scene(n, seed=seed, extent=1.0)


def test_budget_is_respected_and_rows_are_distinct():
    scene = _scene()
    order = detail_order(splat_importance(scene))
    rows = choose_rows(order, 300, len(scene))
    assert len(rows) == 300 and len(torch.unique(rows)) == 300
    assert torch.equal(rows, torch.sort(rows).values)
    assert torch.equal(choose_rows(order, None, len(scene)), torch.sort(order).values)  # no budget: all drawable


def test_selected_rows_are_always_included():
    scene = _scene()
    order = detail_order(splat_importance(scene))
    mask = torch.zeros(len(scene))
    least = order[-150:]  # the rows the order would send last
    mask[least] = 1.0
    mask[order[:5]] = 0.3  # weak weights get no guarantee (and do not count against the budget)
    rows = choose_rows(order, 400, len(scene), mask)
    assert len(rows) == 400
    assert torch.isin(least, rows).all()
    big = choose_rows(order, 100, len(scene), mask)  # a selection larger than the budget is still sent whole
    assert torch.equal(big, torch.sort(least).values)


def test_choice_is_deterministic_and_nested():
    scene = _scene(seed=1)
    a = detail_order(splat_importance(scene))
    b = detail_order(splat_importance(scene.clone()))
    assert torch.equal(a, b)
    small, large = choose_rows(a, 200, len(scene)), choose_rows(a, 800, len(scene))
    assert torch.isin(small, large).all()  # coarse-to-fine refinement only adds splats


def test_order_prefers_important_rows():
    scene = _scene(4000, seed=2)
    big = torch.arange(4000) % 10 == 0  # 10% of the rows cover 100x the area (log-scales + ln 10 on every axis)
    scales = scene.scales.clone()
    scales[:] = -3.0
    scales[big] += 2.302585
    scene = scene.replace(scales=scales, opacities=torch.zeros(4000))
    importance = splat_importance(scene)
    assert torch.allclose(importance[big] / importance[~big].mean(), torch.tensor(100.0, dtype=torch.float64))
    rows = choose_rows(detail_order(importance), 1000, len(scene))
    chosen = torch.zeros(len(scene), dtype=torch.bool)
    chosen[rows] = True
    # a sample drawn in proportion to importance: nearly every big row, and the rest of the budget at random
    assert chosen[big].float().mean() > 0.9 and chosen[~big].float().mean() < 0.25
    small_chosen = chosen & ~big
    assert 0.3 < (torch.nonzero(small_chosen).float().mean() / 4000) < 0.7  # spread over the rows, not a block


def test_transparent_rows_are_never_sent():
    scene = _scene(500, seed=3)
    hidden = torch.arange(500) < 100
    scene = scene.replace(opacities=torch.where(hidden, torch.full_like(scene.opacities, -30.0), scene.opacities))
    order = detail_order(splat_importance(scene))
    assert len(order) == 400 and not hidden[order].any()
    mask = hidden.float()  # selected but hidden: still not sent
    assert not hidden[choose_rows(order, 50, 500, mask)].any()


def test_row_uniforms_are_fixed_per_index():
    u = row_uniforms(1000)
    assert ((u > 0) & (u < 1)).all() and abs(u.mean() - 0.5) < 0.05
    assert (row_uniforms(10) == u[:10]).all()


def test_levels_keep_the_order_while_the_scene_is_the_same():
    scene = _scene(1000, seed=4)
    levels = DetailLevels()
    first = levels.rows(scene, 100)
    mask = torch.zeros(1000)
    mask[:30] = 1.0
    with_mask = levels.rows(scene, 100, mask)
    assert torch.isin(torch.arange(30), with_mask).all() and len(with_mask) == 100
    assert torch.isin(with_mask[~torch.isin(with_mask, torch.arange(30))], first).all()


def _held_centers(client, splat_buffer):
    """Centres [k, 3] of every splat node the client holds now (creations, updates and removals applied)."""
    import numpy as np

    held = {}
    for m in list(client.messages):
        if m.get("type") == "GaussianSplatsMessage":
            held[m["name"]] = splat_buffer(m)
        elif m.get("type") == "SceneNodeUpdateMessage" and "buffer" in (m.get("updates") or {}):
            held[m["name"]] = splat_buffer(m)
        elif m.get("type") == "RemoveSceneNodeMessage":
            held.pop(m["name"], None)
    return held, (np.concatenate([b[:, 0:3].copy().view(np.float32) for b in held.values()])
                  if held else np.zeros((0, 3), np.float32))


def test_viewer_sends_a_first_chunk_then_grows_as_the_browser_draws_and_full_on_request(monkeypatch):
    """Against a real ViserServer and a wire-protocol client: the first chunk alone, then (the client answers
    the frame timings at once: a fast browser) one chunk per timing up to the budget with the selection in full,
    no splat twice; "Full detail" grows to every splat."""
    import numpy as np

    from editor import viewer_lod
    from editor.viewer import SessionViewer
    from tests.editor.viser_client import ViserTestClient, splat_buffer

    monkeypatch.setattr(viewer_lod, "FIRST_SPLATS", 20)
    viewer = SessionViewer(port=0, splat_budget=100)
    client = ViserTestClient(viewer.port)
    try:
        client.send_camera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -3.0))  # a browser is "connected" once it sent one
        client.wait_for(lambda: viewer.server.get_clients())
        scene = _scene(300, seed=5)
        mask = torch.zeros(300)
        mask[250:] = 1.0
        viewer.show(scene, mask)
        client.wait_for(lambda: len(_held_centers(client, splat_buffer)[1]) >= 100 + 1)
        first = client.of_type("GaussianSplatsMessage")[0]
        assert first["name"] == "/scene_0" and splat_buffer(first).shape[0] == 20  # the first chunk alone
        # chunks of 20, 20, 20, 30, 10 (the budget is a boundary) and the selection
        client.wait_for(lambda: viewer.stats["level"] == 5 and len(_held_centers(client, splat_buffer)[0]) == 6)
        held, centers = _held_centers(client, splat_buffer)
        rows = [int(np.flatnonzero(np.abs(scene.means.numpy() - c).sum(axis=1) == 0)[0]) for c in centers]
        assert len(set(rows)) == len(rows)  # no splat twice
        assert set(range(250, 300)) <= set(rows)  # every selected splat
        assert len(set(rows) - set(range(250, 300))) <= 100 and len(rows) >= 100
        viewer.full_detail_checkbox.value = True
        client.wait_for(lambda: len(_held_centers(client, splat_buffer)[1]) == 300)
        client.wait_for(lambda: viewer.stats["splats_shown"] == 300)
    finally:
        client.close()
        viewer.close()


def test_a_browser_that_does_not_answer_gets_the_first_chunk_only(monkeypatch):
    import time

    from editor import viewer_lod
    from editor.viewer import SessionViewer
    from tests.editor.viser_client import ViserTestClient, splat_buffer

    monkeypatch.setattr(viewer_lod, "FIRST_SPLATS", 20)
    viewer = SessionViewer(port=0, splat_budget=100)
    client = ViserTestClient(viewer.port, answer_reads=False)
    try:
        client.send_camera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -3.0))
        client.wait_for(lambda: viewer.server.get_clients())
        mask = torch.zeros(300)
        mask[250:] = 1.0
        viewer.show(_scene(300, seed=5), mask)
        client.wait_for(lambda: client.of_type("LocalStorageGetItemRequestMessage"))
        time.sleep(0.5)
        held, _ = _held_centers(client, splat_buffer)
        assert list(held) == ["/scene_0"] and held["/scene_0"].shape[0] == 20
    finally:
        client.close()
        viewer.close()


def test_levels_reuse_the_order_of_an_equally_important_copy_and_follow_a_changed_one():
    scene = _scene(600, seed=6)
    levels = DetailLevels()
    levels.rows(scene, 100)
    order = levels._order
    hidden = torch.arange(600) < 200
    opacities = torch.where(hidden, torch.full_like(scene.opacities, -30.0), scene.opacities)
    copy = scene.replace(opacities=scene.opacities.clone())  # a new object, the same values
    levels.rows(copy, 100)
    assert levels._order is order
    rows = levels.rows(scene.replace(opacities=opacities), 100)  # parts hidden: a new order without them
    assert levels._order is not order and not hidden[rows].any()


def test_chunks_grow_geometrically_and_the_budget_is_a_boundary():
    bounds = chunk_bounds(1000, 300, first=50, growth=1.5)
    assert bounds[0] == 0 and bounds[-1] == 1000 and bounds == sorted(set(bounds))
    assert 300 in bounds and chunks_within(bounds, 300) == bounds.index(300)
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    assert sizes[0] == 50 and max(sizes) > 50 * 2  # later chunks are larger
    assert chunks_within(bounds, None) == len(bounds) - 1
    with pytest.raises(ValueError):
        chunk_bounds(10, first=0)


def test_level_chunks_are_prefixes_of_the_order_and_the_selection_beyond_them_comes_apart(monkeypatch):
    from editor import viewer_lod

    monkeypatch.setattr(viewer_lod, "FIRST_SPLATS", 50)
    scene = _scene(600, seed=8)
    levels = DetailLevels()
    mask = torch.zeros(600)
    mask[:40] = 1.0
    chunks, part = levels.chunks(scene, 2, None, mask)
    order = levels._order
    bounds = levels.bounds(None)
    held = torch.cat(chunks)
    assert torch.equal(torch.sort(held).values, torch.sort(order[:bounds[2]]).values)
    assert not torch.isin(part, held).any()  # never twice
    assert torch.equal(torch.sort(torch.cat([held, part])[mask[torch.cat([held, part])] > 0]).values,
                       torch.arange(40))  # the whole selection
    same_chunks, _ = levels.chunks(scene, 2, None, torch.zeros(600))  # a mask change keeps the chunks
    assert all(torch.equal(a, b) for a, b in zip(chunks, same_chunks))


def test_large_chunks_go_as_spatial_pieces_so_a_local_selection_change_resends_few():
    """SplatNodes against a recording scene API: a selection change inside one region re-sends only the
    pieces that hold re-tinted rows."""
    import numpy as np

    from editor.viewer_stream import SplatNodes, spatial_keys, spatial_pieces

    class Handle:
        def __init__(self, log, name):
            self.log, self.name, self.visible = log, name, True

        def set_gaussians(self, *arrays):
            self.log.append(self.name)

        def remove(self):
            pass

    class Api:
        def __init__(self):
            self.log = []

        def add_gaussian_splats(self, name, *arrays, visible=True):
            self.log.append(name)
            return Handle(self.log, name)

    scene = _scene(4000, seed=9)
    keys = spatial_keys(scene.means)
    rows = torch.arange(4000)
    pieces = spatial_pieces(rows, keys, 500)
    assert len(pieces) == 8 and torch.equal(torch.sort(torch.cat(pieces)).values, rows)
    corner = torch.nonzero((scene.means < scene.means.median(dim=0).values).all(dim=1)).flatten()[:40]
    api = Api()
    nodes = SplatNodes(api)
    groups = {f"/p{j}": piece for j, piece in enumerate(pieces)}
    nodes.sync(scene, torch.zeros(4000), groups, tint=True, visible=True)
    assert len(api.log) == 8
    mask = torch.zeros(4000)
    mask[corner] = 1.0
    api.log.clear()
    nodes.sync(scene, mask, groups, tint=True, visible=True)
    touched = {f"/p{j}" for j, piece in enumerate(pieces) if np.isin(corner.numpy(), piece.numpy()).any()}
    assert set(api.log) == touched and len(touched) <= 4  # the corner's pieces only
    api.log.clear()
    nodes.sync(scene, mask, groups, tint=True, visible=True)
    assert api.log == []  # nothing changed, nothing sent
