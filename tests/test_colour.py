"""One colour grammar for the whole project: CSS names, hex (with or without '#'), r,g,b in [0, 1], rgb()/rgba()
in 0-255 — and a clear ValueError for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.colour import parse_colour, to_hex

RED = (1.0, 0.0, 0.0)
D02020 = (0xD0 / 255, 0x20 / 255, 0x20 / 255)


@pytest.mark.parametrize("text, rgb", [
    ("red", RED),
    ("  Red ", RED),  # names are case-insensitive and surrounding space is ignored
    ("white", (1.0, 1.0, 1.0)),
    ("black", (0.0, 0.0, 0.0)),
    ("gray", (128 / 255,) * 3),  # CSS gray (#808080); the CLI render had its own 0.5 before
    ("grey", (128 / 255,) * 3),
    ("orange", (1.0, 165 / 255, 0.0)),
    ("#d02020", D02020),
    ("#D02020", D02020),
    ("d02020", D02020),  # bare hex, as `closed-form:d02020` was written
    ("#f00", RED),
    ("f00", RED),
    ("#d0202080", D02020),  # an alpha part is accepted and dropped: colours here are opaque
    ("#f008", RED),
    ("1,0.5,0", (1.0, 0.5, 0.0)),  # r,g,b without a function: always in [0, 1]
    (" 0 , 0.25 , 1 ", (0.0, 0.25, 1.0)),
    ("1,1,1", (1.0, 1.0, 1.0)),  # white, not 1/255 grey: the bare form is never 0-255
    ("rgb(208, 32, 32)", D02020),  # functional form: CSS's 0-255
    ("rgba(208, 32, 32, 1)", D02020),  # what a colour picker sends
    ("RGBA(208.0, 32, 32, 0.5)", D02020),
    ("rgb(100%, 0%, 50%)", (1.0, 0.0, 0.5)),
])
def test_accepted_forms(text, rgb):
    assert parse_colour(text) == pytest.approx(rgb)


def test_picker_decimals_are_kept_not_rounded():
    assert parse_colour("rgba(208.5, 0, 255, 1)")[0] == pytest.approx(208.5 / 255)


@pytest.mark.parametrize("text, hint", [
    ("", "empty"),
    ("   ", "empty"),
    ("notacolour", "notacolour"),
    ("purple-ish", "purple-ish"),
    ("#gggggg", "#gggggg"),
    ("ff00", "ff00"),  # bare hex must be 3 or 6 digits
    ("1,0", "1,0"),
    ("1,0,0,0", "1,0,0,0"),
    ("255,0,0", "rgb(255, 0, 0)"),  # the message says how to write 0-255
    ("-0.1,0,0", "[0, 1]"),
    ("nan,0,0", "[0, 1]"),
    ("rgb(256, 0, 0)", "0-255"),
    ("rgb(-1, 0, 0)", "0-255"),
    ("rgb(1, 2)", "rgb"),
    ("rgba(1, 2, 3, 2)", "alpha"),
    ("rgb(1, 2, 3", "rgb"),
    ("rgb(a, b, c)", "rgb"),
    ("rgb(101%, 0%, 0%)", "0-255"),
])
def test_malformed_input_is_a_value_error_that_quotes_it(text, hint):
    with pytest.raises(ValueError) as info:
        parse_colour(text)
    assert hint in str(info.value)


def test_non_string_is_a_value_error():
    with pytest.raises(ValueError):
        parse_colour(None)  # type: ignore[arg-type]


def test_to_hex_rounds_and_clamps():
    assert to_hex(D02020) == "#d02020"
    assert to_hex((1.0, 0.5, 0.0)) == "#ff8000"  # 127.5 rounds half to even: 128
    assert to_hex((1.2, -0.1, 0.0)) == "#ff0000"
    with pytest.raises(ValueError, match="three"):
        to_hex((1.0, 0.0))


channel = st.integers(min_value=0, max_value=255)


@given(channel, channel, channel)
def test_every_form_of_one_colour_parses_alike(r, g, b):
    want = (r / 255, g / 255, b / 255)
    hex6 = f"{r:02x}{g:02x}{b:02x}"
    forms = [f"#{hex6}", hex6, hex6.upper(), f"rgb({r}, {g}, {b})", f"rgba({r},{g},{b},0.3)",
             f"{r / 255!r},{g / 255!r},{b / 255!r}"]
    for text in forms:
        assert parse_colour(text) == pytest.approx(want, abs=1e-12), text
    assert to_hex(want) == f"#{hex6}"
    assert parse_colour(to_hex(parse_colour(f"rgb({r}, {g}, {b})"))) == pytest.approx(want)


@given(st.text(max_size=12))
def test_any_text_parses_into_range_or_raises_value_error(text):
    try:
        rgb = parse_colour(text)
    except ValueError:
        return
    assert len(rgb) == 3 and all(isinstance(c, float) and 0.0 <= c <= 1.0 for c in rgb)
