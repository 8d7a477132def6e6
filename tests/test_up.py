"""Up-axis names, parsing, rotations between ups, and the geometric guess."""

from __future__ import annotations

import pytest
import torch

from engine.up import AXIS_NAMES, CHOICES, format_up, parse_up, rotation_between, up_from_geometry


def test_names_and_numbers_parse_to_unit_vectors():
    assert parse_up("z") == parse_up("+z") == parse_up(" +Z ") == (0.0, 0.0, 1.0)
    assert parse_up("-y") == (0.0, -1.0, 0.0)
    assert parse_up("0,0,2") == (0.0, 0.0, 1.0)
    assert parse_up("1, 1, 0") == pytest.approx((2**-0.5, 2**-0.5, 0.0))
    for name in CHOICES:
        assert format_up(parse_up(name)) == name
    assert format_up((0.0, 3.0, 4.0)) == "0.0000,0.6000,0.8000"


@pytest.mark.parametrize("bad", ["", "up", "w", "1,2", "0,0,0", "nan,0,1", "a,b,c", "1,2,3,4"])
def test_bad_up_axes_are_refused_with_one_line(bad):
    with pytest.raises(ValueError, match="up axis") as info:
        parse_up(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("src", list(AXIS_NAMES) + ["1,2,3"])
@pytest.mark.parametrize("dst", ["+z", "-y", "-z", "0.3,-0.2,0.9"])
def test_rotation_between_maps_one_up_onto_the_other(src, dst):
    a, b = parse_up(src), parse_up(dst)
    r = rotation_between(a, b)
    torch.testing.assert_close(r @ torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
    assert float(torch.linalg.det(r)) == pytest.approx(1.0)


def test_z_to_minus_y_is_a_quarter_turn_about_x():
    """The turn the web-viewer copy has always used (+z up to -y up): y -> z, z -> -y."""
    r = rotation_between((0, 0, 1), (0, -1, 0))
    torch.testing.assert_close(r, torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64))


def test_geometry_guess_finds_the_ground_side():
    """A wide, dense ground with sparse things standing on it: up is the thin axis, away from the ground."""
    g = torch.Generator().manual_seed(0)
    ground = torch.cat([torch.rand(4000, 2, generator=g) * 10 - 5, torch.rand(4000, 1, generator=g) * 0.1], dim=1)
    things = torch.cat([torch.rand(600, 2, generator=g) * 4 - 2, torch.rand(600, 1, generator=g) * 3], dim=1)
    scene = torch.cat([ground, things])
    assert up_from_geometry(scene) == (0.0, 0.0, 1.0)
    turned = scene @ rotation_between((0, 0, 1), (0, -1, 0)).float().T
    assert up_from_geometry(turned) == (0.0, -1.0, 0.0)
    assert up_from_geometry(torch.zeros(1, 3)) == (0.0, 0.0, 1.0)
