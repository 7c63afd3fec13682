"""An imported catalogue is a DVC input (issue 13): in a fresh copy, `dvc status` sees a re-import, and
with the import deleted DVC's run cache cannot bring back its results.

On main the stability stages did not depend on data/external/sdss17: a re-import left `dvc status`
clean, and `dvc repro -s stability_sample` with no import on disk restored the deleted import's
sample from the run cache. One fresh copy, one stage (seconds of compute): marked slow for the copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, fresh_copy, run_in
from test_sdss17 import rows, write

pytestmark = pytest.mark.slow


def _status(repo: Path, stage: str) -> dict:
    return json.loads(run_in(["dvc", "status", "--json", stage], repo).stdout or "{}")


def test_import_is_a_dependency_and_never_restored_after_deletion(tmp_path, monkeypatch):
    catalogue = ROOT / "data" / "raw" / "catalogue.csv"
    if not catalogue.is_file():
        pytest.skip("data/raw not built (make data)")
    repo = fresh_copy(tmp_path / "repo")
    (repo / "data" / "raw").mkdir(parents=True)
    shutil.copy2(catalogue, repo / "data" / "raw" / "catalogue.csv")
    params = repo / "params.yaml"
    text = params.read_text()
    assert "\n  source: embedded        # embedded (data/raw/catalogue.csv)" in text
    params.write_text(text.replace("\n  source: embedded        # embedded (data/raw/catalogue.csv)",
                                   "\n  source: sdss17        # embedded (data/raw/catalogue.csv)")
                      .replace("\n  warmup_per_class: ", "\n  warmup_per_class: 2  # the test's small import; was "))
    monkeypatch.setenv("PYTHONPATH", str(repo / "src"))  # the copy's code runs the stage
    run_in(["specllm", "data", "import-sdss17", str(write(tmp_path / "a.csv", rows(60)))], repo)
    run_in(["dvc", "repro", "-s", "stability_sample"], repo)
    assert _status(repo, "stability_sample") == {}
    record = (repo / "results" / "stability" / "sample.json").read_text()
    assert "data/external/sdss17/catalogue.csv" in record and str(tmp_path) not in record

    # a re-import of another file: dvc status names the stage and the changed import
    run_in(["specllm", "data", "import-sdss17", str(write(tmp_path / "b.csv", rows(90)))], repo)
    changed = json.dumps(_status(repo, "stability_sample"))
    assert "stability_sample" in changed and "data/external/sdss17" in changed

    # the import deleted: nothing may come back from the run cache (the first import's sample is in it)
    for name in ("catalogue.csv", "import.json"):
        (repo / "data" / "external" / "sdss17" / name).unlink()
    proc = run_in(["dvc", "repro", "-s", "stability_sample"], repo, check=False)
    assert proc.returncode != 0
    assert "import-sdss17" in proc.stderr and "not found" in proc.stderr
    assert "restored" not in (proc.stdout + proc.stderr).lower()
    assert not (repo / "results" / "stability" / "objects.csv").exists()
