"""params.yaml: validation messages, profile switching, and the stage/params contract with dvc.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from ruamel.yaml import YAML

from specllm import config
from specllm.errors import InputError


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    return Path(shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml"))


def test_committed_params_are_valid(params):
    assert params["profile"] in config.PROFILES
    assert set(params) == set(config.SCHEMA)


def test_mistyped_key_is_named_with_a_suggestion(params_file):
    params_file.write_text(params_file.read_text().replace("  n_train:", "  n_trian:"))
    with pytest.raises(InputError) as err:
        config.load(params_file)
    assert err.value.field == "data.n_trian"
    assert "did you mean 'data.n_train'" in str(err.value)
    assert str(params_file) in str(err.value)


@pytest.mark.parametrize(("old", "new", "field"), [
    ("  n_points: 24 ", "  n_points: many ", "spectrum.n_points"),
    ("source: gguf ", "source: onnx ", "model.source"),
    ("  precision: 2 ", "  precision: -1 ", "serialize.precision"),
    ("  wave_max: 9150.0", "  wave_max: 3000.0", "spectrum.wave_max"),
])
def test_bad_values_name_the_field(params_file, old, new, field):
    text = params_file.read_text()
    assert old in text
    params_file.write_text(text.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        config.load(params_file)
    assert err.value.field == field


def test_missing_key_and_bad_yaml(params_file):
    params_file.write_text(params_file.read_text().replace("  z_bins: 10", ""))
    with pytest.raises(InputError, match="data.z_bins: missing parameter"):
        config.load(params_file)
    params_file.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        config.load(params_file)


def test_profiles_set_the_same_keys():
    keys = {name: set(config.profile_overrides(name, ROOT / "profiles")) for name in config.PROFILES}
    assert all(keys[name] == keys["small"] for name in config.PROFILES), keys


def test_switching_profiles_keeps_comments_and_round_trips(params_file):
    original = params_file.read_text()
    assert "profile" in config.apply_profile("smoke", params_file, ROOT / "profiles")
    smoke = config.load(params_file)
    assert smoke["model.source"] == "tiny" and smoke["profile"] == "smoke"
    assert "# which profile" not in original or "# which profile" in params_file.read_text()
    assert params_file.read_text().count("#") == original.count("#")
    config.apply_profile(config.load(ROOT / "params.yaml")["profile"], params_file, ROOT / "profiles")
    assert params_file.read_text() == original
    assert config.apply_profile(smoke["profile"], params_file, ROOT / "profiles") != []
    with pytest.raises(InputError, match="unknown profile"):
        config.apply_profile("huge", params_file, ROOT / "profiles")


def test_profile_switch_keeps_the_chosen_catalogue(params_file, capsys, tmp_path):
    """`make reproduce PROFILE=small` silently reset catalogue.source: sdss17 to embedded on main."""
    params_file.write_text(params_file.read_text().replace("  source: embedded        # embedded (data/raw/catalogue",
                                                           "  source: sdss17        # embedded (data/raw/catalogue"))
    assert config.load(params_file)["catalogue.source"] == "sdss17"
    for name in config.PROFILES:
        from specllm import cli

        assert cli.main(["profile", name, "--params", str(params_file)]) == 0
        assert config.load(params_file)["catalogue.source"] == "sdss17"
        assert f"profile {name}: kept catalogue.source: sdss17 (profiles never change it)" in capsys.readouterr().out
    # a profile that tries to set it is refused, naming the file and the key
    bad = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", bad)
    (bad / "small.yaml").write_text((bad / "small.yaml").read_text() + "catalogue.source: embedded\n")
    with pytest.raises(InputError) as err:
        config.apply_profile("small", params_file, bad)
    assert err.value.field == "catalogue.source" and "small.yaml" in err.value.file


def _stages() -> dict:
    return YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_declared_param_exists():
    for name in _stages():
        for key in config.declared_params(name, ROOT / "dvc.yaml"):
            assert key in config.SCHEMA, f"dvc.yaml stage {name} lists unknown params key {key}"


def test_stage_view_refuses_undeclared_keys(params_file):
    view = config.stage_params("baseline", params_file, ROOT / "dvc.yaml")
    assert view["baseline.n_neighbors"] == 10
    with pytest.raises(KeyError, match="dvc.yaml does not list it"):
        view["data.n_train"]


def test_each_stage_script_reads_only_declared_keys():
    """Static check: every params key a stage script names is declared for that stage in dvc.yaml."""
    import re

    for name, stage in _stages().items():
        module = stage.get("do", stage)["cmd"].split("-m ")[1].split()[0]
        script = ROOT / "src" / Path(*module.split(".")).with_suffix(".py")
        declared = config.declared_params(name, ROOT / "dvc.yaml")
        # Params are read by subscript (p["data.n_train"]) or .get("..."); macro names like "raw.z_min" are not reads.
        pattern = r"""(?:\[|\.get\()\s*f?["']([a-z_]+\.[a-z_]+)["']"""
        used = {k for k in re.findall(pattern, script.read_text()) if k in config.SCHEMA}
        assert used <= set(declared), f"{script.name} reads {sorted(used - set(declared))} not listed in dvc.yaml"


def test_every_schema_key_is_documented_in_params_yaml():
    """The schema (specllm.schema) and params.yaml's comments describe the same keys: every schema key
    has a `#` comment on its line (or its section's), and params.yaml has no key the schema lacks."""
    tree = YAML().load((ROOT / "params.yaml").read_text())
    assert set(config.flatten(tree)) == set(config.SCHEMA)

    def comment(node, key) -> str:
        token = (node.ca.items.get(key) or [None, None, None])[2]  # the comment after a scalar value
        if token is None:  # a list value (flow style) or a section: the comment after it
            value = node[key]
            token = getattr(getattr(value, "ca", None), "comment", None)
            token = token[0] if isinstance(token, list) and token else token
        return getattr(token, "value", "") or ""

    undocumented = []
    for section, node in tree.items():
        items = node.items() if isinstance(node, dict) else [(None, None)]
        for key, _ in items:
            holder, name = (tree, section) if key is None else (node, key)
            if "#" not in comment(holder, name):
                undocumented.append(section if key is None else f"{section}.{key}")
    assert not undocumented, f"keys without a comment in params.yaml: {undocumented}"


@pytest.mark.parametrize("name", config.PROFILES)
def test_profiles_values_meet_the_schema(name, tmp_path):
    assert config.profile_overrides(name, ROOT / "profiles")  # every key known, every value in range
    bad = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", bad)
    (bad / f"{name}.yaml").write_text((bad / f"{name}.yaml").read_text() + "train.dropout: 1.0\n")
    with pytest.raises(InputError) as err:
        config.profile_overrides(name, bad)
    assert err.value.field == "train.dropout" and f"{name}.yaml" in str(err.value.file)
    assert "[0, 1)" in str(err.value)


def test_train_settings_check_with_the_schema(params):
    """TrainSettings (params.yaml values and command-line overrides) and config share one set of bounds."""
    from specllm.train.settings import KEYS, TrainSettings

    assert {f"train.{k}" for k in KEYS} == {k for k in config.SCHEMA if k.startswith("train.")}
    for key, value in (("lr", 1.5), ("dropout", 1.0), ("rank", 0), ("lr_schedule", "step")):
        problem = config.SCHEMA[f"train.{key}"](value)
        with pytest.raises(InputError) as err:
            TrainSettings.from_params(params, {key: value})
        assert problem and err.value.problem == problem and err.value.field == f"--{key.replace('_', '-')}"
    assert TrainSettings.from_params(params, {"dropout": 0.97}).dropout == 0.97  # [0, 1) in both now
