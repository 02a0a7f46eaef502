"""The pod checks themselves must catch what they claim to catch, or the other tests prove nothing."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.podcheck import apiserver_problems, restricted_problems, validate_schema


def test_the_schema_check_rejects_unknown_fields_and_wrong_types() -> None:
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_schema({"spec": {"containers": [{"name": "a", "image": "x", "restartPolicyy": "Always"}]}})
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_schema({"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": "80"}]}]}})


def test_the_apiserver_rules_catch_duplicate_names_unknown_volumes_and_misplaced_fields() -> None:
    spec = {
        "containers": [
            {"name": "a", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/l"}], "restartPolicy": "Always"},
        ],
        "initContainers": [{"name": "a", "image": "x", "startupProbe": {"exec": {"command": ["true"]}}}],
    }
    problems = apiserver_problems({"spec": spec})
    assert "duplicate container name a" in problems
    assert "a: mount of unknown volume v" in problems
    assert "a: restartPolicy is only allowed on init containers" in problems
    assert "a: startupProbe is only allowed on native sidecars" in problems


def test_the_restricted_check_requires_every_field_some_injectors_forget() -> None:
    problems = restricted_problems(
        {"name": "c", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}}, {}
    )
    assert problems == ["c: seccompProfile must be RuntimeDefault or Localhost"]
