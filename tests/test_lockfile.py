"""requirements.lock pins every dependency pyproject.toml declares, at a version it admits.

`make install` installs from the lock; a dependency added to pyproject.toml without `make lock`
would be missing on a fresh clone (genpipe itself installs with --no-deps).
"""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.split()[0]
    return pins


def test_every_declared_dependency_is_pinned_at_an_admitted_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = _pins()
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in pins, (
            f"{spec.name} is in pyproject.toml but not in requirements.lock: make lock"
        )
        assert spec.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {spec.name}=={pins[name]}, outside {spec}: make lock"
        )
