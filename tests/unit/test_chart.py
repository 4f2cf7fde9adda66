"""deploy/chart without helm: its version is the package's, its default values pass its own
schema and the product's own checks, and every agent or controller flag a template passes is
one the real argument parser takes. (tests/k8s/test_chart.py renders, lints, installs and
upgrades it with a real helm; the node lane installs it on a real node.)"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from spidernet.cli import build_parser
from spidernet.control.model.resources import COORDINATOR_MODES, POD_CIDR_TYPES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart"


def values() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return doc


def schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return doc


def test_the_chart_version_is_the_packages() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (chart["version"], chart["appVersion"]) == (version, version)


def test_the_default_values_pass_the_schema_and_a_bad_one_does_not() -> None:
    jsonschema.validate(values(), schema())
    bad = values()
    bad["agent"]["detection"]["profile"] = "slow"
    with pytest.raises(jsonschema.ValidationError, match="slow"):
        jsonschema.validate(bad, schema())


def test_the_schemas_choices_are_the_products() -> None:
    coord = schema()["properties"]["coordinator"]["properties"]["spec"]["properties"]
    assert set(coord["podCIDRType"]["enum"]) == set(POD_CIDR_TYPES)
    # Spiderpool spells the switched-off mode "disable"; the decoder takes both.
    assert set(coord["mode"]["enum"]) == {*COORDINATOR_MODES, "disable"}
    parser = build_parser()
    serve = parser.parse_args(["serve"])
    assert schema()["properties"]["logFormat"]["enum"] == ["text", "json"]
    assert serve.log_format == values()["logFormat"]


def flags(template: str) -> set[str]:
    return set(
        re.findall(r"^\s+- (--[a-z-]+)\s*$", (CHART / "templates" / template).read_text(), re.M)
    )


@pytest.mark.parametrize(
    ("template", "command"),
    [("agent-daemonset.yaml", "serve"), ("controller-deployment.yaml", "controller")],
)
def test_every_flag_a_template_passes_is_the_commands(template: str, command: str) -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(commands, dict)
    sub = commands[command]
    known = {s for a in sub._actions for s in a.option_strings}
    used = flags(template)
    assert len(used) >= 8
    assert used <= known, used - known
