"""The conda environment, the pyproject and the Makefile describe the same install."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(s): s for s in meta["dependencies"] + meta["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = {_name(s): s for s in pip_list if not s.startswith("-e")}
    assert set(got) == set(wanted), (set(got) ^ set(wanted))
    for name, spec in got.items():
        if name in ("torch", "torchvision"):
            continue
        assert spec.replace(" ", "") == wanted[name].replace(" ", ""), (spec, wanted[name])
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_torch_pins_agree_and_are_admitted():
    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(s).name: Requirement(s) for s in meta["dependencies"]}
    make = (ROOT / "Makefile").read_text()
    env = (ROOT / "environment.yml").read_text()
    for pkg, ver in [("torch", "2.14.1"), ("torchvision", "0.29.1")]:
        assert f"{pkg}=={ver}" in make and f"{pkg}=={ver}" in env
        assert reqs[pkg].specifier.contains(ver)


def test_ci_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and "make test" in ci
