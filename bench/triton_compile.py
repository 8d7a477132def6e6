"""Compile the triton render backend's kernels for NVIDIA GPUs without one: registers, spills, seconds; JSON out.

    python bench/triton_compile.py                 # sm_80 (A100), sm_90 (H100/H200), sm_100 (B200)
    python bench/triton_compile.py --arch 90

Triton carries its own ptxas, so the whole pipeline (Python AST -> Triton IR -> PTX -> cubin) runs on a CPU-only
machine: a kernel that would not compile on a GPU fails here, and cuobjdump's resource usage shows register
pressure (STACK > 0 means spills), which is how engine/render/triton_kernels.py's ROWS and warps were chosen.
Timings still need a GPU (bench/gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("TRITON_INTERPRET") == "1":  # the interpreter compiles nothing
    os.environ["TRITON_INTERPRET"] = "0"

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def signature(fn, consts: dict) -> dict:
    """Triton types of the kernels' arguments: float32 tensors, int32 tile lists and sizes."""
    ints = {"width", "height", "tiles_w", "tiles_per_cam", "F"}
    int_ptrs = {"offsets", "ids", "last"}
    return {n: "constexpr" if n in consts else "i32" if n in ints else "*i32" if n in int_ptrs else "*fp32"
            for n in fn.arg_names}


def resources(cubin: bytes) -> dict:
    """REG / STACK / SHARED of a cubin, from triton's own cuobjdump."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True).stdout
    return {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK|SHARED):(\d+)", text)}


def compile_kernels(arch: int, num_feats: int = 4) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from engine.render import triton_kernels as TK

    fp = max(16, 1 << max(0, num_feats - 1).bit_length())
    out = {}
    for fn, warps in ((TK.rasterize_fwd, TK.WARPS_FWD), (TK.rasterize_bwd, TK.WARPS_BWD)):
        consts = {"TILE": TK.TILE_SIZE, "ROWS": TK.ROWS, "CHUNK": TK.CHUNK, "FP": fp}
        start = time.perf_counter()
        try:
            kernel = triton.compile(ASTSource(fn, signature(fn, consts), constexprs=consts),
                                    target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
        except Exception as exc:  # noqa: BLE001 - report per kernel and arch, keep going
            out[fn.__name__] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            continue
        entry = {"compile_s": round(time.perf_counter() - start, 1), "num_warps": warps, **consts}
        if kernel.asm.get("cubin"):
            entry.update(resources(kernel.asm["cubin"]))
        out[fn.__name__] = entry
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, action="append", help="compute capability x10 (repeatable)")
    args = parser.parse_args(argv)
    report = {f"sm_{arch}": compile_kernels(arch) for arch in (args.arch or [80, 90, 100])}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
