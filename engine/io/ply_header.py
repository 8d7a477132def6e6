"""A strict, fast parser for PLY headers (the text part up to `end_header`).

Every .ply flavour we read (3DGS, SuperSplat compressed, meshes, point clouds) is told apart by its header, and
the binary bodies are read straight into numpy with the structured dtypes built here, so the header is parsed
by our own code: it gives precise errors ("element vertex 10^12 in a 1 KB file") and costs no body reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FormatError
from .files import check_readable

# PLY scalar type names (both the classic and the sized spellings) -> numpy type codes without byte order.
PLY_TYPES = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip

FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
MAX_HEADER_BYTES = 1 << 20  # real headers are a few KB; this bounds the scan on a non-PLY file


@dataclass(frozen=True)
class PlyProperty:
    name: str
    type: str  # numpy type code without byte order, e.g. "f4"
    list_count_type: str | None = None  # set for `property list <count> <item> name`

    @property
    def is_list(self) -> bool:
        return self.list_count_type is not None


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[PlyProperty, ...]

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)

    def has(self, *names: str) -> bool:
        present = set(self.property_names)
        return all(n in present for n in names)

    @property
    def is_fixed_size(self) -> bool:
        return not any(p.is_list for p in self.properties)

    def row_dtype(self, byteorder: str) -> np.dtype:
        """Structured dtype of one binary row (only for elements without list properties)."""
        if not self.is_fixed_size:
            raise ValueError(f"element '{self.name}' has list properties; its rows have no fixed dtype")
        return np.dtype([(p.name, byteorder + p.type) for p in self.properties])


@dataclass(frozen=True)
class PlyHeader:
    path: Path
    format: str  # one of FORMATS
    elements: tuple[PlyElement, ...]
    header_size: int  # bytes from the file start to the first body byte
    file_size: int
    comments: tuple[str, ...] = ()

    @property
    def is_binary(self) -> bool:
        return self.format != "ascii"

    @property
    def byteorder(self) -> str:
        return ">" if self.format == "binary_big_endian" else "<"

    def element(self, name: str) -> PlyElement | None:
        for element in self.elements:
            if element.name == name:
                return element
        return None

    def binary_offset(self, name: str) -> int:
        """Byte offset of element `name`'s body in a binary file (all elements before it must be fixed-size)."""
        offset = self.header_size
        for element in self.elements:
            if element.name == name:
                return offset
            if not element.is_fixed_size:
                raise FormatError(
                    self.path,
                    f"element '{element.name}' (with list properties) comes before '{name}'; "
                    "this layout is not supported",
                )
            offset += element.count * element.row_dtype(self.byteorder).itemsize
        raise FormatError(self.path, f"no element '{name}' in the PLY header")

    def check_binary_size(self, name: str) -> int:
        """Offset of element `name` after checking that the file holds all of its rows; raises on truncation."""
        element = self.element(name)
        if element is None:
            raise FormatError(self.path, f"no element '{name}' in the PLY header")
        offset = self.binary_offset(name)
        need = element.count * element.row_dtype(self.byteorder).itemsize
        have = max(0, self.file_size - offset)
        if need > have:
            raise FormatError(
                self.path,
                f"truncated: the header declares {element.count} '{name}' rows ({need} bytes) "
                f"but only {have} bytes are left in the file",
            )
        return offset


def read_ply_header(path: str | os.PathLike) -> PlyHeader:
    """Parse the header of the .ply at `path`; raise FormatError naming the file and the first problem."""
    path = check_readable(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(min(file_size, MAX_HEADER_BYTES))
    if not head.startswith(b"ply"):
        raise FormatError(path, "not a PLY file (it does not start with 'ply')")
    end = _find_end_header(head)
    if end is None:
        raise FormatError(path, "PLY header has no 'end_header' line (file truncated or not a PLY file)")
    # Other tools put UTF-8 (or Latin-1) text in comments: decode leniently, but keep every other line ASCII.
    text = head[:end].decode("utf-8", errors="replace")
    lines = text.splitlines()
    if lines[0].strip() != "ply":
        raise FormatError(path, "not a PLY file (first line is not 'ply')")

    fmt = None
    elements: list[tuple[str, int, list[PlyProperty]]] = []
    comments: list[str] = []
    for number, raw in enumerate(lines[1:], start=2):
        words = raw.split()
        if not words:
            continue
        keyword = words[0]
        where = f"PLY header line {number} ('{raw.strip()}')"
        if keyword not in ("comment", "obj_info") and not raw.isascii():
            raise FormatError(path, f"{where}: non-ASCII characters outside a comment")
        if keyword in ("comment", "obj_info"):
            comments.append(raw.strip()[len(keyword) :].strip())
        elif keyword == "format":
            if len(words) != 3 or words[1] not in FORMATS:
                raise FormatError(path, f"{where}: unknown format (expected one of {', '.join(FORMATS)})")
            if words[2] != "1.0":
                raise FormatError(path, f"{where}: unsupported PLY version {words[2]} (expected 1.0)")
            fmt = words[1]
        elif keyword == "element":
            if len(words) != 3:
                raise FormatError(path, f"{where}: expected 'element <name> <count>'")
            try:
                count = int(words[2])
            except ValueError:
                raise FormatError(path, f"{where}: element count '{words[2]}' is not an integer") from None
            if count < 0:
                raise FormatError(path, f"{where}: negative element count {count}")
            if any(e[0] == words[1] for e in elements):
                raise FormatError(path, f"{where}: element '{words[1]}' is declared twice")
            elements.append((words[1], count, []))
        elif keyword == "property":
            if not elements:
                raise FormatError(path, f"{where}: property before any element")
            props = elements[-1][2]
            if len(words) == 3 and words[1] in PLY_TYPES:
                prop = PlyProperty(words[2], PLY_TYPES[words[1]])
            elif len(words) == 5 and words[1] == "list" and words[2] in PLY_TYPES and words[3] in PLY_TYPES:
                prop = PlyProperty(words[4], PLY_TYPES[words[3]], PLY_TYPES[words[2]])
            else:
                raise FormatError(path, f"{where}: unknown property type or malformed property line")
            if any(p.name == prop.name for p in props):
                raise FormatError(path, f"{where}: property '{prop.name}' is declared twice")
            props.append(prop)
        elif keyword == "end_header":
            break
        else:
            raise FormatError(path, f"{where}: unknown keyword '{keyword}'")
    if fmt is None:
        raise FormatError(path, "PLY header has no 'format' line")
    return PlyHeader(
        path=path,
        format=fmt,
        elements=tuple(PlyElement(name, count, tuple(props)) for name, count, props in elements),
        header_size=end,
        file_size=file_size,
        comments=tuple(comments),
    )


def _find_end_header(head: bytes) -> int | None:
    """Index just past the 'end_header' line terminator, or None if absent."""
    start = 0
    while True:
        i = head.find(b"end_header", start)
        if i < 0:
            return None
        at_line_start = i == 0 or head[i - 1 : i] in (b"\n", b"\r")
        j = i + len(b"end_header")
        # allow trailing spaces before the line break
        while j < len(head) and head[j : j + 1] == b" ":
            j += 1
        if at_line_start:
            if head[j : j + 2] == b"\r\n":
                return j + 2
            if head[j : j + 1] in (b"\n", b"\r"):
                return j + 1
            if j == len(head):  # header ends exactly at EOF (no body)
                return j
        start = i + 1
