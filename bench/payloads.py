"""AdmissionReviews exactly as the apiserver sends them (compact JSON), for the three bench cases.

- ``small``: the reference Deployment-made pod (tests/testdata/reviews/pod-create.json, ~5 KB
  compact) annotated for logging, one ambassador route and one wait-for target;
- ``large``: a ~100 KB StatefulSet pod (4 containers, ~1,200 env entries, ~20 volumes, the
  managedFields the apiserver fills in before admission) with the same annotations;
- ``unannotated``: the small pod without any ``entourage.dev/`` annotation (the fast path);
- ``varied``: the golden cases' pods (tests/testdata/inject/) that the built-in profiles inject,
  each dressed as the reference pod, sent in turn with a counter in ``generateName`` so no two
  consecutive requests are alike and the answer cache cannot help.

Everything is deterministic, so two runs time the same bytes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "testdata" / "reviews" / "pod-create.json"

ANNOTATIONS = {
    "entourage.dev/logging": "true",
    "entourage.dev/ambassador": "6379=redis.cache:6379",
    "entourage.dev/wait-for": "tcp://db:5432",
}
"""What the annotated cases ask for: one logging agent, one ambassador, one wait-for init container."""

CASES = ("small", "large", "unannotated")
GOLDEN = REFERENCE.parent.parent / "inject"
VARIED_NAME = "entourage-varied-"
"""The ``generateName`` of every varied pod: the text wrk's script puts its counter after."""

LARGE_CONTAINERS = 4
LARGE_ENV_PER_CONTAINER = 300
LARGE_VOLUMES = 20


def reference_review() -> dict[str, Any]:
    return orjson.loads(REFERENCE.read_bytes())


def _annotate(review: dict[str, Any]) -> dict[str, Any]:
    review["request"]["object"]["metadata"]["annotations"].update(ANNOTATIONS)
    return review


def small_review() -> dict[str, Any]:
    """The reference pod with the three annotations."""
    return _annotate(reference_review())


def unannotated_review() -> dict[str, Any]:
    """The reference pod as it is: no ``entourage.dev/`` annotation, so nothing to inject."""
    review = reference_review()
    fields = review["request"]["object"]["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:annotations"]
    for key in [k for k in fields if k.startswith("f:entourage.dev/")]:
        del fields[key]
    return review


def _env(container: int, index: int) -> dict[str, Any]:
    name = f"SVC_{container}_SETTING_{index:04d}"
    if index % 10 == 0:
        return {"name": name, "valueFrom": {"configMapKeyRef": {"name": f"shard-config-{container}", "key": name.lower()}}}
    return {"name": name, "value": f"value-{container}-{index:04d}-" + "x" * (index % 17)}


def _large_container(index: int, volumes: list[str]) -> dict[str, Any]:
    name = "db" if index == 0 else f"worker-{index}"
    mounts = [
        {"name": volume, "mountPath": f"/mnt/{volume}", **({"readOnly": True} if j % 3 == 0 else {})}
        for j, volume in enumerate(volumes)
        if j % LARGE_CONTAINERS == index or volume.startswith(("data", "kube-api-access"))
    ]
    return {
        "name": name,
        "image": f"registry.example.com/db/{name}:7.2.{index}",
        "command": ["/usr/local/bin/entrypoint.sh"],
        "args": ["--config=/etc/db/config.yaml", f"--shard={index}"],
        "ports": [{"name": f"p{index}", "containerPort": 7000 + index, "protocol": "TCP"}],
        "env": [_env(index, n) for n in range(LARGE_ENV_PER_CONTAINER)],
        "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "500m", "memory": "2Gi"}},
        "volumeMounts": mounts,
        "livenessProbe": {
            "tcpSocket": {"port": 7000 + index},
            "initialDelaySeconds": 30,
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "exec": {"command": ["/usr/local/bin/ready.sh"]},
            "timeoutSeconds": 1,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _fields_of(container: dict[str, Any]) -> dict[str, Any]:
    """managedFields (FieldsV1) for one container, as the controller's update records it.

    The env list is recorded as a whole (``f:env: {}``) rather than entry by entry: with 1,200
    entries the per-entry form would double the body past the ~100 KB this case is meant to be.
    """
    mounts = {f'k:{{"mountPath":"{m["mountPath"]}"}}': {".": {}, "f:mountPath": {}, "f:name": {}} for m in container["volumeMounts"]}
    return {
        ".": {},
        "f:args": {},
        "f:command": {},
        "f:env": {},
        "f:image": {},
        "f:imagePullPolicy": {},
        "f:livenessProbe": {},
        "f:name": {},
        "f:ports": {},
        "f:readinessProbe": {},
        "f:resources": {},
        "f:securityContext": {},
        "f:terminationMessagePath": {},
        "f:terminationMessagePolicy": {},
        "f:volumeMounts": {".": {}, **mounts},
    }


def large_review() -> dict[str, Any]:
    """A StatefulSet's pod ``db-0``: several containers, ~1,200 env entries, ~20 volumes, annotated."""
    review = small_review()
    request = review["request"]
    request["uid"] = "9e1d7c3a-52f4-4b8e-a0c6-7f3e2b1d4a98"
    request["namespace"] = "data"
    pod = request["object"]
    metadata = pod["metadata"]
    del metadata["generateName"]
    metadata.update(
        name="db-0",
        namespace="data",
        labels={
            "app.kubernetes.io/name": "db",
            "apps.kubernetes.io/pod-index": "0",
            "controller-revision-hash": "db-5c8f7d9b6",
            "statefulset.kubernetes.io/pod-name": "db-0",
        },
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "db",
                "uid": "5b2e8f1c-3d4a-4e6b-9c7d-1a2b3c4d5e6f",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    )
    claims = [f"data-{n}" for n in range(4)]
    volumes: list[dict[str, Any]] = [{"name": c, "persistentVolumeClaim": {"claimName": f"{c}-db-0"}} for c in claims]
    volumes += [{"name": f"config-{n}", "configMap": {"name": f"db-config-{n}", "defaultMode": 420}} for n in range(8)]
    volumes += [{"name": f"secret-{n}", "secret": {"secretName": f"db-secret-{n}", "defaultMode": 420}} for n in range(4)]
    volumes += [{"name": f"scratch-{n}", "emptyDir": {}} for n in range(LARGE_VOLUMES - len(volumes) - 1)]
    volumes.append(copy.deepcopy(pod["spec"]["volumes"][-1]))  # the projected service-account token
    names = [v["name"] for v in volumes]
    spec = pod["spec"]
    spec["volumes"] = volumes
    spec["containers"] = [_large_container(i, names) for i in range(LARGE_CONTAINERS)]
    spec.update(hostname="db-0", subdomain="db", serviceAccountName="db", serviceAccount="db")
    fields = metadata["managedFields"][0]["fieldsV1"]
    fields["f:spec"]["f:containers"] = {f'k:{{"name":"{c["name"]}"}}': _fields_of(c) for c in spec["containers"]}
    fields["f:spec"]["f:volumes"] = {".": {}, **{f'k:{{"name":"{n}"}}': {".": {}, "f:name": {}} for n in names}}
    return review


def varied_reviews() -> list[dict[str, Any]]:
    """One review per golden case the built-in profiles inject: its annotations, containers, init
    containers and volumes on the reference pod (managedFields and all)."""
    import yaml

    from webhook.engine.inject import INJECTED, inject_pod
    from webhook.engine.settings import load_settings

    settings = load_settings(None, environ={})
    found = []
    for case in sorted(GOLDEN.glob("*.yaml")):
        pod = next(iter(yaml.safe_load_all(case.read_text())), None)
        if not isinstance(pod, dict) or pod.get("kind") != "Pod" or case.name == "config.yaml":
            continue
        review = reference_review()
        target = review["request"]["object"]
        annotations = {k: v for k, v in target["metadata"]["annotations"].items() if not k.startswith("entourage.dev/")}
        target["metadata"]["annotations"] = {**annotations, **(pod.get("metadata", {}).get("annotations") or {})}
        target["metadata"]["generateName"] = VARIED_NAME
        for section in ("containers", "initContainers", "volumes"):
            if section in pod["spec"]:
                target["spec"][section] = pod["spec"][section] + (
                    [v for v in target["spec"].get("volumes", []) if "projected" in v] if section == "volumes" else []
                )
        try:
            injected = inject_pod(target, settings).reason == INJECTED
        except Exception:  # noqa: BLE001 - a case the built-in profiles deny is simply not used
            injected = False
        if injected:
            found.append(review)
    return found


def reviews() -> dict[str, dict[str, Any]]:
    return {"small": small_review(), "large": large_review(), "unannotated": unannotated_review()}


def bodies() -> dict[str, bytes]:
    """Each case as the exact bytes on the wire (compact, as the apiserver encodes them)."""
    return {case: orjson.dumps(review) for case, review in reviews().items()}


def write(directory: Path) -> dict[str, Path]:
    """The bodies as files for wrk's Lua script; returns case → path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case, body in bodies().items():
        paths[case] = directory / f"{case}.json"
        paths[case].write_bytes(body)
    paths["varied"] = directory / "varied.jsonl"
    paths["varied"].write_bytes(b"".join(orjson.dumps(review) + b"\n" for review in varied_reviews()))
    return paths
