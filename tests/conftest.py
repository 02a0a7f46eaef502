"""Shared fixtures: settings, AdmissionReviews shaped as the apiserver sends them, pod checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.config import Settings, load_settings

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
