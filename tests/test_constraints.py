"""Installs are reproducible: every distribution livecast or its tests install is pinned in
``constraints.txt``, and the suite runs on exactly those versions."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[_normal(name)] = version.strip()
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_declared_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = _pins()
    missing = sorted(
        name for name in (_normal(Requirement(r).name) for r in declared) if name not in pins
    )
    assert not missing, f"add these to constraints.txt: {missing}"
    for raw in declared:
        requirement = Requirement(raw)
        pinned = pins[_normal(requirement.name)]
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pinned}, outside pyproject's {raw!r}"
        )


def test_the_suite_runs_on_the_pinned_versions() -> None:
    pins = _pins()
    wrong = {}
    for dist in metadata.distributions():
        name = _normal(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            wrong[name] = (dist.version, pins[name])
    assert not wrong, f"installed != constraints.txt (installed, pinned): {wrong}"
