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
    assert report["obj_ID_repeats"]["same_position_within_1arcsec_dropped"] == 0
    assert report["negative_redshift_kept"]["by_class"] == {"GALAXY": 3, "QSO": 0, "STAR": 1346}
    assert report["ignored_columns"] == {"index": [], "other": []}
    assert "kept 3 GALAXY, 1,346 STAR row(s) with a negative redshift" in printed.err
    assert "kept 583 rows sharing 285 repeated obj_ID values at different positions" in printed.err
    assert str(SAMPLE.parent) not in (out / "import.json").read_text()  # no absolute path in the record
    assert report["source"]["name"] == SAMPLE.name

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
    assert printed.out.startswith("verified full release:") and "not the published" not in printed.err
    report = json.loads((tmp_path / "out" / "import.json").read_text())
    assert report["verified_full_release"] is True
    assert not any("not the published" in w for w in report["warnings"])  # only the counted policy notes
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


# ------------------------------------------- real exports (issue 12 item 8) and safety (issue 13)


def _export_with_index(path: Path, records: list[dict[str, str]], name: str) -> Path:
    """The CSV as pandas' `df.to_csv()` writes it: a leading unnamed index column."""
    header = [name, *sdss17.COLUMNS]
    return write(path, [{name: str(k), **r} for k, r in enumerate(records)], header)


@pytest.mark.parametrize("name", ["", "Unnamed: 0"])
def test_unnamed_index_column_is_dropped_and_reported(tmp_path, capsys, name):
    path = _export_with_index(tmp_path / "s.csv", rows(), name)
    assert cli.main(["data", "import-sdss17", str(path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "import.json").read_text())
    assert report["ignored_columns"] == {"index": [repr(name)], "other": []}
    assert "ignored 1 unnamed index column(s)" in err
    plain = sdss17.import_sdss17(write(tmp_path / "p.csv", rows()), tmp_path / "plain")
    assert (tmp_path / "out" / "catalogue.csv").read_bytes() == (plain.out / "catalogue.csv").read_bytes()


def test_repeated_obj_id_same_position_keeps_first(tmp_path, capsys):
    recs = rows(12)
    twin = dict(recs[3])  # the same object (obj_ID, position) with a second spectrum
    twin["spec_obj_ID"] = repr(float(int(float(recs[3]["spec_obj_ID"])) + (1 << 40)))
    twin["delta"] = f"{float(twin['delta']) + 0.5 / 3600:.6f}"  # 0.5 arcsec: same object
    recs.append(twin)
    path = write(tmp_path / "s.csv", recs)
    assert cli.main(["data", "import-sdss17", str(path), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "import.json").read_text())
    assert report["dropped"]["duplicate_obj_ID_same_position"] == 1 and report["rows_out"] == 12
    assert report["dropped_lines"]["duplicate_obj_ID_same_position"] == [14]
    # rows() pairs ids that round to the same float at other positions: those are different objects, kept
    assert report["obj_ID_repeats"]["rows"] == 12 and report["obj_ID_repeats"]["distinct_values"] == 1
    assert "dropped 1 row(s) repeating an earlier row's obj_ID at the same position" in err
    assert "kept 12 rows sharing 1 repeated obj_ID values at different positions" in err


def test_negative_star_redshifts_are_kept_and_counted(tmp_path):
    result = sdss17.import_sdss17(write(tmp_path / "s.csv", rows(30)), tmp_path / "out")
    assert (result.catalogue.loc[result.catalogue["class"] == "STAR", "redshift"] < 0).sum() == 10
    assert result.report["negative_redshift_kept"]["by_class"] == {"GALAXY": 0, "QSO": 0, "STAR": 10}
    assert any("kept 10 STAR row(s) with a negative redshift" in w for w in result.warnings)


def test_import_never_removes_what_it_did_not_create(tmp_path, capsys):
    """`--out data` replaced the whole data/ folder (probes, references, DR16 downloads) on main."""
    data = tmp_path / "data"
    for rel in ("probes/science.jsonl", "reference/scse.json", "external/dr16/spectra/a.fits", "raw/catalogue.csv"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(rel)
    before = sorted(str(p.relative_to(tmp_path)) for p in data.rglob("*"))
    good = write(tmp_path / "good.csv", rows())
    for out in (data, data / "raw"):
        assert cli.main(["data", "import-sdss17", str(good), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"error: {out}: --out: holds files an SDSS17 import did not write" in err and "fix:" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in data.rglob("*")) == before
    assert (data / "raw" / "catalogue.csv").read_text() == "raw/catalogue.csv"
    # the default folder's committed README stays; a re-import replaces only the importer's own files
    out = data / "external" / "sdss17"
    out.mkdir()
    (out / "README.md").write_text("kept")
    sdss17.import_sdss17(good, out)
    sdss17.import_sdss17(write(tmp_path / "other.csv", rows(9)), out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "catalogue.csv", "import.json"]
    assert (out / "README.md").read_text() == "kept"
    assert json.loads((out / "import.json").read_text())["rows_in"] == 9


def test_huge_field_is_not_echoed(tmp_path, capsys):
    """An error once echoed a whole 200 MB field to stderr; values are clipped to 80 characters."""
    recs = rows()
    recs[3]["g"] = "x" * 2_000_000
    recs[5]["class"] = "Q" * 500_000
    path = write(tmp_path / "s.csv", recs)
    assert cli.main(["data", "import-sdss17", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not a number" in err and "(2,000,002 characters)" in err and len(err) < 1000
    recs[3]["g"] = "18.1"
    assert cli.main(["data", "import-sdss17", str(write(path, recs)), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown class" in err and len(err) < 1000
    path.write_text(",".join(sdss17.COLUMNS) + "," + "h" * 300_000 + "\n")
    assert cli.main(["data", "import-sdss17", str(path), "--out", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err) < 1000
