"""Cost records (specllm.cost) and the provenance stage on a small fake project."""

from __future__ import annotations

import json
from pathlib import Path

from specllm import cost
from specllm.report.macros import MacroSet
from specllm.stages import provenance

LOCK = """schema: '2.0'
stages:
  prepare:
    cmd: python -m specllm.stages.prepare
    deps:
    - path: data/raw
      md5: feedbeef.dir
    params:
      params.yaml:
        data.n_train: 160
        seed: 1
    outs:
    - path: data/prepared
      md5: 1234abcd.dir
    - path: results/data_summary.json
      md5: 5678
  baseline:
    cmd: python -m specllm.stages.baseline
    params:
      params.yaml:
        baseline.n_neighbors: 10
    outs:
    - path: results/baseline_predictions.csv
      md5: 9abc
    - path: results/baseline.json
      md5: def0
  report:
    cmd: python -m specllm.stages.report
    params:
      params.yaml:
        profile: smoke
        data.n_train: 160
    outs:
    - path: paper/generated
      md5: 0000.dir
"""
PARAMS = {"cost.usd_per_gpu_hour": 4.1, "provenance.repo_url": "https://github.com/org/specllm",
          "provenance.repo_ref": "v1"}


def test_cost_record_is_written_only_under_dvc(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVC runs each stage in the project root
    with cost.record({}):
        sum(range(1000))
    assert not (tmp_path / "results").exists()
    env = {"DVC_STAGE": "train_lr@1e-05", "DVC_ROOT": str(tmp_path)}
    with cost.record(env):
        _ = [0] * 100_000
    rec = json.loads((tmp_path / "results" / "cost" / "train_lr@1e-05.json").read_text())
    assert rec["stage"] == "train_lr@1e-05" and rec["wall_s"] >= 0 and rec["peak_rss_mib"] > 0
    assert rec["gpus"] == [] and rec["gpu_hours"] == 0 and rec["world_size"] == 1
    assert set(rec["hardware"]) == {"cpu", "usable_cores", "torch_threads"}
    with cost.record({"DVC_STAGE": "paper", "DVC_ROOT": str(tmp_path)}):
        pass
    assert (tmp_path / "results" / "cost_final" / "paper.json").is_file()  # downstream of provenance


def test_a_failed_stage_writes_no_record(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"DVC_STAGE": "prepare", "DVC_ROOT": str(tmp_path)}
    try:
        with cost.record(env):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not (tmp_path / "results" / "cost" / "prepare.json").exists()


def fake_project(root: Path) -> Path:
    ms = MacroSet()
    ms.add("data.n_train", 160, source="params.yaml", kind="int")
    ms.add("split.train.z_median", 0.1, source="data/prepared/train_meta.csv", kind="float", precision=3)
    ms.add("baseline.best.mae", 0.0431, source="results/baseline.json", kind="float", precision=4)
    gen = root / "paper" / "generated"
    ms.write(gen / "macros.tex", gen / "values.json")
    (gen / "tables").mkdir()
    (gen / "tables" / "baseline.tex").write_text("x\n")
    (gen / "figures").mkdir()
    (gen / "figures" / "baseline_predictions.png").write_bytes(b"png")
    (root / "results" / "cost").mkdir(parents=True)
    (root / "results" / "baseline_predictions.csv").write_text("a\n1\n")
    (root / "results" / "baseline.json").write_text("{}\n")
    (root / "results" / "environment.json").write_text(json.dumps({"python": {"version": "3.11"}}))
    for stage, gpus in (("prepare", []), ("baseline", ["NVIDIA A100-SXM4-80GB"])):
        (root / "results" / "cost" / f"{stage}.json").write_text(json.dumps({
            "stage": stage, "wall_s": 360.0, "cpu_s": 720.0, "cpu_hours": 0.2, "gpu_hours": 0.1 if gpus else 0.0,
            "gpus": gpus, "peak_rss_mib": 512.0, "cuda_max_allocated_mib": 1024.0 if gpus else None}))
    (root / "dvc.lock").write_text(LOCK)
    (root / "data.dvc").write_text("outs:\n- md5: feedbeef.dir\n  size: 10\n  nfiles: 3\n  path: raw\n")
    (root / "params.yaml").write_text("profile: smoke\n")
    return root


def test_provenance_records_and_appendix(tmp_path: Path):
    root = fake_project(tmp_path)
    out_dir = root / "paper" / "generated_provenance"
    rec = provenance.write_provenance(root, PARAMS, root / "results" / "provenance.json", out_dir)
    macros = {m["name"]: m for m in rec["macros"]}
    assert macros["SplitTrainZMedian"]["source_stage"] == "prepare"
    assert macros["SplitTrainZMedian"]["params"] == {"data.n_train": 160, "seed": 1}
    assert macros["DataNTrain"]["params"] == {"data.n_train": 160}  # a params.yaml value depends on itself
    assert macros["BaselineBestMae"]["stage"] == "report" and macros["BaselineBestMae"]["data_hash"] == "feedbeef.dir"
    fig = next(a for a in rec["artifacts"] if a["id"] == "figure:baseline_predictions")
    assert fig["data_stages"] == ["baseline"] and fig["params"]["baseline.n_neighbors"] == 10
    assert fig["link"] == "https://github.com/org/specllm/blob/v1/src/specllm/report/figures.py"
    assert "git_commit" in rec["code"] and "dirty" in rec["code"]
    assert rec["cost"]["totals"]["gpu_hours"] == 0.1 and abs(rec["cost"]["totals"]["usd"] - 0.41) < 1e-9
    assert json.loads((root / "results" / "provenance.json").read_text())["stages"]["baseline"]["cost"]["gpus"]

    tex = (out_dir / "macros.tex").read_text()
    assert "\\newcommand{\\LinkFigureBaselinePredictions}{\\protect\\href{https://github.com/org/specllm/blob/v1/" \
           "src/specllm/report/figures.py}{\\protect\\nolinkurl{src/specllm/report/figures.py}}" in tex
    assert "\\newcommand{\\SourceLink}" in tex and "\\ComputeUsd}{0.41}" in tex
    table = (out_dir / "tables" / "cost.tex").read_text()
    assert "NVIDIA A100-SXM4-80GB" in table and "report" in table and "no record" in table
    assert "feedbeef" in (out_dir / "tables" / "data_hashes.tex").read_text()
    appendix = (out_dir / "appendix.tex").read_text()
    assert "\\input{generated_provenance/tables/cost.tex}" in appendix
    # The TeX does not depend on git state: a second run gives the same bytes.
    before = {p.name: p.read_bytes() for p in out_dir.rglob("*.tex")}
    provenance.write_provenance(root, PARAMS, root / "results" / "provenance.json", out_dir)
    assert {p.name: p.read_bytes() for p in out_dir.rglob("*.tex")} == before
    assert rec["code"]["git_commit"] is None or rec["code"]["git_commit"] not in "".join(
        b.decode() for b in before.values())


def test_links_are_relative_to_the_pdf_without_a_repository_url(tmp_path: Path):
    root = fake_project(tmp_path)
    params = {**PARAMS, "provenance.repo_url": ""}
    rec = provenance.write_provenance(root, params, root / "results" / "provenance.json",
                                      root / "paper" / "generated_provenance")
    assert {a["link"] for a in rec["artifacts"]} >= {"../src/specllm/report/figures.py"}


INJECTIONS = (r"\input{/etc/passwd}", r"\immediate\write18{touch /tmp/pwned}", "main}\\write18{id}{",
              "https://github.com/org/specllm}\\input{/etc/passwd}", "https://x.org/%0A\\write18")


def test_repository_link_params_cannot_inject_tex(tmp_path: Path):
    """provenance.repo_url / repo_ref reached LaTeX unescaped on main: an injected \\input or \\write18
    broke the build. Both are checked as an https URL and a git ref name, as params and in the stage."""
    import pytest
    from conftest import ROOT

    from specllm import config
    from specllm.errors import InputError

    root = fake_project(tmp_path)
    text = (ROOT / "params.yaml").read_text()
    assert '  repo_url: ""' in text and "  repo_ref: main" in text
    for key, bad in [("repo_url", b) for b in INJECTIONS] + [("repo_ref", b) for b in INJECTIONS]:
        quoted = "'" + bad.replace("'", "''") + "'"
        line = '  repo_url: ""' if key == "repo_url" else "  repo_ref: main"
        params_file = tmp_path / "params.yaml"
        params_file.write_text(text.replace(line, f"  {key}: {quoted}", 1))
        with pytest.raises(InputError) as err:
            config.load(params_file)
        assert err.value.field == f"provenance.{key}" and str(params_file) == err.value.file
        with pytest.raises(InputError) as err:
            provenance.write_provenance(root, {**PARAMS, f"provenance.{key}": bad},
                                        root / "results" / "provenance.json", root / "paper" / "generated_provenance")
        assert err.value.field == f"provenance.{key}"
    assert not (root / "paper" / "generated_provenance").exists()  # nothing written
    # a real repository and tag pass
    params_file.write_text(text.replace('  repo_url: ""', "  repo_url: https://github.com/org/specllm", 1)
                           .replace("  repo_ref: main", "  repo_ref: v1.0/paper-2026", 1))
    assert config.load(params_file)["provenance.repo_url"] == "https://github.com/org/specllm"
