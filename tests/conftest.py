"""Shared fixtures: settings, AdmissionReviews shaped as the apiserver sends them, pod checks."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from webhook.engine.settings import Settings, load_settings

TESTDATA = Path(__file__).parent / "testdata"
REFERENCE_REVIEW = TESTDATA / "reviews" / "pod-create.json"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Built-in profiles only: what a fresh install runs with."""
    return load_settings(None, environ={})


def reference_review(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The apiserver's AdmissionReview for a Deployment-made pod, with extra annotations."""
    review = json.loads(REFERENCE_REVIEW.read_text())
    if annotations:
        review["request"]["object"]["metadata"].setdefault("annotations", {}).update(annotations)
    return review


def reference_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return copy.deepcopy(reference_review(annotations)["request"]["object"])


@pytest.fixture(scope="session")
def busybox_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose PATH holds only busybox applets, like the busybox image.

    busybox is installed by `make tools`; a machine without it fails here instead of skipping.
    """
    busybox = shutil.which("busybox")
    assert busybox is not None, "busybox is not installed: run `make tools`"
    bindir = tmp_path_factory.mktemp("busybox-bin")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True, timeout=10).stdout.split()
    for applet in applets:
        (bindir / applet).symlink_to(busybox)
    return {"PATH": str(bindir), "LC_ALL": "C"}


@pytest.fixture(scope="session")
def curl_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """busybox applets plus curl (built with OpenSSL), like the curlimages/curl image of the
    default wait-for profile. Installed by `make tools`; missing, this fails instead of skipping."""
    busybox, curl = shutil.which("busybox"), shutil.which("curl")
    assert busybox is not None and curl is not None, "busybox or curl is not installed: run `make tools`"
    version = subprocess.run([curl, "--version"], check=True, capture_output=True, text=True, timeout=10).stdout
    assert "OpenSSL" in version, f"curl is not built with OpenSSL, as the image's is: {version.splitlines()[0]}"
    bindir = tmp_path_factory.mktemp("curl-bin")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True, timeout=10).stdout.split()
    for applet in applets:
        (bindir / applet).symlink_to(busybox)
    (bindir / "curl").symlink_to(curl)
    return {"PATH": str(bindir), "LC_ALL": "C"}
