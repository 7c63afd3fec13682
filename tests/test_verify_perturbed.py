"""A smoke run made with perturbed numerics passes `specllm verify` against the committed frozen values.

Another reviewer's CPU cannot be run here, so its effect is imitated (conftest.perturbed_env): one thread
everywhere, OpenBLAS's kernels for an older core, numpy's AVX-512 dispatch off, torch and oneDNN/MKL
capped at AVX2: the code paths of an AVX2-only host such as the AMD EPYC of issue 13. conftest.perturbed_run
is a copy of the suite's smoke run whose computing stages (one of each kind) ran again under that
environment; it is compared with
paper/reported/smoke.json as committed (frozen on the reference host). It must verify with 0 failures,
with some values only *within tolerance* (else the perturbation did nothing and the test proves
nothing), and an altered result must still fail. The worst differences per tolerance group are printed (`pytest -s`): they are the
measurements behind verify.TOLERANCES.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import copy_run

from specllm import verify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory, perturbed_run) -> Path:
    """This module's copy of conftest.perturbed_run (test_an_altered_result_still_fails edits it and restores it)."""
    return copy_run(perturbed_run, tmp_path_factory.mktemp("perturbed") / "specllm")


def _worst(rows) -> dict[str, float]:
    """The largest relative difference per tolerance label, from the rows' regenerated column."""
    out: dict[str, float] = {}
    for r in rows:
        m = re.search(r"rel diff ([0-9.e+-]+)", r.regenerated)
        if r.verdict == "within tolerance" and m:
            out[r.tolerance] = max(out.get(r.tolerance, 0.0), float(m.group(1)))
    return out


def test_a_perturbed_smoke_run_is_reproduced_within_tolerance(perturbed):
    frozen = json.loads((perturbed / "paper" / "reported" / "smoke.json").read_text())
    rows = verify.compare(frozen, verify.load_values(perturbed), perturbed)
    n = verify.summary(rows)
    print("\nperturbed smoke run vs paper/reported/smoke.json:", n)
    for label, worst in sorted(_worst(rows).items()):
        print(f"  worst relative difference, {label}: {worst:.2e}")
    failed = [r for r in rows if r.verdict in verify.FAILING]
    assert not failed, verify.render(failed)
    assert n["within tolerance"] > 0, "the perturbation changed nothing: it proves nothing"
    lines: list[str] = []
    assert verify.verify(perturbed, repro=False, out=lines.append) == 0
    assert "verify: OK (reproduced within tolerance)" in lines[-1]


def test_an_altered_result_still_fails(perturbed):
    values = perturbed / "paper" / "generated" / "values.json"
    preds = perturbed / "results" / "baseline_predictions.csv"
    saved = values.read_text(), preds.read_text()
    try:
        data = json.loads(saved[0])
        mae = next(m for m in data["macros"] if m["name"] == "BaselineKnnMae")
        mae["value"] *= 1 + 1e-4  # a real change: far beyond 3e-8, invisible in the 4 printed digits
        values.write_text(json.dumps(data))
        lines = saved[1].splitlines()
        cells = lines[1].split(",")
        col = next(i for i, c in enumerate(cells) if re.fullmatch(r"-?\d+\.\d+", c) and not math.isclose(float(c), 0))
        cells[col] = repr(float(cells[col]) + 0.01)  # one prediction moved by 0.01
        preds.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
        out: list[str] = []
        assert verify.verify(perturbed, repro=False, only_failures=True, out=out.append) == 1
        text = "\n".join(out)
        assert re.search(r"^BaselineKnnMae .*MISMATCH", text, re.M)
        assert re.search(r"^figure:baseline_predictions results/baseline_predictions.csv .*MISMATCH", text, re.M)
    finally:
        values.write_text(saved[0])
        preds.write_text(saved[1])
