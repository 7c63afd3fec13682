"""The README's layout section and the packaging metadata describe the tree as it is."""

from __future__ import annotations

import re
import tomllib

from conftest import ROOT


def test_readme_layout_names_every_package():
    layout = re.search(r"^## Layout\n(.*?)^## ", (ROOT / "README.md").read_text(), re.M | re.S).group(1)
    packages = sorted(p.parent.name for p in (ROOT / "src" / "specllm").glob("*/__init__.py"))
    missing = [name for name in packages if not re.search(rf"^\s*{name}/ ", layout, re.M)]
    assert not missing, f"README's layout section lacks a line for src/specllm/{missing}"


def test_license_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # PEP 639: an SPDX expression, not a {text = ...} table
    assert all((ROOT / f).is_file() for f in project["license-files"])
    assert "license: Apache-2.0" in (ROOT / "CITATION.cff").read_text()


def test_citation_matches_the_package_and_cites_both_rebuilt_studies():
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (cff["cff-version"], cff["type"], cff["version"]) == ("1.2.0", "software", project["version"])
    cited = {i["value"] for ref in cff["references"] for i in ref["identifiers"]}
    assert cited == {"arXiv:2508.10075", "arXiv:2601.02993"}
    assert all(ref["authors"] and ref["url"].endswith(ref["identifiers"][0]["value"].removeprefix("arXiv:")) for ref in cff["references"])
