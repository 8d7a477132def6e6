"""Fuzz every reader: truncations, bit flips (headers and bodies), absurd counts, wrong magic, NaN/Inf.

Each mutated file must load as a valid scene or be refused with a one-line FormatError naming it, within
the hypothesis deadline, without growing the process by more than MAX_EXTRA_MB. CI runs few examples per
reader and mutation (derandomized, so the run is the same each time); SPLATEDIT_FUZZ_EXAMPLES raises the
number, and `python bench/io.py --fuzz N` runs a large batch in subprocesses and prints counts by outcome.
"""

from __future__ import annotations

import os
import resource
import tempfile
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.io.fuzz_cases import MESH_SEEDS, MUTATIONS, SPLAT_SEEDS, make_seeds, mutate, outcome, write_case  # noqa: E402

EXAMPLES = int(os.environ.get("SPLATEDIT_FUZZ_EXAMPLES", "4"))
MAX_EXTRA_MB = 300
OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    paths = make_seeds(tmp_path_factory.mktemp("fuzz_seeds"))
    for path in paths.values():  # warm up every reader (imports, open3d) before memory is measured
        outcome(path)
    return paths


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("name", SPLAT_SEEDS + MESH_SEEDS)
def test_mutated_files_load_or_fail_cleanly(seeds, name, mutation):
    seed = seeds[name]
    data = seed.read_bytes()
    baseline = _peak_mb()

    @settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(a=st.integers(0, 2**31), b=st.integers(0, 2**31), c=st.integers(0, 2**31))
    def check(a, b, c):
        with tempfile.TemporaryDirectory() as folder:
            path = write_case(seed, mutate(data, mutation, a, b, c), Path(folder))
            OUTCOMES[(name, mutation, outcome(path))] += 1

    check()
    # ru_maxrss is the process's high-water mark: it only grows if a case went past every earlier peak
    assert _peak_mb() - baseline < MAX_EXTRA_MB


def test_the_issues_giga_vertex_files_are_among_the_cases(seeds, tmp_path):
    # the absurd-count mutation with a 10^9 value, applied to the count in every mesh/cloud header
    from engine.io import FormatError, load

    for name in ("mesh.off", "mesh.ply", "cloud.ply", "cloud.pcd"):
        data = seeds[name].read_bytes()
        absurd = 0
        for a in range(20):  # every number of the text headers (the .pcd has 16)
            path = write_case(seeds[name], mutate(data, "absurd_count", a, 0, 4), tmp_path / f"{name}_{a}")
            assert outcome(path) in ("loaded", "refused")
            try:
                load(path)
            except FormatError as exc:
                absurd += "absurd" in str(exc) and "1000000000" in str(exc)
        assert absurd >= 1, name  # some count became 10^9 and was refused as absurd, before open3d


def teardown_module(module):
    report = os.environ.get("SPLATEDIT_FUZZ_REPORT")
    if report:
        import json

        counts = Counter()
        for (name, mutation, result), k in OUTCOMES.items():
            counts[result] += k
        per_seed: dict = {}
        for (name, mutation, result), k in OUTCOMES.items():
            per_seed.setdefault(name, Counter())[result] += k
        Path(report).write_text(json.dumps({"total": dict(counts), "per_seed": {k: dict(v) for k, v in per_seed.items()}}))
