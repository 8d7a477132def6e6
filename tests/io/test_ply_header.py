"""PLY header parsing: the facts every .ply reader relies on, and header-level errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.io import FormatError, load
from engine.io.ply_header import read_ply_header
from tests.io.ply_builders import write_ply


def test_parses_elements_offsets_and_line_endings(tmp_path):
    a = np.zeros(3, dtype=[("x", "f4"), ("n", "u1")])
    b = np.zeros(2, dtype=[("v", "f8")])
    path = write_ply(tmp_path / "p.ply", [("first", a), ("second", b)], fmt="binary_big_endian")
    header = read_ply_header(path)
    assert header.format == "binary_big_endian" and header.byteorder == ">"
    assert [e.name for e in header.elements] == ["first", "second"]
    assert header.element("first").property_names == ("x", "n")
    assert header.element("first").row_dtype(">").itemsize == 5
    assert header.binary_offset("second") == header.header_size + 3 * 5
    assert header.comments == ("written by tests",)
    # CRLF line endings and a list property
    text = b"ply\r\nformat ascii 1.0\r\nelement face 1\r\nproperty list uchar int vertex_indices\r\nend_header\r\n3 0 1 2\r\n"
    (tmp_path / "crlf.ply").write_bytes(text)
    header = read_ply_header(tmp_path / "crlf.ply")
    assert header.header_size == text.index(b"3 0 1 2")
    assert header.element("face").properties[0].is_list


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PK\x03\x04 not a ply at all", r"not a PLY file \(it does not start with 'ply'\)"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n", r"no 'end_header' line"),
        (b"ply\nformat binary_middle_endian 1.0\nend_header\n", r"unknown format"),
        (b"ply\nformat ascii 2.0\nend_header\n", r"unsupported PLY version 2\.0"),
        (b"ply\nformat ascii 1.0\nelement vertex many\nend_header\n", r"element count 'many' is not an integer"),
        (b"ply\nformat ascii 1.0\nelement vertex -4\nend_header\n", r"negative element count -4"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n", r"unknown property type"),
        (b"ply\nformat ascii 1.0\nproperty float x\nend_header\n", r"property before any element"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float x\nend_header\n", r"property 'x' is declared twice"),
        (b"ply\nelement vertex 1\nproperty float x\nend_header\n", r"no 'format' line"),
        (b"ply\nformat ascii 1.0\nbogus line\nend_header\n", r"unknown keyword 'bogus'"),
    ],
)
def test_malformed_headers(tmp_path, content, message):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message) as info:
        read_ply_header(path)
    assert str(path) in str(info.value)


def test_zero_length_file(tmp_path):
    (tmp_path / "empty.ply").write_bytes(b"")
    with pytest.raises(FormatError, match=r"empty\.ply: file is empty \(0 bytes\)"):
        load(tmp_path / "empty.ply")


def test_ply_with_nothing_recognisable(tmp_path):
    path = write_ply(tmp_path / "odd.ply", [("vertex", np.zeros(2, dtype=[("u", "f4"), ("v", "f4")]))])
    with pytest.raises(FormatError, match=r"odd\.ply: unrecognised \.ply"):
        load(path)
