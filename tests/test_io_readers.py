"""specllm.io.read_json / read_csv / field: every failure is an InputError naming the file, the field and the fix."""

from __future__ import annotations

import pytest

from specllm.errors import InputError
from specllm.io import field, read_csv, read_json

FIX = "rerun the stage that writes it (`dvc repro x`)"


def _raises(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as err:
        call(*args, **kwargs)
    return err.value


def test_read_json_ok_and_required_keys(tmp_path):
    file = tmp_path / "a.json"
    file.write_text('{"a": {"b": 1}, "c": [1, 2]}')
    assert read_json(file, FIX, required=("a.b", "c")) == {"a": {"b": 1}, "c": [1, 2]}
    file.write_text("[1, 2]")
    assert read_json(file, FIX, kind=None) == [1, 2]
    assert read_json(file, FIX, kind=list) == [1, 2]


def test_read_json_missing_file(tmp_path):
    err = _raises(read_json, tmp_path / "gone.json", FIX)
    assert err.file.endswith("gone.json") and err.field == "-" and "file not found" in err.problem
    assert err.fix == FIX and str(err).startswith(f"{tmp_path / 'gone.json'}: -: file not found") and FIX in str(err)


def test_read_json_bad_json_names_the_line(tmp_path):
    file = tmp_path / "bad.json"
    file.write_text('{\n  "a": 1,\n  "b": \n}\n')
    err = _raises(read_json, file, FIX)
    assert err.file == str(file) and err.field == "line 4" and "not valid JSON" in err.problem and err.fix == FIX
    file.write_bytes(b'{"a": "\xff"}')
    assert "not UTF-8" in _raises(read_json, file, FIX).problem


def test_read_json_wrong_top_level(tmp_path):
    file = tmp_path / "list.json"
    file.write_text("[1]")
    err = _raises(read_json, file, FIX)
    assert err.file == str(file) and "expected an object" in err.problem and err.fix == FIX


def test_read_json_missing_field(tmp_path):
    file = tmp_path / "a.json"
    file.write_text('{"a": {"b": 1}}')
    err = _raises(read_json, file, FIX, required=("a.c",))
    assert (err.file, err.field, err.problem, err.fix) == (str(file), "a.c", "key missing", FIX)
    assert str(err) == f"{file}: a.c: key missing\n  fix: {FIX}"


def test_field_types(tmp_path):
    data = {"n": 3, "flag": True, "name": "x"}
    assert field(data, "n", tmp_path, FIX, types=int) == 3
    assert field(data, "flag", tmp_path, FIX, types=bool) is True
    err = _raises(field, data, "flag", tmp_path / "f.json", FIX, types=(int, float))  # a bool is not a number here
    assert err.field == "flag" and "expected int or float" in err.problem and err.fix == FIX
    assert _raises(field, data, "name.x", tmp_path, FIX).problem == "key missing"


def test_read_csv_ok_and_options(tmp_path):
    file = tmp_path / "t.csv"
    file.write_text("obj_id,z\n007,0.1\n")
    frame = read_csv(file, FIX, ("obj_id", "z"), dtype={"obj_id": str})
    assert frame["obj_id"].tolist() == ["007"] and frame["z"].tolist() == [0.1]


def test_read_csv_missing_file_column_and_rows(tmp_path):
    err = _raises(read_csv, tmp_path / "gone.csv", FIX)
    assert err.file.endswith("gone.csv") and "file not found" in err.problem and err.fix == FIX
    file = tmp_path / "t.csv"
    file.write_text("a,b\n1,2\n")
    err = _raises(read_csv, file, FIX, ("a", "c", "d"))
    assert (err.file, err.field, err.fix) == (str(file), "c, d", FIX) and "column missing (found: a, b)" in err.problem
    file.write_text("a,b\n")
    assert read_csv(file, FIX, ("a",)).empty
    err = _raises(read_csv, file, FIX, ("a",), nonempty=True)
    assert err.problem == "no rows" and err.fix == FIX
    file.write_text("")
    assert "empty file" in _raises(read_csv, file, FIX).problem
