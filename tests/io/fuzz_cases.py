"""Fuzz material for every reader: one small valid seed file per reader, the mutations applied to it, and
the outcome of loading a mutated file.

Used by tests/io/test_fuzz.py (hypothesis picks the mutations, few examples in CI) and by
`python bench/io.py --fuzz N` (many more, counts by outcome as JSON). An outcome is "loaded" (a valid scene)
or "refused" (a one-line FormatError naming the file); anything else -- another exception, a message over
several lines or without the file name -- is a bug and is raised.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import numpy as np

from engine.io import FormatError, load, save
from engine.scene import random_scene
from tests.io.ksplat_builder import build_ksplat
from tests.io.ply_builders import gaussian_rows, write_ply

SPLAT_SEEDS = ("scene.ply", "ascii.ply", "scene.compressed.ply", "scene.splat", "v2.spz", "v3.spz", "v4.spz",
               "scene.sog", "meta.json", "mode0.ksplat", "mode1.ksplat", "mode2.ksplat", "splats.glb")  # fmt: skip
MESH_SEEDS = ("mesh.obj", "mesh.off", "mesh.stl", "mesh.ply", "cloud.ply", "cloud.pcd", "cloud.xyz", "mesh.glb")
MUTATIONS = ("truncate", "flip", "absurd_count", "wrong_magic", "nan_inf")
ABSURD = (0, 1, 2**31 - 1, 2**32 - 1, 10**9, 10**12)
_NUMBER = re.compile(rb"(?<![\w.])\d+(?![\w.])")


def make_seeds(folder: Path) -> dict[str, Path]:
    """Write every seed file into `folder` (meta.json gets its images beside it); name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = random_scene(24, sh_degree=1, seed=7)
    paths = {}
    for name in ("scene.ply", "scene.compressed.ply", "scene.splat", "scene.sog"):
        save(scene, folder / name)
    write_ply(folder / "ascii.ply", [("vertex", gaussian_rows(random_scene(6, seed=1)))], fmt="ascii")
    for version in (2, 3, 4):
        save(scene, folder / f"v{version}.spz", spz_version=version)
    (folder / "sog_parts").mkdir(exist_ok=True)
    save(scene, folder / "sog_parts" / "meta.json")
    for mode in (0, 1, 2):
        (folder / f"mode{mode}.ksplat").write_bytes(build_ksplat(random_scene(12, sh_degree=1, seed=mode), mode))
    _write_meshes(folder)
    shutil.copyfile(Path(__file__).parent / "data" / "splat_transform_gaussians.glb", folder / "splats.glb")
    for name in SPLAT_SEEDS + MESH_SEEDS:
        paths[name] = folder / ("sog_parts/meta.json" if name == "meta.json" else name)
    return paths


def _write_meshes(folder: Path) -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    (folder / "mesh.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in vertices)
                                     + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))  # fmt: skip
    (folder / "mesh.off").write_text(f"OFF\n4 4 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in vertices)
                                     + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces))  # fmt: skip
    stl = bytearray(80) + struct.pack("<I", len(faces))
    for tri in faces:
        stl += struct.pack("<3f", 0, 0, 1) + vertices[tri].astype("<f4").tobytes() + b"\0\0"
    (folder / "mesh.stl").write_bytes(bytes(stl))
    head = ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nelement face 4\nproperty list uchar int vertex_indices\nend_header\n").encode()  # fmt: skip
    body = vertices.astype("<f4").tobytes() + b"".join(b"\x03" + f.astype("<i4").tobytes() for f in faces)
    (folder / "mesh.ply").write_bytes(head + body)
    rng = np.random.default_rng(0)
    points = rng.standard_normal((30, 3)).astype(np.float32)
    write_ply(folder / "cloud.ply", [("vertex", np.rec.fromarrays(points.T, names="x,y,z"))])
    (folder / "cloud.pcd").write_bytes(
        b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 30\nHEIGHT 1\n"
        b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 30\nDATA binary\n" + points.astype("<f4").tobytes()
    )
    (folder / "cloud.xyz").write_text("".join(f"{x} {y} {z}\n" for x, y, z in points))
    (folder / "mesh.glb").write_bytes(_glb(vertices, faces))


def _glb(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """A minimal one-triangle-list glTF binary (positions + uint32 indices)."""
    import json

    pos = vertices.astype("<f4").tobytes()
    idx = faces.astype("<u4").tobytes()
    binary = pos + idx
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
                        {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": len(vertices), "type": "VEC3",
                       "min": vertices.min(0).tolist(), "max": vertices.max(0).tolist()},
                      {"bufferView": 1, "componentType": 5125, "count": faces.size, "type": "SCALAR"}],
    }  # fmt: skip
    raw = json.dumps(doc).encode()
    raw += b" " * (-len(raw) % 4)
    chunks = struct.pack("<II", len(raw), 0x4E4F534A) + raw + struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def mutate(data: bytes, kind: str, a: int, b: int, c: int) -> bytes:
    """`data` changed by mutation `kind`, parametrized by three non-negative integers (hypothesis draws them)."""
    n = len(data)
    out = bytearray(data)
    if kind == "truncate":
        return bytes(out[: a % n])
    if kind == "flip":  # one bit in the first 512 bytes (headers) and one anywhere
        out[a % min(n, 512)] ^= 1 << (c % 8)
        out[b % n] ^= 1 << ((c >> 3) % 8)
        return bytes(out)
    if kind == "absurd_count":
        value = ABSURD[c % len(ABSURD)]
        numbers = list(_NUMBER.finditer(data[:1024]))
        if numbers and b % 2 == 0:  # a number in a text header
            m = numbers[a % len(numbers)]
            return data[: m.start()] + str(value).encode() + data[m.end() :]
        at = (a % max(1, min(n, 1024) - 4)) & ~3
        out[at : at + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        return bytes(out)
    if kind == "wrong_magic":
        junk = struct.pack("<I", (a * 2654435761) & 0xFFFFFFFF)
        return junk[: min(4, n)] + data[4:]
    if kind == "nan_inf":
        value = (float("nan"), float("inf"), float("-inf"), 3.0e38)[c % 4]
        at = (a % max(1, n - 4)) & ~3
        out[at : at + 4] = struct.pack("<f", value)
        return bytes(out)
    raise ValueError(kind)


def write_case(seed: Path, data: bytes, folder: Path) -> Path:
    """The mutated `data` written under `folder` with the seed's name (meta.json: with the seed's images)."""
    folder.mkdir(parents=True, exist_ok=True)
    if seed.name == "meta.json":
        for image in seed.parent.glob("*.webp"):
            shutil.copyfile(image, folder / image.name)
    target = folder / seed.name
    target.write_bytes(data)
    return target


def outcome(path: Path) -> str:
    """Load `path`: "loaded" (a valid scene) or "refused" (a clean one-line FormatError naming it); re-raises
    anything else, an invalid loaded scene's SceneError included."""
    try:
        scene = load(path)
    except FormatError as exc:
        message = str(exc)
        if "\n" in message or str(path) not in message:
            raise AssertionError(f"unclear error for {path.name}: {message!r}") from exc
        return "refused"
    scene.validate(check_finite=True)  # shapes, dtypes, finite values: however the reader built the scene
    return "loaded"


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def run_many(seed: Path, count: int, folder: Path, rng_seed: int = 0) -> dict:
    """`count` random cases of every mutation of one seed; counts by outcome, the slowest case and the
    largest peak resident memory above the level before each case (Linux: VmHWM reset per case)."""
    import time
    import traceback

    rng = np.random.default_rng(rng_seed)
    data = seed.read_bytes()
    result = {"loaded": 0, "refused": 0, "bug": 0, "bugs": [], "max_seconds": 0.0, "max_extra_mb": 0.0}
    outcome(seed)  # warm up imports and caches
    try:  # a mutated file may fall through to the mesh reader: import open3d before measuring
        import open3d  # noqa: F401
    except ImportError:
        pass
    for kind in MUTATIONS:
        for i in range(count):
            a, b, c = (int(v) for v in rng.integers(0, 2**31, 3))
            case = write_case(seed, mutate(data, kind, a, b, c), folder / f"{kind}_{i}")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the peak-RSS mark
            except OSError:
                pass
            before = _rss("VmRSS")
            start = time.perf_counter()
            try:
                result[outcome(case)] += 1
            except Exception as exc:  # noqa: BLE001 - a bug to report, with its inputs
                result["bug"] += 1
                if len(result["bugs"]) < 5:
                    result["bugs"].append(f"{kind} {(a, b, c)}: {type(exc).__name__}: {str(exc)[:300]}")
                    result["bugs"][-1] += " @ " + traceback.format_exc().strip().splitlines()[-3][:200]
            result["max_seconds"] = max(result["max_seconds"], time.perf_counter() - start)
            result["max_extra_mb"] = max(result["max_extra_mb"], (_rss("VmHWM") - before) / 2**20)
            shutil.rmtree(case.parent, ignore_errors=True)
    return result
