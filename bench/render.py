"""Renderer benchmark: prints JSON figures (timings, peak memory, compile time) for the CPU backend, and for
gsplat when CUDA is available.

    python bench/render.py            # full run (7 repeats per case)
    python bench/render.py --quick    # 3 repeats, skips the cold-compile measurement

Each case runs in its own subprocess so that its peak memory (VmHWM from /proc, which also sees numba's
allocations, unlike tracemalloc) is its own; the peak is reported above the process's resident size after
imports and a warm-up render of a tiny scene. Timings are medians (and minima) over repeats, after one
untimed call (median_cpu_s: process CPU time of all threads, a load-insensitive measure of the work;
on an idle machine wall time is roughly that divided by the thread count plus the serial parts); compile
time is measured separately: "cold" compiles every kernel from scratch into an empty
numba cache (what a fresh checkout pays once), "warm" is the first render of a new process with the cache
filled. Scene: `random_scene(n, sh_degree=3)` (centres in [-1, 1]^3, scales 0.01-0.05), seen from an orbit
camera framed on it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (name, mode, image size, Gaussians, target seconds)
CASES = [
    ("forward 256x256, 10k", "forward", 256, 10_000, None),
    ("forward 256x256, 50k", "forward", 256, 50_000, None),
    ("forward 256x256, 150k", "forward", 256, 150_000, 0.25),
    ("forward+backward 128x128, 20k", "backward", 128, 20_000, 0.08),
    ("forward+backward 512x512, 150k", "backward", 512, 150_000, 0.5),
    ("forward 512x512, 150k", "forward", 512, 150_000, None),
]
MEMORY_LIMIT_MB = 1024.0  # forward+backward at 512x512 with 150k Gaussians must stay within 1 GB


def _status_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _setup(size: int, num: int, device: str):
    import torch

    from engine.camera import framing_radius, orbit_cameras
    from engine.scene import random_scene

    scene = random_scene(num, sh_degree=3).to(device)
    cams = orbit_cameras(torch.zeros(3), framing_radius(math.sqrt(3.0), 45.0), [30.0], 20.0, width=size,
                         height=size, fov_y_deg=45.0).to(device)
    return scene, cams


def run_case(mode: str, size: int, num: int, repeats: int, backend: str) -> dict:
    """One case in this process: timings and peak memory."""
    import torch

    from engine.render import render

    device = "cuda" if backend == "gsplat" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tiny_scene, tiny_cams = _setup(32, 200, device)  # load compiled kernels before the baseline
    tiny = {k: v.clone().requires_grad_(True) for k, v in tiny_scene.items()}
    render(type(tiny_scene)(**tiny), tiny_cams, backend=backend).rgb.sum().backward()

    scene, cams = _setup(size, num, device)
    weights = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0)).to(device)
    baseline_kb = _status_kb("VmRSS")
    hwm_reset = _reset_peak_rss()

    cpu_times: list[float] = []

    def once() -> float:
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        if mode == "forward":
            with torch.no_grad():
                render(scene, cams, backend=backend)
        else:
            leaves = {k: v.detach().requires_grad_(True) for k, v in scene.items()}
            out = render(type(scene)(**leaves), cams, backend=backend)
            ((out.rgb * weights).sum() + out.alpha.sum()).backward()
        sync()
        cpu_times.append(time.process_time() - cpu_start)
        return time.perf_counter() - start

    first = once()
    cpu_times.clear()
    times = sorted(once() for _ in range(repeats))
    result = {
        "median_s": round(times[len(times) // 2], 4),
        "min_s": round(times[0], 4),
        "median_cpu_s": round(sorted(cpu_times)[len(cpu_times) // 2], 4),  # all threads; less load-sensitive
        "first_call_s": round(first, 4),
        "repeats": repeats,
        "peak_mem_mb": round((_status_kb("VmHWM") - baseline_kb) / 1024, 1) if hwm_reset else None,
    }
    if device == "cuda":
        result["peak_cuda_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def measure_compile(cold: bool) -> float:
    """Seconds for the first float32 forward+backward of a tiny scene in a new process (cold: empty cache)."""
    code = (
        "import time, torch; t = time.perf_counter();"
        "from engine.render import render;"
        "from engine.scene import random_scene; from engine.camera import orbit_cameras;"
        "s = random_scene(100, sh_degree=3); p = {k: v.requires_grad_(True) for k, v in s.items()};"
        "c = orbit_cameras(torch.zeros(3), 5.0, [0.0], 0.0, width=32, height=32);"
        "render(type(s)(**p), c, backend='torch').rgb.sum().backward();"
        "print(time.perf_counter() - t)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats per case, no cold-compile measurement")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: mode:size:num:backend
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    if args.case:
        mode, size, num, backend = args.case.split(":")
        print(json.dumps(run_case(mode, int(size), int(num), repeats, backend)))
        return 0

    import numba
    import torch

    from engine.render import cpu

    report: dict = {
        "machine": {
            "cpu_count": os.cpu_count(), "render_threads": cpu.NUM_THREADS, "python": platform.python_version(),
            "torch": torch.__version__, "numba": numba.__version__, "load_avg_1min": os.getloadavg()[0],
        },
        "scene": "random_scene(n, sh_degree=3), orbit camera at framing_radius(sqrt(3), 45 deg), fov 45",
    }
    if not args.quick:
        report["compile_s"] = {"cold_first_call": measure_compile(True), "warm_cache_first_call": measure_compile(False)}
    backends = ["torch"] + (["gsplat"] if torch.cuda.is_available() else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for backend in backends:
        rows = []
        for name, mode, size, num, target in CASES:
            proc = subprocess.run(
                [sys.executable, __file__, "--case", f"{mode}:{size}:{num}:{backend}", "--repeats", str(repeats)],
                env=env, capture_output=True, text=True,
            )
            row = {"case": name}
            if proc.returncode != 0:
                row["error"] = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            else:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                if target is not None and backend == "torch":
                    row["target_s"] = target
                    row["meets_target"] = row["median_s"] <= target
                if mode == "backward" and size == 512 and row.get("peak_mem_mb") is not None:
                    row["within_1gb"] = row["peak_mem_mb"] <= MEMORY_LIMIT_MB
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)  # progress
        report["cpu" if backend == "torch" else "gsplat"] = rows
    report["machine"]["load_avg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
