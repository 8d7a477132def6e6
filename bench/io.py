"""Benchmark: peak memory and throughput of reading a large 3DGS .ply (and writing .ply / .spz /
.compressed.ply / .sog, each read back), or a large fuzz run over every reader.

    python bench/io.py                 # 200 MB file, a few minutes on a busy 2-core machine
    python bench/io.py --size-mb 1536  # the issue's 1.5 GB case (needs ~2 GB RAM and disk)
    python bench/io.py --fuzz 200      # 200 mutated files per reader and mutation kind, counts by outcome

Prints one JSON object. Each measurement runs in a fresh subprocess so its peak resident set (VmHWM from
/proc/self/status, Linux only) belongs to that operation alone; `peak_over_file` is
(peak RSS - RSS before the operation) / file size -- the requirement is <= ~1.3 for reads. The file was just
written, so it is probably in the page cache: `raw_read_mb_s` (plain sequential read of the same file in the
same conditions) is the "disk speed" to compare `load_mb_s` with. `*_cpu_seconds` (process CPU time) is less
sensitive than wall time to other jobs on a shared machine. Each write is followed by reading its output back
(`read_back_*_seconds`); the write's `cpu_seconds` and `extra_peak_over_file` include that read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_ply(path: Path, size_mb: float, sh_degree: int = 3, seed: int = 0) -> int:
    """Write a random INRIA-layout .ply of about `size_mb` MB block by block (little memory); return N."""
    sys.path.insert(0, str(ROOT))
    from engine.io.ply import property_names

    names = property_names(sh_degree)
    width = len(names)
    n = max(1, int(size_mb * 1e6 / (4 * width)))
    rng = np.random.default_rng(seed)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    block = 1 << 18
    o = names.index("opacity")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        for start in range(0, n, block):
            rows = rng.standard_normal((min(block, n - start), width), dtype=np.float32)
            rows[:, o + 1 : o + 4] = rows[:, o + 1 : o + 4] * 0.5 - 4.0  # log-scales
            f.write(rows.tobytes())
    return n


CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0
op, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
import numpy, torch, engine.io, engine.io.ply, engine.io.spz  # imports are not part of the measurement
before = rss("VmRSS:")
t, cpu = time.perf_counter(), time.process_time()
if op == "raw":
    buf = bytearray(32 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
else:
    scene = engine.io.load(path)
    if op != "load":
        t, cpu = time.perf_counter(), time.process_time()
        before = rss("VmRSS:")  # writing: measure on top of the loaded scene
        engine.io.save(scene, out)
        if op == "save_load":
            elapsed_write = time.perf_counter() - t
            t2 = time.perf_counter()
            engine.io.load(out)
            print(json.dumps({{"read_back_seconds": time.perf_counter() - t2}}))
elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
print(json.dumps({{"seconds": elapsed, "cpu_seconds": cpu, "before": before, "peak": rss("VmHWM:")}}))
"""


def measure(op: str, path: Path, out: Path) -> dict:
    code = CHILD.format(root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, op, str(path), str(out)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{op} failed: {done.stderr.strip()}")
    lines = [json.loads(line) for line in done.stdout.strip().splitlines() if line.startswith("{")]
    return {k: v for line in lines for k, v in line.items()}


FUZZ_CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.io.fuzz_cases import run_many
print(json.dumps(run_many(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
"""


def fuzz(count: int, folder: Path, rng_seed: int) -> dict:
    """`count` cases per reader and mutation, each reader in its own subprocess (a crash is counted, not
    fatal); counts by outcome, the slowest case and the largest peak memory above the level before it."""
    sys.path.insert(0, str(ROOT))
    from tests.io.fuzz_cases import MESH_SEEDS, MUTATIONS, SPLAT_SEEDS, make_seeds

    seeds = make_seeds(folder / "seeds")
    per_seed, total = {}, {"loaded": 0, "refused": 0, "bug": 0, "crash": 0}
    for name in SPLAT_SEEDS + MESH_SEEDS:
        args = [str(seeds[name]), str(count), str(folder / "cases" / name), str(rng_seed)]
        done = subprocess.run([sys.executable, "-c", FUZZ_CHILD.format(root=str(ROOT)), *args], capture_output=True, text=True)
        if done.returncode:
            per_seed[name] = {"crash": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
            total["crash"] += 1
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        per_seed[name] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items() if v or k != "bugs"}
        for key in ("loaded", "refused", "bug"):
            total[key] += result[key]
    worst_s = max((r.get("max_seconds", 0) for r in per_seed.values()), default=0)
    worst_mb = max((r.get("max_extra_mb", 0) for r in per_seed.values()), default=0)
    return {"fuzz_cases_per_reader_and_mutation": count, "mutations": list(MUTATIONS), "total": total,
            "max_seconds_per_case": round(worst_s, 3), "max_extra_peak_mb_per_case": round(worst_mb, 1),
            "per_reader": per_seed}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=200.0, help="size of the generated .ply (default 200)")
    parser.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to put the temporary files")
    parser.add_argument("--skip-writes", action="store_true", help="only measure reading")
    parser.add_argument("--fuzz", type=int, default=0, metavar="N",
                        help="instead: fuzz every reader with N cases per mutation kind and print the outcomes")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="random seed of the fuzz cases")
    args = parser.parse_args(argv)

    if args.fuzz:
        import shutil

        work = Path(tempfile.mkdtemp(prefix="bench-fuzz-", dir=args.dir))
        try:
            result = fuzz(args.fuzz, work, args.seed)
            result["cpu_count"] = os.cpu_count()
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(result))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-io-", dir=args.dir))
    src = work / "big.ply"
    try:
        t = time.perf_counter()
        n = make_ply(src, args.size_mb, args.sh_degree)
        size = src.stat().st_size
        result = {
            "file_mb": round(size / 1e6, 1),
            "gaussians": n,
            "sh_degree": args.sh_degree,
            "generate_seconds": round(time.perf_counter() - t, 2),
        }
        raw = measure("raw", src, work / "unused")
        load = measure("load", src, work / "unused")
        result.update(
            raw_read_mb_s=round(size / 1e6 / raw["seconds"], 1),
            raw_read_cpu_seconds=round(raw["cpu_seconds"], 2),
            load_seconds=round(load["seconds"], 2),
            load_cpu_seconds=round(load["cpu_seconds"], 2),
            load_mb_s=round(size / 1e6 / load["seconds"], 1),
            load_peak_rss_mb=round(load["peak"] / 1e6, 1),
            load_rss_before_mb=round(load["before"] / 1e6, 1),
            peak_over_file=round((load["peak"] - load["before"]) / size, 3),
        )
        if not args.skip_writes:
            for ext in ("ply", "spz", "compressed.ply", "sog"):
                w = measure("save_load", src, work / f"out.{ext}")
                result[f"read_back_{ext}_seconds"] = round(w["read_back_seconds"], 2)
                out_size = (work / f"out.{ext}").stat().st_size
                result[f"write_{ext}_seconds"] = round(w["seconds"] - w["read_back_seconds"], 2)
                result[f"write_{ext}_cpu_seconds"] = round(w["cpu_seconds"], 2)
                result[f"write_{ext}_mb"] = round(out_size / 1e6, 1)
                result[f"write_{ext}_extra_peak_over_file"] = round((w["peak"] - w["before"]) / size, 3)
        result["cpu_count"] = os.cpu_count()
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(result))
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
