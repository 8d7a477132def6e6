"""auto decides shape by measurement: geometry unlocks only while the colour-only push stays high."""

from engine.edit import EditConfig
from engine.edit.shape_gate import ShapeGate


def _run(pushes, **kw):
    config = EditConfig(prompt="x", steps=len(pushes), **kw)
    gate = ShapeGate(config, colour_only=kw.pop("colour_only", False)) if "colour_only" in kw else ShapeGate(config)
    unlocked = []
    for step, push in enumerate(pushes):
        unlocked.append(gate.unlocked(step))
        if not unlocked[-1]:
            gate.observe(push)
    return gate, unlocked


def test_a_falling_push_stays_colour_only():
    gate, unlocked = _run([40.0 * 0.98**i + 5.0 * (i % 3) for i in range(200)])
    assert not any(unlocked) and gate.unlocked_at is None and gate.ratio < 0.7


def test_a_push_that_stays_unlocks_geometry_after_the_colour_only_quarter():
    gate, unlocked = _run([50.0 + (i % 7) for i in range(200)])
    assert gate.unlocked_at == 50 and not any(unlocked[:50]) and all(unlocked[50:])
    assert 0.9 < gate.ratio < 1.2


def test_explicit_kinds_and_a_known_recolour_are_not_measured():
    _, unlocked = _run([50.0] * 40, edit="shape")
    assert all(unlocked)
    _, unlocked = _run([50.0] * 40, edit="appearance")
    assert not any(unlocked)
    config = EditConfig(prompt="x", steps=40)
    gate = ShapeGate(config, colour_only=True)
    for step in range(40):
        assert not gate.unlocked(step)
        gate.observe(50.0)
    assert gate.unlocked_at is None


def test_after_a_probe_unlocks_the_edit_runs_on_the_old_schedule():
    probe, _ = _run([50.0] * 200)
    assert probe.unlocked_at == 50 and probe.probing
    again = ShapeGate.after_probe(EditConfig(prompt="x", steps=200), probe)
    assert not again.probing and again.ratio == probe.ratio
    assert [again.unlocked(s) for s in (0, 19, 20, 199)] == [False, False, True, True]
