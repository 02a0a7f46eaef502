"""One version everywhere: the package, `entourage --version`, the chart (and so the default image
tag) and the newest release in CHANGELOG.md."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import webhook

REPO = Path(__file__).resolve().parents[1]


def versions() -> dict[str, str]:
    chart = yaml.safe_load((REPO / "charts" / "entourage" / "Chart.yaml").read_text())
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    cli = subprocess.run(
        [sys.executable, "-m", "webhook", "--version"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    released = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", (REPO / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    return {
        "pyproject.toml version": pyproject["project"]["version"],
        "webhook.__version__": webhook.__version__,
        "entourage --version": cli[-1],
        "Chart.yaml version": str(chart["version"]),
        "Chart.yaml appVersion": str(chart["appVersion"]),
        "CHANGELOG.md newest release": released[0] if released else "(none)",
    }


def test_the_package_the_cli_the_chart_and_the_changelog_share_one_version() -> None:
    found = versions()
    assert len(set(found.values())) == 1, f"versions differ: {found}"


def test_the_changelog_keeps_an_unreleased_section_above_the_releases() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", (REPO / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert headings[0] == "Unreleased" and len(headings) >= 2, headings
