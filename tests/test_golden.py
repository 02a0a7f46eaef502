"""Golden files, istio-style: tests/testdata/inject/<case>.yaml → <case>.yaml.injected (or .denied).

Each case runs through the offline path (`entourage inject`, in-process) and the webhook path
(`admit` on an AdmissionReview, its patch applied to the input), checks that both give the golden
pod, that the pod is valid, and that a second pass changes nothing. Regenerate with `make golden`
(REFRESH_GOLDEN=1); a golden file without an input case fails the suite. Each directory has its
own config.yaml: ``inject`` (which the endpoint and partial-read tests also serve) and
``inject-mirror`` (every image from one mirror, with pull secrets).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.conftest import reference_review
from tests.podcheck import assert_valid_injected_pod
from webhook import yamlio
from webhook.admission import partial
from webhook.admission.decide import admit
from webhook.admission.review import decode
from webhook.cli import main
from webhook.engine.inject import ALREADY_INJECTED, INJECTED, inject_pod
from webhook.engine.patch import diff
from webhook.engine.settings import Settings, load_settings

CASES_DIR = Path(__file__).parent / "testdata" / "inject"
CONFIG = CASES_DIR / "config.yaml"
CASES = sorted(path for path in CASES_DIR.glob("*.yaml") if path != CONFIG)
MIRROR_DIR = Path(__file__).parent / "testdata" / "inject-mirror"
ALL_CASES = [*CASES, *sorted(path for path in MIRROR_DIR.glob("*.yaml") if path.name != "config.yaml")]
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"


def config_of(case: Path) -> Path:
    return case.parent / "config.yaml"


@functools.cache
def settings_of(config: Path) -> Settings:
    return load_settings(str(config))


def run_offline(case: Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["inject", "-f", str(case), "--config", str(config_of(case))], stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def golden_path(case: Path, suffix: str) -> Path:
    return case.with_name(case.name + suffix)


def check_golden(path: Path, actual: str) -> None:
    if REFRESH:
        path.write_text(actual)
    assert path.exists(), f"{path.name} is missing: run `make golden`"
    assert actual == path.read_text(), f"{path.name} is stale: run `make golden` and review the diff"


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda p: p.stem)
def test_the_offline_path_produces_the_golden_output(case: Path) -> None:
    code, stdout, stderr = run_offline(case)
    if case.stem.startswith("denied-"):
        assert code == 1
        check_golden(golden_path(case, ".denied"), stderr)
    else:
        assert code == 0 and stderr == ""
        check_golden(golden_path(case, ".injected"), stdout)


def as_review(pod: dict[str, Any]) -> dict[str, Any]:
    review = reference_review()
    review["request"]["object"] = pod
    review["request"]["namespace"] = pod.get("metadata", {}).get("namespace", "default")
    return review


@pytest.mark.parametrize("case", [c for c in ALL_CASES if not c.stem.startswith("denied-")], ids=lambda p: p.stem)
def test_the_webhook_path_patch_gives_the_golden_pod(case: Path) -> None:
    golden_settings = settings_of(config_of(case))
    pod = yamlio.load_all(case.read_text())[0]
    expected = yamlio.load_all(golden_path(case, ".injected").read_text())[0]
    response = admit(as_review(pod), golden_settings).review["response"]
    assert response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    assert jsonpatch.apply_patch(pod, patch) == expected
    assert patch == diff(pod, expected), "the engine's written patch is not the one the diff derives"
    # As the server decodes it (only the fields admission reads, spec fields in the apiserver's
    # order, which these hand-written pods do not follow): the same operations for each field.
    pruned_response = admit(decode(orjson.dumps(as_review(pod)), loads=partial.loads), golden_settings).review["response"]
    pruned_patch = json.loads(base64.b64decode(pruned_response["patch"])) if "patch" in pruned_response else []
    assert by_field(pruned_patch) == by_field(patch)


def by_field(operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operations grouped by the field they add to, in order within each (a stable sort)."""
    return sorted(operations, key=lambda operation: operation["path"].split("/")[:3])


@pytest.mark.parametrize("case", [c for c in ALL_CASES if not c.stem.startswith("denied-")], ids=lambda p: p.stem)
def test_the_golden_pod_is_valid_and_a_second_pass_changes_nothing(case: Path) -> None:
    golden_settings = settings_of(config_of(case))
    injected = yamlio.load_all(golden_path(case, ".injected").read_text())[0]
    status = injected["metadata"].get("annotations", {}).get("entourage.dev/status")
    names = [n for section in json.loads(status).values() if isinstance(section, list) for n in section] if status else []
    assert_valid_injected_pod(injected, names)
    again = inject_pod(injected, golden_settings)
    assert again.patch == [] and again.pod is injected
    if status:
        assert again.reason == ALREADY_INJECTED


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.stem.startswith("denied-")], ids=lambda p: p.stem)
def test_denied_cases_are_denied_by_the_webhook_with_the_golden_message(case: Path) -> None:
    golden_settings = settings_of(config_of(case))
    pod = yamlio.load_all(case.read_text())[0]
    response = admit(as_review(pod), golden_settings).review["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    message = response["status"]["message"].removeprefix("Entourage cannot inject this pod: ")
    golden = golden_path(case, ".denied").read_text()
    for problem in message.split("; "):  # one line per problem there
        assert problem in golden


def test_every_golden_file_has_its_input_case() -> None:
    inputs = {case.parent / case.name for case in ALL_CASES}
    for directory in (CASES_DIR, MIRROR_DIR):
        for path in [*directory.glob("*.injected"), *directory.glob("*.denied")]:
            assert directory / path.name.rsplit(".", 1)[0] in inputs, f"{path.name} has no input case: delete it"


def test_the_golden_cases_cover_every_pattern() -> None:
    golden_settings = settings_of(CONFIG)
    injected = [inject_pod(yamlio.load_all(c.read_text())[0], golden_settings) for c in CASES if not c.stem.startswith("denied-")]
    components = {name for injection in injected if injection.reason == INJECTED for name in injection.components}
    for prefix in ("entourage-logging", "entourage-ambassador-", "entourage-wait-", "entourage-adapter-"):
        assert any(name.startswith(prefix) for name in components), prefix
