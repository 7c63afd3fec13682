"""specllm.data.sdss17: the real 10k-row sample (from shared/, never copied) and synthetic bad CSVs."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from specllm import cli
from specllm.data import sdss17
from specllm.errors import InputError

HERE = Path(__file__).resolve()
# shared/ sits beside the repository in CI (<repo>/../shared) and inside it on some machines.
SAMPLE = next((p for p in (HERE.parents[2] / "shared" / "data" / "sdss17" / "star_classification_sample10k.csv",
                           HERE.parents[1] / "shared" / "data" / "sdss17" / "star_classification_sample10k.csv")
               if p.is_file()), None)
needs_sample = pytest.mark.skipif(SAMPLE is None, reason="shared/data/sdss17/star_classification_sample10k.csv "
                                  "not found beside the repository (<repo>/../shared or <repo>/shared)")


def rows(n: int = 30) -> list[dict[str, str]]:
    """Plausible SDSS17 rows written the way the Kaggle CSV writes them (ids as float text)."""
    out = []
    for k in range(n):
        cls = ("GALAXY", "STAR", "QSO")[k % 3]
        plate, mjd, fiber = 266 + k, 51602 + k, 1 + k
        out.append({
            "obj_ID": repr(float(1237648704577142822 + (k // 2) * 10)),  # pairs collide after float rounding
            "alpha": f"{10.0 + k:.6f}", "delta": f"{-1.0 + 0.1 * k:.6f}",
            "u": f"{19.0 + 0.01 * k:.5f}", "g": "18.12345", "r": "17.5", "i": "17.25", "z": "17.00001",
            "run_ID": "756", "rerun_ID": "301", "cam_col": str(1 + k % 6), "field_ID": str(100 + k),
            "spec_obj_ID": repr(float((plate << 50) + (fiber << 38) + ((mjd - 50000) << 24))),
            "class": cls, "redshift": {"GALAXY": "0.1234567", "STAR": "-7.009829e-05", "QSO": "2.5"}[cls],
            "plate": str(plate), "MJD": str(mjd), "fiber_ID": str(fiber),
        })
    return out


def write(path: Path, records: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(sdss17.COLUMNS)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in records:
            w.writerow([r.get(h, "") for h in header])
    return path


# -------------------------------------------------------------------------- the real sample


@needs_sample
def test_shared_sample_imports_with_warning(tmp_path, capsys):
    out = tmp_path / "sdss17"
    assert cli.main(["data", "import-sdss17", str(SAMPLE), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "warning:" in printed.err and "not the published full file: 10,000 rows" in printed.err
    assert "results will not match the paper" in printed.err and sdss17.EXPECTED_SHA256 in printed.err
    assert "1 magnitude_sentinel (cells: u 1, g 1, z 1); lines 7720" in printed.out
    assert "kept 9,999 rows: GALAXY 5,975, QSO 1,886, STAR 2,138" in printed.out

    report = json.loads((out / "import.json").read_text())
    assert report["verified_full_release"] is False
    assert report["source"]["bytes"] == SAMPLE.stat().st_size
    assert report["source"]["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert report["rows_in"] == 10_000 and report["rows_out"] == 9_999 and report["dropped_total"] == 1
    assert report["dropped"]["magnitude_sentinel"] == 1 and sum(report["dropped"].values()) == 1
    assert report["dropped_lines"] == {"magnitude_sentinel": [7720]}
    assert report["classes_in"] == {"GALAXY": 5975, "QSO": 1886, "STAR": 2139}
    assert report["classes_out"] == {"GALAXY": 5975, "QSO": 1886, "STAR": 2138}
    assert report["obj_ID_repeats"]["rows"] == 583 and report["obj_ID_repeats"]["distinct_values"] == 285
    assert report["obj_ID_repeats"]["same_position_within_1arcsec"] == 0

    text = (out / "catalogue.csv").read_text()
    assert text.splitlines()[0] == ",".join(sdss17.OUT_COLUMNS)
    first = "445947378164328448,GALAXY,18.74547,17.49025,16.89122,16.57350,16.29910,0.04200241,0,sdss17"
    assert text.splitlines()[1] == first
    cat = pd.read_csv(out / "catalogue.csv", dtype={"obj_id": str})
    assert len(cat) == 9_999 and cat["obj_id"].is_unique
    assert (cat["simulated"] == 0).all() and (cat["source"] == "sdss17").all()
    assert cat[list("ugriz")].min().min() > 5 and "-9999" not in text
    assert report["output"]["catalogue.csv"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # deterministic: a second import writes the same bytes
    sdss17.import_sdss17(SAMPLE, tmp_path / "again")
    assert (tmp_path / "again" / "catalogue.csv").read_bytes() == (out / "catalogue.csv").read_bytes()


# ------------------------------------------------------------------------- structural errors


def test_missing_column(tmp_path):
    path = write(tmp_path / "s.csv", rows(), [c for c in sdss17.COLUMNS if c != "redshift"])
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(path)
    assert err.value.file == str(path) and err.value.field == "redshift"
    assert "missing column" in err.value.problem and "kaggle.com" in err.value.fix


def test_renamed_column_lists_close_matches(tmp_path):
    header = ["red_shift" if c == "redshift" else "Class" if c == "class" else c for c in sdss17.COLUMNS]
    renamed = {"redshift": "red_shift", "class": "Class"}
    recs = [{renamed.get(k, k): v for k, v in r.items()} for r in rows()]
    path = write(tmp_path / "s.csv", recs, header)
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(path)
    assert err.value.file == str(path) and err.value.field == "class"
    assert "close matches: 'Class'" in err.value.problem and "close matches: 'red_shift'" in err.value.problem
    assert "'Class' -> 'class'" in err.value.fix and "'red_shift' -> 'redshift'" in err.value.fix


def test_duplicated_column(tmp_path):
    path = write(tmp_path / "s.csv", rows(), [*sdss17.COLUMNS, "u"])
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(path)
    assert err.value.field == "u" and "twice" in err.value.problem


def test_non_numeric_magnitude(tmp_path):
    recs = rows()
    recs[4]["g"] = "abc"
    path = write(tmp_path / "s.csv", recs)
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(path)
    assert err.value.file == str(path) and err.value.field == "g"
    assert "line 6: 'abc' is not a number" in err.value.problem and "g must be numeric" in err.value.fix


def test_bad_class(tmp_path):
    recs = rows()
    recs[2]["class"] = "GALAXIE"
    path = write(tmp_path / "s.csv", recs)
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(path)
    assert err.value.file == str(path) and err.value.field == "class"
    assert "line 4: unknown class 'GALAXIE'" in err.value.problem
    assert "did you mean 'GALAXY'" in err.value.fix and "GALAXY, QSO, STAR" in err.value.fix


def test_non_integer_plate(tmp_path):
    recs = rows()
    recs[0]["plate"] = "266.5"
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(write(tmp_path / "s.csv", recs))
    assert err.value.field == "plate" and "line 2" in err.value.problem


@pytest.mark.parametrize("content", ["", ",".join(sdss17.COLUMNS) + "\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "s.csv"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        sdss17.read_sdss17(path)
    assert err.value.file == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        sdss17.read_sdss17(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------- counted drops


def test_drops_are_counted_by_reason(tmp_path):
    recs = rows(30)
    recs[1]["r"] = ""                     # missing_value
    recs[2]["i"] = "inf"                  # non_finite
    recs[3]["u"] = recs[3]["z"] = "-9999"  # magnitude_sentinel (one row, two cells)
    recs[4]["z"] = "99.0"                 # magnitude_out_of_range
    recs[5]["class"], recs[5]["redshift"] = "STAR", "0.5"  # redshift_out_of_range (a 'star' at z = 0.5)
    recs[6]["delta"] = "95.0"             # coordinates_out_of_range
    recs.append(dict(recs[7]))            # duplicate_row
    recs.append({**recs[8], "u": "20.5"})  # duplicate_spec_obj_ID (same spectrum, other values)
    recs[9]["class"] = " galaxy "          # normalised, kept
    path = write(tmp_path / "s.csv", recs)
    cat, report = sdss17.read_sdss17(path)
    assert report["rows_in"] == 32 and report["rows_out"] == 24 and report["dropped_total"] == 8
    assert {k: v for k, v in report["dropped"].items() if v} == {
        "missing_value": 1, "non_finite": 1, "magnitude_sentinel": 1, "magnitude_out_of_range": 1,
        "redshift_out_of_range": 1, "coordinates_out_of_range": 1, "duplicate_row": 1, "duplicate_spec_obj_ID": 1}
    assert report["dropped_lines"]["missing_value"] == [3] and report["dropped_lines"]["duplicate_row"] == [32]
    detail = report["dropped_detail"]
    assert detail["missing_value_cells_by_column"] == {"r": 1} and detail["non_finite_cells_by_column"] == {"i": 1}
    assert detail["magnitude_sentinel_cells_by_band"] == {"u": 1, "z": 1}
    assert detail["redshift_out_of_range_by_class"] == {"STAR": 1}
    assert (cat["class"] == "GALAXY").sum() == 8  # 10 galaxies, 2 dropped; ' galaxy ' counted as GALAXY
    assert cat.loc[cat["obj_id"] == int(float(recs[9]["spec_obj_ID"])), "class"].tolist() == ["GALAXY"]
    assert cat["obj_id"].is_unique
    # float-rounded obj_ID pairs are kept: the key is spec_obj_ID
    assert report["obj_ID_repeats"]["rows"] > 0


def test_all_rows_dropped_is_an_error(tmp_path):
    recs = rows(3)
    for r in recs:
        r["u"] = "-9999"
    with pytest.raises(InputError, match="all 3 rows were dropped"):
        sdss17.read_sdss17(write(tmp_path / "s.csv", recs))


def test_exact_integer_ids_are_kept_exactly(tmp_path):
    recs = rows(3)
    recs[0]["spec_obj_ID"] = "299489677444933632"
    recs[1]["spec_obj_ID"] = "299489677444933633"  # one apart: float64 could not tell them apart
    cat, _ = sdss17.read_sdss17(write(tmp_path / "s.csv", recs))
    assert [int(v) for v in cat["obj_id"][:2]] == [299489677444933632, 299489677444933633]


# ------------------------------------------------------------------------- checksum, output


def test_checksum_verified_branch(tmp_path, monkeypatch, capsys):
    path = write(tmp_path / "star_classification.csv", rows())
    data = path.read_bytes()
    monkeypatch.setattr(sdss17, "EXPECTED_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(sdss17, "EXPECTED_SIZE", len(data))
    assert cli.main(["data", "import-sdss17", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("verified full release:") and "warning" not in printed.err
    report = json.loads((tmp_path / "out" / "import.json").read_text())
    assert report["verified_full_release"] is True and report["warnings"] == []
    # same size, different content: not verified
    path.write_bytes(data.replace(b"18.12345", b"18.12346"))
    result = sdss17.import_sdss17(path, tmp_path / "out2")
    assert not result.verified and "not the published full file" in result.warnings[0]


def test_failed_import_leaves_earlier_output_intact(tmp_path, capsys):
    out = tmp_path / "out"
    good = write(tmp_path / "good.csv", rows())
    sdss17.import_sdss17(good, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    recs = rows()
    recs[0]["class"] = "PLANET"
    bad = write(tmp_path / "bad.csv", recs)
    assert cli.main(["data", "import-sdss17", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: class: line 2: unknown class 'PLANET'") and "fix:" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "good.csv", "out"]  # no temp folders left


def test_output_format(tmp_path):
    result = sdss17.import_sdss17(write(tmp_path / "s.csv", rows(3)), tmp_path / "out")
    lines = (tmp_path / "out" / "catalogue.csv").read_text().splitlines()
    assert lines[0] == "obj_id,class,u,g,r,i,z,redshift,simulated,source"
    assert lines[2].split(",")[1:] == ["STAR", "19.01000", "18.12345", "17.50000", "17.25000", "17.00001",
                                       "-7.009829e-05", "0", "sdss17"]  # %.9g, as data/raw
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["catalogue.csv", "import.json"]
    assert result.out == tmp_path / "out"
