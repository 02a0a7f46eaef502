"""Where injected images come from: ``imageRegistry``, ``imagePullSecrets`` and the wait-for
``caBundle``, from the configuration through the engine to the pod, and the README's examples."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from webhook.engine.inject import inject_pod
from webhook.engine.patch import diff
from webhook.engine.settings import Settings, build_settings, rehome
from webhook.errors import ConfigError, PodDenied

README = Path(__file__).parent.parent / "README.md"
MIRROR = "registry.corp.example:5000/mirror"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox:1.36.1", f"{MIRROR}/library/busybox:1.36.1"),
        ("fluent/fluent-bit:3.2.10", f"{MIRROR}/fluent/fluent-bit:3.2.10"),
        ("quay.io/prometheuscommunity/json-exporter:v0.7.0", f"{MIRROR}/prometheuscommunity/json-exporter:v0.7.0"),
        ("localhost/tool:1", f"{MIRROR}/tool:1"),
        ("registry.example:5000/team/agent:2", f"{MIRROR}/team/agent:2"),
        (f"{MIRROR}/vendor/exporter:2.4.0", f"{MIRROR}/vendor/exporter:2.4.0"),
        ("alpine/socat@sha256:" + "a" * 64, f"{MIRROR}/alpine/socat@sha256:" + "a" * 64),
    ],
)
def test_rehome_replaces_the_registry_host_and_keeps_the_path(image: str, expected: str) -> None:
    assert rehome(image, MIRROR) == expected


def test_the_readme_table_of_mirrored_images_is_what_rehome_does() -> None:
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", section("Day two"), re.MULTILINE)
    assert len(rows) == 3
    for image, pulled in rows:
        assert rehome(image, MIRROR) == pulled


def test_every_yaml_example_of_the_configuration_and_day_two_sections_loads() -> None:
    blocks = [block for title in ("Configuration file", "Day two") for block in re.findall(r"```yaml\n(.*?)```", section(title), re.DOTALL)]
    assert len(blocks) >= 3, "the examples were not found"
    for block in blocks:
        build_settings(yaml.safe_load(block))


def test_the_registry_applies_to_every_built_in_and_configured_profile() -> None:
    settings = build_settings(
        {
            "imageRegistry": MIRROR + "/",
            "profiles": {
                "adapter": {
                    "mine": {
                        "image": "ghcr.io/me/exporter:1.0",
                        "command": ["/exporter"],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}},
                    }
                }
            },
        }
    )
    images = {f"{kind}.{name}": profile.image for kind, by_name in settings.profiles.items() for name, profile in by_name.items()}
    assert len(images) == 8 and all(image.startswith(MIRROR + "/") for image in images.values()), images
    assert images["adapter.mine"] == f"{MIRROR}/me/exporter:1.0"
    assert settings.image_registry == MIRROR
    assert build_settings({"imageRegistry": ""}).image_registry is None, "the chart's default: unset"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"imageRegistry": "https://registry.corp.example"}, "imageRegistry: 'https://registry.corp.example': expected a registry host"),
        ({"imageRegistry": ["a"]}, "imageRegistry: ['a']: expected a registry host"),
        ({"imagePullSecrets": ["Mirror_Pull"]}, "imagePullSecrets: 'Mirror_Pull': expected a Secret name"),
        ({"imagePullSecrets": "mirror-pull"}, "imagePullSecrets: expected a list of strings"),
        ({"profiles": {"logging": {"tail": {"imagePullSecrets": ["a/b"]}}}}, "profiles.logging.tail.imagePullSecrets: 'a/b'"),
        ({"profiles": {"waitFor": {"curl": {"caBundle": {"configMap": "a", "secret": "b"}}}}}, "exactly one of configMap or secret"),
        (
            {"profiles": {"waitFor": {"curl": {"caBundle": {}}}}},
            "profiles.waitFor.curl.caBundle: expected exactly one of configMap or secret",
        ),
        (
            {"profiles": {"waitFor": {"curl": {"caBundle": {"configMap": "../etc"}}}}},
            "caBundle.configMap: '../etc': expected the name of a configMap",
        ),
        ({"profiles": {"waitFor": {"curl": {"caBundle": {"secret": "ca", "key": "a/b"}}}}}, "caBundle.key: 'a/b': expected a data key"),
        ({"profiles": {"waitFor": {"curl": {"caBundle": {"hostPath": "/etc/ssl"}}}}}, "caBundle: unknown key 'hostPath'"),
        ({"profiles": {"logging": {"tail": {"caBundle": {"secret": "ca"}}}}}, "profiles.logging.tail.caBundle: only wait-for profiles"),
    ],
)
def test_bad_registry_settings_are_refused_naming_the_key_and_value(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_settings(config)
    assert message in str(error.value)


def pod(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "annotations": annotations}, "spec": {"containers": [{"name": "app", "image": "app:1"}], **spec}}


def pull_settings() -> Settings:
    return build_settings(
        {"imagePullSecrets": ["mirror-pull"], "profiles": {"logging": {"fluent-bit": {"imagePullSecrets": ["vendor-pull", "mirror-pull"]}}}}
    )


def test_pull_secrets_are_added_once_each_and_named_in_the_status() -> None:
    original = pod({"entourage.dev/logging": "fluent-bit", "entourage.dev/wait-for": "db:5432,dns://db"})
    injection = inject_pod(original, pull_settings())
    assert injection.pod["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}, {"name": "vendor-pull"}]
    assert injection.status["imagePullSecrets"] == ["mirror-pull", "vendor-pull"]
    assert injection.patch == diff(original, injection.pod)
    assert {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "mirror-pull"}, {"name": "vendor-pull"}]} in injection.patch


def test_the_pods_own_pull_secrets_are_kept_and_not_repeated() -> None:
    own = [{"name": "app-pull"}, {"name": "vendor-pull"}]
    original = pod({"entourage.dev/logging": "fluent-bit"}, imagePullSecrets=own)
    injection = inject_pod(original, pull_settings())
    assert injection.pod["spec"]["imagePullSecrets"] == [*own, {"name": "mirror-pull"}]
    assert injection.status["imagePullSecrets"] == ["mirror-pull"]
    assert [op["op"] for op in injection.patch if op["path"].startswith("/spec/imagePullSecrets")] == ["add"]
    assert jsonpatch.apply_patch(original, injection.patch) == injection.pod
    assert original["spec"]["imagePullSecrets"] == own, "the input pod is not changed"


def test_a_pod_that_has_every_pull_secret_gets_no_operation_and_no_status_entry() -> None:
    original = pod({"entourage.dev/logging": "true"}, imagePullSecrets=[{"name": "mirror-pull"}])
    injection = inject_pod(original, pull_settings())
    assert "imagePullSecrets" not in injection.status
    assert not any(op["path"].startswith("/spec/imagePullSecrets") for op in injection.patch)


def test_pull_secrets_that_are_not_a_list_of_objects_are_denied_by_name() -> None:
    with pytest.raises(PodDenied, match=r"spec.imagePullSecrets: expected a list of objects with names"):
        inject_pod(pod({"entourage.dev/logging": "true"}, imagePullSecrets="mirror-pull"), pull_settings())
