"""Colours given as text (`--background`, `closed-form:<colour>`, a colour picker's value): one grammar for all.

`parse_colour(text)` -> (r, g, b) floats in [0, 1] accepts

- a CSS colour name, any case: `red`, `orange`, `gray` (CSS's #808080);
- hex with or without '#': `#d02020`, `d02020`, `#f00`, `f00` (bare hex must be 3 or 6 digits); `#rrggbbaa`
  and `#rgba` too;
- `r,g,b` with no function around it: always in [0, 1] (`1,1,1` is white). The scale is told by the notation,
  never guessed from the values: 0-255 is written `rgb(255, 0, 0)`;
- `rgb(r, g, b)` / `rgba(r, g, b, a)`: CSS's 0-255 channels, decimals kept (colour pickers send them), or
  percentages;
- anything else Pillow's `ImageColor.getrgb` reads (`hsl(0, 100%, 50%)`).

An alpha is checked and dropped: everything these colours paint (a background, a target colour) is opaque.
Anything else is a `ValueError` that quotes the text and lists the forms. `to_hex(rgb)` writes `#rrggbb`.
"""

from __future__ import annotations

import re

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_CHANNEL = re.compile(rf"\s*({_NUMBER})(%?)\s*")
_FUNCTION = re.compile(r"(rgba?)\((.*)\)", re.IGNORECASE | re.DOTALL)
_BARE_HEX = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")
FORMS = "a name (red), #rrggbb or #rgb (the '#' may be left out), r,g,b in [0, 1], or rgb(r, g, b) in 0-255"

RGB = tuple[float, float, float]


def parse_colour(text: str) -> RGB:
    """The colour `text` names, as RGB floats in [0, 1] (the grammar is in the module docstring)."""
    if not isinstance(text, str):
        raise ValueError(f"colour {text!r}: expected text: {FORMS}")
    value = text.strip()
    if not value:
        raise ValueError(f"empty colour: use {FORMS}")
    function = _FUNCTION.fullmatch(value)
    if function:
        return _functional(value, function.group(2))
    if "," in value:
        return _triple_0_1(value)
    if _BARE_HEX.fullmatch(value):
        value = "#" + value
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        raise ValueError(f"unknown colour {text!r}: use {FORMS}") from None
    return tuple(c / 255.0 for c in rgb[:3])  # type: ignore[return-value]


def to_hex(rgb) -> str:
    """(r, g, b) in [0, 1] -> '#rrggbb' (each channel rounded to the nearest of 0-255, clamped)."""
    values = tuple(rgb)
    if len(values) != 3:
        raise ValueError(f"a colour has three channels, got {len(values)}: {values!r}")
    return "#" + "".join(f"{max(0, min(255, round(float(c) * 255))):02x}" for c in values)


def _triple_0_1(text: str) -> RGB:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise ValueError(f"unknown colour {text!r}: use {FORMS}")
    values = tuple(float(p) for p in parts)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"colour {text!r}: r,g,b values are in [0, 1]; for 0-255 write rgb({', '.join(parts)})")
    return values  # type: ignore[return-value]


def _functional(text: str, inside: str) -> RGB:
    """`rgb(...)` / `rgba(...)`: three channels (0-255 or 0%-100%) and an optional alpha (0-1 or 0%-100%)."""
    parts = inside.split(",")
    matches = [_CHANNEL.fullmatch(p) for p in parts]
    if len(parts) not in (3, 4) or not all(matches):
        raise ValueError(f"colour {text!r}: write rgb(r, g, b) or rgba(r, g, b, a) with numbers")
    channels = []
    for m in matches[:3]:
        number, percent = float(m.group(1)), bool(m.group(2))
        if not 0.0 <= number <= (100.0 if percent else 255.0):
            raise ValueError(f"colour {text!r}: rgb() channels are 0-255 (or 0%-100%)")
        channels.append(number / (100.0 if percent else 255.0))
    if len(matches) == 4:
        alpha = float(matches[3].group(1)) / (100.0 if matches[3].group(2) else 1.0)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"colour {text!r}: the alpha of rgba() is in [0, 1] (or 0%-100%)")
    return tuple(channels)  # type: ignore[return-value]
