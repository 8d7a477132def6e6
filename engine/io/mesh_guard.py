"""Refuse mesh / point-cloud files whose declared counts cannot fit in the file, before open3d reads them.

open3d trusts the counts in a header: a 45-byte .off or a 247-byte .pcd that declares 10^9 vertices makes it
allocate tens of GB before it notices the data is missing. So each format whose header carries counts is
checked here against the bytes actually present (each vertex, face or point needs at least a few bytes),
and every count is capped at MAX_ELEMENTS. What open3d then allocates is bounded by a small multiple of the
file size. Text formats without counts (.obj, .xyz, ascii .stl) grow with the file only and pass through.
A .glb/.gltf is checked for the KHR Gaussian-splatting extension (splats, not a mesh) and for accessors that
claim more data than their buffers hold.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

from .errors import FormatError
from .ply_header import PlyHeader, read_ply_header

MAX_ELEMENTS = 200_000_000  # no mesh or cloud we can turn into Gaussians has more vertices/faces/points
ASCII_VALUE_BYTES = 2  # the least an ascii number takes: one digit and a separator
PCD_TYPE_SIZES = {1, 2, 4, 8}
LZF_MAX_RATIO = 300  # an LZF back-reference of at most 264 bytes costs at least 2 bytes (< 132:1), rounded up
GLB_MAGIC = b"glTF"
GLTF_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
GLTF_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
GAUSSIAN_EXTENSIONS = ("KHR_gaussian_splatting",)


def check_mesh_file(path: Path, header: PlyHeader | None = None) -> None:
    """Raise FormatError when `path` declares more content than it can hold (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix == ".ply":
        check_ply_counts(path, header or read_ply_header(path))
    elif suffix == ".off":
        _check_off(path)
    elif suffix == ".pcd":
        _check_pcd(path)
    elif suffix == ".stl":
        _check_stl(path)
    elif suffix in (".glb", ".gltf"):
        _check_gltf(path)


def _check_count(path: Path, what: str, count: int) -> None:
    if count < 0:
        raise FormatError(path, f"negative {what} count {count}")
    if count > MAX_ELEMENTS:
        raise FormatError(path, f"absurd {what} count {count} (more than {MAX_ELEMENTS})")


def _too_small(path: Path, declared: str, need: int, have: int) -> FormatError:
    return FormatError(
        path, f"truncated or corrupt: the header declares {declared}, which needs at least {need} bytes, "
        f"but the file has only {have} after its header"
    )


def check_ply_counts(path: Path, header: PlyHeader) -> None:
    """Every element of a mesh / cloud .ply must fit in the body: binary rows have a known least size (a
    list row at least its count field), ascii values at least two characters each."""
    body = header.file_size - header.header_size
    need = 0
    for element in header.elements:
        _check_count(path, f"'{element.name}'", element.count)
        if header.is_binary:
            row = sum(int(p.list_count_type[1]) if p.is_list else int(p.type[1]) for p in element.properties)
        else:
            row = ASCII_VALUE_BYTES * len(element.properties)
        need += element.count * row
    if need > body:
        declared = ", ".join(f"{e.count} '{e.name}'" for e in header.elements)
        raise _too_small(path, declared, need, body)
    if header.is_binary:
        _check_binary_faces(path, header)


def _check_binary_faces(path: Path, header: PlyHeader) -> None:
    """Walk the face lists of a binary mesh .ply: every row must lie inside the file and every index refer to
    a declared vertex. open3d's PLY reader crashes (SIGSEGV) on faces whose indices run past the vertices,
    e.g. a file whose vertex count was lowered so the face rows are read from vertex bytes."""
    vertex, face = header.element("vertex"), header.element("face")
    if vertex is None or face is None or face.count == 0:
        return
    offset = header.header_size
    for element in header.elements:
        if element.name == "face":
            break
        if not element.is_fixed_size:
            raise FormatError(path, f"unsupported PLY layout: element '{element.name}' with lists comes before 'face'")
        offset += element.count * element.row_dtype(header.byteorder).itemsize
    lists = [p for p in face.properties if p.is_list]
    if len(lists) != 1 or lists[0].name not in ("vertex_indices", "vertex_index"):
        raise FormatError(path, "unsupported PLY faces: expected one list property 'vertex_indices'")
    order = header.byteorder
    with open(path, "rb") as f:
        f.seek(offset)
        data = np.frombuffer(f.read(), np.uint8)
    # rows: scalars before the list, the list count, its items, scalars after; the common case (every face a
    # triangle or every face a quad) is one fixed-size view, anything else is walked row by row
    index = face.properties.index(lists[0])
    before = sum(int(p.type[1]) for p in face.properties[:index])
    after = sum(int(p.type[1]) for p in face.properties[index + 1 :])
    count_type = np.dtype(order + lists[0].list_count_type)
    item_type = np.dtype(order + lists[0].type)
    if len(data) < before + count_type.itemsize:
        raise FormatError(path, "truncated: the file ends before its first face")
    first = int(data[before : before + count_type.itemsize].view(count_type)[0])
    row = before + count_type.itemsize + first * item_type.itemsize + after
    indices = None
    if 3 <= first <= 64 and len(data) >= row * face.count:
        rows = data[: row * face.count].reshape(face.count, row)
        counts = np.ascontiguousarray(rows[:, before : before + count_type.itemsize]).view(count_type)[:, 0]
        if (counts == first).all():
            start = before + count_type.itemsize
            indices = np.ascontiguousarray(rows[:, start : start + first * item_type.itemsize]).view(item_type)
    if indices is None:
        indices = _walk_faces(path, data, face.count, before, after, count_type, item_type)
    if indices.size and (indices.min() < 0 or indices.max() >= vertex.count):
        raise FormatError(
            path, f"corrupt mesh: faces refer to vertex {int(indices.max()) if indices.max() >= vertex.count else int(indices.min())} "
            f"but the file declares {vertex.count} vertices (0..{vertex.count - 1})"
        )


def _walk_faces(path: Path, data: np.ndarray, count: int, before: int, after: int, count_type, item_type) -> np.ndarray:
    """Face indices of variable-length rows, walked one row at a time (polygons of mixed sizes)."""
    raw = data.tobytes()
    at, out = 0, []
    for i in range(count):
        at += before
        if at + count_type.itemsize > len(raw):
            raise FormatError(path, f"truncated: the file ends inside face {i} of {count}")
        k = int(np.frombuffer(raw, count_type, 1, at)[0])
        at += count_type.itemsize
        if k < 3:
            raise FormatError(path, f"corrupt mesh: face {i} of {count} has {k} vertices (a face needs at least 3)")
        if at + k * item_type.itemsize + after > len(raw):
            raise FormatError(path, f"truncated or corrupt: face {i} of {count} declares {k} vertices past the end")
        out.append(np.frombuffer(raw, item_type, k, at))
        at += k * item_type.itemsize + after
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _text_head(path: Path, size: int = 1 << 16) -> tuple[bytes, int]:
    with open(path, "rb") as f:
        head = f.read(size)
    return head, path.stat().st_size


def _check_off(path: Path) -> None:
    """OFF: 'OFF' (or COFF, NOFF, ...), then 'vertices faces edges'; a vertex needs three numbers, a face four."""
    head, size = _text_head(path)
    text = re.sub(rb"#[^\n]*", b"", head)  # comments
    words = text.split()
    if not words:
        return
    start = 1 if words[0].upper().endswith(b"OFF") else 0
    if start == 0 and not words[0][:1].isdigit():
        return  # not an OFF header we understand: open3d's own error will say so
    try:
        nv, nf = int(words[start]), int(words[start + 1])
    except (IndexError, ValueError):
        return
    _check_count(path, "vertex", nv)
    _check_count(path, "face", nf)
    need = (3 * nv + 4 * nf) * ASCII_VALUE_BYTES
    if need > size:
        raise _too_small(path, f"{nv} vertices and {nf} faces", need, size)
    _check_off_faces(path, nv, nf)


def _check_off_faces(path: Path, nv: int, nf: int) -> None:
    """Every OFF face line must be 'k i1 .. ik' with k >= 3 and indices of declared vertices: open3d's OFF
    reader crashes (SIGSEGV) on a face with 0 vertices or indices past the vertex list."""
    def words():  # non-empty lines without comments, streamed (the file may be large)
        with open(path, "rb") as f:
            for line in f:
                split = line.split(b"#", 1)[0].split()
                if split:
                    yield split

    lines = words()
    first = next(lines, None)
    if first is None:
        return
    if first[0].upper().endswith(b"OFF"):
        first = first[1:] or next(lines, [])  # counts on the 'OFF' line or the next
    for _ in range(nv):  # vertex lines
        if next(lines, None) is None:
            raise FormatError(path, f"truncated: {nv} vertices declared, the file ends before them")
    faces = (next(lines, None) for _ in range(nf))
    for i, words in enumerate(faces):
        if words is None:
            raise FormatError(path, f"truncated: {nf} faces declared, the file ends after {i}")
        try:
            k = int(words[0])
            indices = [int(w) for w in words[1 : 1 + k]]
        except ValueError:
            raise FormatError(path, f"corrupt OFF: face {i} is not 'count index index ...'") from None
        if k < 3 or len(indices) < k:
            raise FormatError(path, f"corrupt OFF: face {i} lists {k} vertices (a face needs at least 3, all given)")
        if min(indices) < 0 or max(indices) >= nv:
            raise FormatError(path, f"corrupt OFF: face {i} refers to a vertex outside 0..{nv - 1}")


def _check_pcd(path: Path) -> None:
    """PCD: FIELDS / SIZE / COUNT / POINTS / DATA lines; the body must hold POINTS rows of that layout."""
    head, size = _text_head(path)
    fields: dict[str, list[bytes]] = {}
    offset = 0
    for line in head.split(b"\n"):
        offset += len(line) + 1
        words = line.split()
        if not words or words[0].startswith(b"#"):
            continue
        key = words[0].upper().decode("ascii", "replace")
        fields[key] = words[1:]
        if key == "DATA":
            break
    else:
        return  # no DATA line in the first 64 KB: open3d refuses it on its own
    try:
        sizes = [int(v) for v in fields.get("SIZE", [])]
        counts = [int(v) for v in fields.get("COUNT", [b"1"] * len(sizes))]
        if "POINTS" in fields:
            points = int(fields["POINTS"][0])
        else:
            points = int(fields["WIDTH"][0]) * int(fields.get("HEIGHT", [b"1"])[0])
        mode = fields["DATA"][0].lower()
    except (KeyError, IndexError, ValueError):
        raise FormatError(path, "malformed PCD header (SIZE/COUNT/POINTS/DATA lines)") from None
    _check_count(path, "point", points)
    if any(s not in PCD_TYPE_SIZES for s in sizes) or any(c < 1 or c > 1 << 16 for c in counts):
        raise FormatError(path, "malformed PCD header: SIZE must be 1, 2, 4 or 8 and COUNT positive")
    row = sum(s * c for s, c in zip(sizes, counts)) or 1
    body = size - offset
    if mode == b"ascii":
        need = points * ASCII_VALUE_BYTES * max(1, sum(counts))
    elif mode == b"binary":
        need = points * row
    elif mode == b"binary_compressed":
        with open(path, "rb") as f:
            f.seek(offset)
            sizes_field = f.read(8)
        if len(sizes_field) < 8:
            raise FormatError(path, "truncated PCD: binary_compressed data has no size fields")
        compressed, uncompressed = struct.unpack("<II", sizes_field)
        if uncompressed != points * row:
            raise FormatError(
                path, f"corrupt PCD: {points} points of {row} bytes need {points * row} bytes, the compressed "
                f"block says {uncompressed}"
            )
        if compressed + 8 > body or uncompressed > LZF_MAX_RATIO * max(compressed, 1):
            raise _too_small(path, f"{points} points ({uncompressed} bytes compressed to {compressed})",
                             compressed + 8, body)
        return
    else:
        raise FormatError(path, f"unknown PCD DATA mode '{mode.decode('ascii', 'replace')}'")
    if need > body:
        raise _too_small(path, f"{points} points", need, body)


def _check_stl(path: Path) -> None:
    """Binary STL: 80-byte header, u32 triangle count, 50 bytes per triangle. Ascii STL ('solid ...' text)
    grows with the file. A binary file whose count does not match its size is refused unless it reads as
    ascii text."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(84)
    if len(head) < 84:
        return
    (count,) = struct.unpack_from("<I", head, 80)
    if 84 + 50 * count == size:
        return
    if head[:5].lower() == b"solid" and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return  # ascii STL
    if 84 + 50 * count > size:
        raise _too_small(path, f"{count} binary STL triangles", 84 + 50 * count, size - 84)


def _check_gltf(path: Path) -> None:
    document, binary_size = _read_gltf_json(path)
    if document is None:
        return
    used = set(document.get("extensionsUsed", []) or []) if isinstance(document, dict) else set()
    if used & set(GAUSSIAN_EXTENSIONS) or _has_gaussian_primitive(document):
        raise FormatError(
            path, "this glTF holds Gaussian splats (KHR_gaussian_splatting), not a mesh: read it with "
            "engine.io.load (engine.io.gltf_splat), not as a mesh"
        )
    buffers = document.get("buffers", []) if isinstance(document, dict) else []
    views = document.get("bufferViews", []) if isinstance(document, dict) else []
    try:
        for accessor in document.get("accessors", []) or []:
            count = int(accessor.get("count", 0))
            _check_count(path, "glTF accessor", count)
            width = GLTF_COMPONENT_BYTES.get(accessor.get("componentType"), 4)
            width *= GLTF_TYPE_COMPONENTS.get(accessor.get("type"), 1)
            view_index = accessor.get("bufferView")
            if view_index is None:
                continue
            view = views[int(view_index)]
            length = int(view.get("byteLength", 0))
            if count * width > length + int(view.get("byteStride", 0) or 0):
                raise FormatError(
                    path, f"corrupt glTF: an accessor declares {count} elements ({count * width} bytes) in a "
                    f"buffer view of {length} bytes"
                )
            buffer = buffers[int(view.get("buffer", 0))]
            declared = int(buffer.get("byteLength", 0))
            if int(view.get("byteOffset", 0)) + length > declared:
                raise FormatError(path, "corrupt glTF: a buffer view runs past the end of its buffer")
            if "uri" not in buffer and binary_size is not None and declared > binary_size:
                raise FormatError(
                    path, f"truncated .glb: its buffer declares {declared} bytes, the binary chunk holds "
                    f"{binary_size}"
                )
    except FormatError:
        raise
    except (TypeError, ValueError, IndexError, AttributeError):
        raise FormatError(path, "corrupt glTF: malformed accessors / bufferViews / buffers") from None


def _has_gaussian_primitive(document) -> bool:
    try:
        for mesh in document.get("meshes", []) or []:
            for primitive in mesh.get("primitives", []) or []:
                if any(k in (primitive.get("extensions") or {}) for k in GAUSSIAN_EXTENSIONS):
                    return True
    except AttributeError:
        return False
    return False


def _read_gltf_json(path: Path):
    """(JSON document, size of the binary chunk or None); (None, None) when it is not parseable glTF."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(20)
        if head[:4] == GLB_MAGIC and len(head) == 20:
            json_length, json_type = struct.unpack_from("<II", head, 12)
            if json_type != 0x4E4F534A:  # "JSON"
                raise FormatError(path, "corrupt .glb: the first chunk is not JSON")
            if 20 + json_length > size:
                raise FormatError(path, f"truncated .glb: JSON chunk of {json_length} bytes in a {size}-byte file")
            raw = f.read(json_length)
            bin_head = f.read(8)
            binary_size = struct.unpack("<I", bin_head[:4])[0] if len(bin_head) == 8 else 0
            binary_size = min(binary_size, size - 20 - json_length - 8) if len(bin_head) == 8 else 0
        elif path.suffix.lower() == ".gltf":
            f.seek(0)
            raw = f.read(min(size, 64 << 20))
            binary_size = None
        else:
            return None, None
    try:
        return json.loads(raw.decode("utf-8")), binary_size
    except (UnicodeDecodeError, json.JSONDecodeError):
        if head[:4] == GLB_MAGIC:
            raise FormatError(path, "corrupt .glb: its JSON chunk does not parse") from None
        return None, None
