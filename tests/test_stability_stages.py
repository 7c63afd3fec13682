"""Stability stages end to end on the tiny model: the embedded catalogue and the real SDSS17 sample.

Each test builds a temporary project (params.yaml on the smoke profile, dvc.yaml, a tiny models/base,
the catalogue) and runs the five stage mains in-process, in dvc.yaml's order, exactly as `dvc repro`
calls them; then the report contribution reads their outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED_SDSS17

from specllm.errors import InputError

STAGES = ("stability_sample", "stability_warmup", "stability_probe", "stability_analyze", "stability_dpo", "stability_reprobe")


def _project(tmp: Path, monkeypatch, **overrides) -> Path:
    from ruamel.yaml import YAML

    from specllm import config, paths
    from specllm.model.tiny import build_tiny

    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp / name)
    shutil.copytree(ROOT / "profiles", tmp / "profiles")
    config.apply_profile("smoke", tmp / "params.yaml", tmp / "profiles")
    y = YAML()
    tree = y.load((tmp / "params.yaml").read_text())
    for key, value in overrides.items():
        section, leaf = key.split(".")
        tree[section][leaf] = value
    with (tmp / "params.yaml").open("w") as fh:
        y.dump(tree, fh)
    (tmp / "data" / "raw").mkdir(parents=True)
    build_tiny(tmp / "models" / "base", hidden=32, layers=1, heads=2, seed=0)
    for name, value in (("ROOT", tmp), ("PARAMS", tmp / "params.yaml"), ("DVC_YAML", tmp / "dvc.yaml")):
        monkeypatch.setattr(paths, name, value)
    monkeypatch.setenv("SPECLLM_NO_PROGRESS", "1")
    return tmp


def _run_all(root: Path) -> dict:
    import importlib

    for stage in STAGES:
        importlib.import_module(f"specllm.stages.{stage}").main()
    res = root / "results" / "stability"
    return {name: json.loads((res / f"{name}.json").read_text())
            for name in ("sample", "warmup", "probe_json", "analysis", "dpo", "reprobe_json")
            if (res / f"{name}.json").is_file()} | {
        "probe": json.loads((res / "probe.json").read_text()), "reprobe": json.loads((res / "reprobe.json").read_text())}


def _check_outputs(root: Path, out: dict, n_objects: int, n_orders: int) -> None:
    res = root / "results" / "stability"
    objects = pd.read_csv(res / "objects.csv", dtype={"obj_id": str})
    assert len(objects) == n_objects and objects["class"].value_counts().nunique() == 1
    warm = pd.read_csv(res / "warmup_objects.csv", dtype={"obj_id": str})
    assert len(warm) and not set(warm["obj_id"]) & set(objects["obj_id"])  # the warm-up never sees a probed object
    w = out["warmup"]
    assert w["n_objects"] == len(warm) and w["steps"] > 0
    assert w["n_prompts"] == len(warm) * w["orders_per_object"] and w["probed_orders_taught"] == 0
    # the warm-up's own adapter shape (every linear layer), not DPO's (q_proj, v_proj)
    assert w["settings"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (root / "models" / "stability_warmup" / "adapter_model.safetensors").is_file()
    probe = pd.read_csv(res / "probe.csv", dtype={"obj_id": str})
    assert len(probe) == n_objects * n_orders
    hidden = np.load(res / "hidden.npz")
    assert hidden["hidden"].dtype == np.float16 and hidden["hidden"].shape[:2] == (n_objects, n_orders)
    assert out["probe"]["prompts_per_s"] > 0 and "n_tied" in out["probe"]
    assert out["probe"]["free_text"]["n_decoded"] == 8
    a = out["analysis"]
    assert set(a["per_class"]) == {"STAR", "GALAXY", "QSO"} and 0 <= a["overall"]["mean_pss"] <= 1
    assert {c["name"] for c in a["checks"]} >= {"physical_plausibility", "order_insensitivity", "clusters_match_answers"}
    assert a["baselines"]["readout"] in ("constant", "prior", "object") and 0 < a["baselines"]["prior_bound"] <= 1
    assert [s["sigma"] for s in a["k_scan"]] == sorted(s["sigma"] for s in a["k_scan"])
    assert a["variance"]["raw"]["order"]["share"] + a["variance"]["raw"]["object"]["share"] <= 1 + 1e-9
    assert out["probe"]["prefix_tokens"] > 0  # the shared prefix's cache was used
    spec = np.load(res / "spectral.npz")
    assert spec["eigvals"].shape == (n_objects, n_orders) and (spec["k"] >= 1).all()
    d = out["dpo"]
    assert sum(d["categories"].values()) == (objects["split"] == "alignment").sum()
    assert d["peak_memory_bytes"] > d["model_bytes"] > 0
    assert (root / "models" / "stability_dpo" / "adapter_model.safetensors").is_file()
    r = out["reprobe"]
    assert r["n_objects"] == (objects["split"] == "evaluation").sum()
    assert {"pss_before", "pss_after", "accuracy_before", "accuracy_after", "pss_test"} <= set(r["comparison"]["all"])
    # the report contribution reads every output and writes its tables and figures
    from specllm.report.macros import MacroSet
    from specllm.report.stability import add_stability

    ms = MacroSet()
    read = add_stability(ms, res, root / "generated", reference=ROOT / "data" / "reference" / "scse.json")
    assert res / "analysis.json" in read and len(ms) > 40
    assert (root / "generated" / "tables" / "stability_summary.tex").is_file()
    assert (root / "generated" / "figures" / "stability_eigenvalues.pdf").is_file()
    assert ms["stability.scse.mean_pss"].value == pytest.approx(0.0916)
    assert (root / "generated" / "tables" / "stability_baselines.tex").is_file()
    assert (root / "generated" / "figures" / "stability_k_sigma.pdf").is_file()
    from specllm.stability.verdicts import stability_verdicts

    rows = stability_verdicts(a, out["reprobe"], json.loads((ROOT / "data" / "reference" / "scse.json").read_text()))
    assert len(rows) == 4
    if a["baselines"]["readout"] == "constant":  # the tiny random model: nothing about order sensitivity is testable
        assert {r["verdict"] for r in rows} == {"not testable at this scale"}


@pytest.mark.slow
def test_stages_on_the_embedded_catalogue(tmp_path, monkeypatch):
    root = _project(tmp_path, monkeypatch)
    (root / "data" / "raw" / "catalogue.csv").symlink_to(ROOT / "data" / "raw" / "catalogue.csv")
    if not (root / "data" / "raw" / "catalogue.csv").is_file():
        pytest.skip("data/raw/catalogue.csv not built (make data)")
    out = _run_all(root)
    _check_outputs(root, out, n_objects=12, n_orders=8)


@pytest.mark.slow
def test_stages_on_the_real_sdss17_sample(tmp_path, monkeypatch):
    if not SHARED_SDSS17.is_file():
        pytest.skip(f"the real SDSS17 sample is not at {SHARED_SDSS17}")
    from specllm.data.sdss17 import import_sdss17

    root = _project(tmp_path, monkeypatch, **{"catalogue.source": "sdss17"})
    import_sdss17(SHARED_SDSS17, root / "data" / "external" / "sdss17")
    out = _run_all(root)
    assert out["sample"]["catalogue_source"] == "sdss17"
    assert out["sample"]["catalogue"] == "data/external/sdss17/catalogue.csv"
    _check_outputs(root, out, n_objects=12, n_orders=8)


def test_missing_sdss17_import_and_bad_catalogue_are_input_errors(tmp_path, monkeypatch):
    from specllm.stages import stability_sample

    root = _project(tmp_path, monkeypatch, **{"catalogue.source": "sdss17"})
    with pytest.raises(InputError) as err:
        stability_sample.main()
    assert err.value.field == "catalogue.source" and "import-sdss17" in err.value.fix
    (tmp_path / "b").mkdir()
    root = _project(tmp_path / "b", monkeypatch)
    cat = pd.DataFrame({"obj_id": ["S1", "G1", "Q1"], "class": ["STAR", "GALAXY", "QSO"], "u": [19, 19, 19],
                        "g": [18, np.nan, 18], "r": [17, 17, 17], "i": [16, 16, 16], "z": [15, 15, 15],
                        "redshift": [0, 0.1, 1.0]})
    cat.to_csv(root / "data" / "raw" / "catalogue.csv", index=False)
    with pytest.raises(InputError) as err:
        stability_sample.main()
    assert "G1" in err.value.field and err.value.field.startswith("g")


def test_too_many_orders_stop_at_the_params_check(tmp_path, monkeypatch):
    from specllm.stages import stability_sample

    _project(tmp_path, monkeypatch, **{"stability.n_orders": 3_628_801})
    with pytest.raises(InputError) as err:
        stability_sample.main()
    assert err.value.field == "stability.n_orders" and err.value.file.endswith("params.yaml")
