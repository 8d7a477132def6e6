"""The browser's level of detail: the budget holds, the selection is always in, the choice is deterministic and
prefers the Gaussians that cover the most screen."""

import torch

from editor.viewer_lod import DetailLevels, choose_rows, detail_order, row_uniforms, splat_importance
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


def test_viewer_sends_coarse_then_budget_then_full_on_request(monkeypatch):
    """Against a real ViserServer and a wire-protocol client: a new scene arrives coarse, is refined to the
    budget (the selection in full), and "Full detail" sends every splat."""
    import numpy as np

    from editor import viewer as viewer_module
    from tests.editor.viser_client import ViserTestClient, splat_buffer

    monkeypatch.setattr(viewer_module, "COARSE_SPLATS", 20)
    monkeypatch.setattr(viewer_module, "REFINE_DELAY_S", 0.05)
    viewer = viewer_module.SessionViewer(port=0, splat_budget=100)
    client = ViserTestClient(viewer.port)
    try:
        client.send_camera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -3.0))  # a browser is "connected" once it sent one
        client.wait_for(lambda: viewer.server.get_clients())
        scene = _scene(300, seed=5)
        mask = torch.zeros(300)
        mask[250:] = 1.0
        viewer.show(scene, mask)

        def sizes():
            return [splat_buffer(m).shape[0] for m in client.messages
                    if m.get("type") == "GaussianSplatsMessage"
                    or (m.get("type") == "SceneNodeUpdateMessage" and "buffer" in (m.get("updates") or {}))]

        client.wait_for(lambda: 100 in sizes())
        assert sizes()[:2] == [50, 100]  # coarse: the selection (50 rows, more than the 20) alone; then the budget
        last = [m for m in client.messages if m.get("type") == "GaussianSplatsMessage"][-1]
        centers = splat_buffer(last)[:, 0:3].copy().view(np.float32)
        selected = scene.means[250:].numpy()
        assert all(np.abs(centers - c).sum(axis=1).min() == 0 for c in selected)  # every selected splat is there
        viewer.full_detail_checkbox.value = True
        client.wait_for(lambda: 300 in sizes())
        assert viewer.stats["splats_shown"] == 300
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
