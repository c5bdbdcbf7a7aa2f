"""The install is one pinned set: a fresh machine gets the versions the suite ran with."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement


def test_every_dependency_is_pinned_to_one_version():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *[r for extra in project["optional-dependencies"].values()
                                                for r in extra]]
    specs = {r: list(Requirement(r).specifier) for r in requirements}
    loose = [r for r, spec in specs.items() if len(spec) != 1 or spec[0].operator != "=="]
    assert not loose, f"pin these to one version (==): {loose}"
