"""Refuse a scene that would not fit in memory before reading it, with a message that says so.

A 6-million-Gaussian capture at SH degree 3 is 1.4 GB of float32 parameters; on a small machine (or a Space)
reading it half-way and then being killed by the OOM killer loses the session and says nothing. `load` asks
`check_fits` first: the Gaussian count the file declares (a .ply header, a .compressed.ply header, a .splat's
size) gives the bytes the loaded scene takes (`scene_bytes`), which must fit in the memory available now
(MemAvailable, and the cgroup's limit when one is set).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FormatError

# The loaded scene's float32 parameters per Gaussian, besides the SH rest: means 3, quats 4, scales 3,
# opacity 1, sh0 3.
BASE_FLOATS = 14
# Headroom kept free for the process's other work (the app, its renders) while a scene loads.
RESERVE_BYTES = 256 << 20


def scene_bytes(count: int, sh_degree: int) -> int:
    """Bytes of a loaded float32 scene of `count` Gaussians at `sh_degree`."""
    return 4 * count * (BASE_FLOATS + 3 * ((sh_degree + 1) ** 2 - 1))


def available_memory() -> int | None:
    """Bytes this process can still allocate: the smaller of MemAvailable and the cgroup's remaining limit
    (None when neither can be read, e.g. not on Linux: then nothing is refused)."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                limits.append(int(limit) - int(Path(usage_file).read_text().strip()))
            break
        except (OSError, ValueError):
            continue
    return min(limits) if limits else None


def declared_scene_bytes(path: Path, fmt: str) -> int | None:
    """Bytes of the scene the file at `path` (format `fmt`, engine.io's names) declares, from its header
    alone; None when the format does not say cheaply."""
    if fmt in ("ply", "compressed_ply"):
        from .ply import F_REST_COUNTS
        from .ply_header import read_ply_header

        header = read_ply_header(path)
        vertex = header.element("vertex")
        if vertex is None:
            return None
        if fmt == "ply" and header.is_binary:
            header.check_binary_size("vertex")  # a count the file cannot hold is a truncated file, said so
        if not header.is_binary and vertex.count * 2 * len(vertex.properties) > path.stat().st_size:
            return None  # an ascii body cannot hold that many rows: the reader says so precisely
        rest = sum(1 for name in vertex.property_names if name.startswith("f_rest_"))
        degree = F_REST_COUNTS.get(rest, 3) if fmt == "ply" else 3  # compressed: up to degree 3
        return scene_bytes(vertex.count, degree)
    if fmt == "splat":
        return scene_bytes(path.stat().st_size // 32, 0)  # 32 bytes per Gaussian, degree 0
    return None


def check_fits(path: str | os.PathLike, fmt: str, available: int | None = None) -> None:
    """FormatError when the scene the file declares would not fit in `available` bytes (default: what
    `available_memory` reports, less RESERVE_BYTES); nothing of the body is read."""
    p = Path(path)
    needed = declared_scene_bytes(p, fmt)
    if needed is None:
        return
    if available is None:
        free = available_memory()
        if free is None:
            return
        available = free - RESERVE_BYTES
    if needed > available:
        raise FormatError(
            p, f"the scene it declares needs about {_gb(needed)} of memory to load, but only {_gb(max(available, 0))} "
            "is available; close other scenes or programs, or use a machine with more memory",
        )


def _gb(num: int) -> str:
    return f"{num / 2**30:.2f} GB"
