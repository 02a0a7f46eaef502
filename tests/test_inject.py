"""The injection rules, one behaviour per test, on the apiserver's reference pod."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import jsonpatch
import pytest

from tests.conftest import reference_pod
from tests.podcheck import assert_valid_injected_pod
from webhook.engine.inject import (
    ALREADY_INJECTED,
    DISABLED,
    INJECTED,
    NO_ANNOTATION,
    NOTHING_REQUESTED,
    ClusterFacts,
    Injection,
    inject_pod,
)
from webhook.engine.profiles.logging import AGENT_LOG_ROOT
from webhook.engine.settings import Settings, build_settings
from webhook.errors import ConfigError, PodDenied

EVERYTHING = {
    "entourage.dev/logging": "true",
    "entourage.dev/ambassador": "6379=redis.cache:6379",
    "entourage.dev/wait-for": "tcp://db:5432,dns://my-db-service",
    "entourage.dev/adapter": "nginx-prometheus",
}


def inject_checked(pod: dict[str, Any], settings: Settings, **kwargs: Any) -> Injection:
    """Inject, then check what every injection must satisfy: input untouched, patch == result,
    only adds under /spec and /metadata/annotations, valid pod, idempotent on a second pass."""
    original = copy.deepcopy(pod)
    injection = inject_pod(pod, settings, **kwargs)
    assert pod == original, "the input pod was mutated"
    assert jsonpatch.apply_patch(original, injection.patch) == injection.pod
    for operation in injection.patch:
        assert operation["op"] == "add"
        assert operation["path"].startswith(("/spec/", "/metadata/annotations"))
    if injection.reason == INJECTED:
        assert_valid_injected_pod(injection.pod, injection.components)
        again = inject_pod(injection.pod, settings, **kwargs)
        assert again.reason == ALREADY_INJECTED and again.patch == []
    return injection


def containers(pod: Any, section: str = "containers") -> list[str]:
    return [c["name"] for c in pod["spec"].get(section) or []]


def find(pod: Any, name: str) -> dict[str, Any]:
    spec = pod["spec"]
    return next(c for c in [*spec.get("containers", []), *spec.get("initContainers", [])] if c["name"] == name)


def test_a_pod_without_our_annotations_is_returned_as_it_is(settings: Settings) -> None:
    pod = reference_pod()
    injection = inject_checked(pod, settings)
    assert injection.reason == NO_ANNOTATION and injection.patch == [] and injection.pod is pod


def test_inject_false_disables_everything_even_invalid_keys(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/inject": "false", "entourage.dev/logging": "nonsense", "entourage.dev/bogus": "1"})
    assert inject_checked(pod, settings).reason == DISABLED


def test_a_pod_with_a_status_annotation_gets_nothing_more(settings: Settings) -> None:
    pod = reference_pod({**EVERYTHING, "entourage.dev/status": "written by someone else"})
    assert inject_checked(pod, settings).reason == ALREADY_INJECTED


def test_logging_false_alone_requests_nothing(settings: Settings) -> None:
    assert inject_checked(reference_pod({"entourage.dev/logging": "false"}), settings).reason == NOTHING_REQUESTED


def test_everything_at_once_in_classic_mode_orders_containers_as_documented(settings: Settings) -> None:
    injection = inject_checked(reference_pod(EVERYTHING), settings)
    pod = injection.pod
    assert containers(pod) == ["entourage-ambassador-6379", "checkout", "entourage-logging", "entourage-adapter-nginx-prometheus"]
    assert containers(pod, "initContainers") == ["entourage-wait-db-5432", "entourage-wait-my-db-service"]
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "checkout"
    status = json.loads(pod["metadata"]["annotations"]["entourage.dev/status"])
    assert status["containers"] == containers(pod)[:1] + containers(pod)[2:]
    assert status["volumes"] == ["entourage-logs-var-log-app"]


def test_native_ambassadors_go_before_the_users_init_containers_and_other_sidecars_after(settings: Settings) -> None:
    pod = reference_pod({**EVERYTHING, "entourage.dev/native-sidecars": "true"})
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": "migrate:1"}]
    injection = inject_checked(pod, settings)
    assert containers(injection.pod) == ["checkout"]
    assert containers(injection.pod, "initContainers") == [
        "entourage-wait-db-5432", "entourage-wait-my-db-service", "entourage-ambassador-6379",
        "migrate", "entourage-logging", "entourage-adapter-nginx-prometheus",
    ]  # fmt: skip
    pod["metadata"]["annotations"]["entourage.dev/ambassadors-first"] = "false"
    assert containers(inject_checked(pod, settings).pod, "initContainers") == [
        "entourage-wait-db-5432", "entourage-wait-my-db-service", "migrate",
        "entourage-ambassador-6379", "entourage-logging", "entourage-adapter-nginx-prometheus",
    ]  # fmt: skip
    for name in ("entourage-ambassador-6379", "entourage-logging", "entourage-adapter-nginx-prometheus"):
        assert find(injection.pod, name)["restartPolicy"] == "Always"
    assert "restartPolicy" not in find(injection.pod, "entourage-wait-db-5432")
    # Only the containers list changed by a mount: no default-container needed, none added.
    assert "kubectl.kubernetes.io/default-container" not in injection.pod["metadata"]["annotations"]


def test_the_ambassador_is_listening_before_the_app_starts(settings: Settings) -> None:
    classic = find(inject_checked(reference_pod(EVERYTHING), settings).pod, "entourage-ambassador-6379")
    assert classic["lifecycle"]["postStart"]["exec"]["command"][-1].startswith("TCP:127.0.0.1:6379,retry=")
    native_pod = reference_pod({**EVERYTHING, "entourage.dev/native-sidecars": "true"})
    native = find(inject_checked(native_pod, settings).pod, "entourage-ambassador-6379")
    assert native["startupProbe"]["exec"]["command"] == classic["lifecycle"]["postStart"]["exec"]["command"]
    assert "lifecycle" not in native


def test_native_sidecars_auto_follows_what_the_cluster_supports(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true"})
    assert containers(inject_checked(pod, settings).pod)[-1] == "entourage-logging"
    native = inject_checked(pod, settings, cluster=ClusterFacts(native_sidecars=True))
    assert containers(native.pod, "initContainers") == ["entourage-logging"]
    forced = inject_checked(pod, replace(settings, native_sidecars="true"))
    assert containers(forced.pod, "initContainers") == ["entourage-logging"]


def test_the_pod_annotation_overrides_the_native_sidecar_setting(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/native-sidecars": "false"})
    assert containers(inject_checked(pod, replace(settings, native_sidecars="true")).pod)[-1] == "entourage-logging"


def test_logging_shares_each_directory_read_write_in_the_app_and_read_only_in_the_agent(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/var/log/app,/data/audit"})
    injected = inject_checked(pod, settings).pod
    app_mounts = {m["mountPath"]: m for m in find(injected, "checkout")["volumeMounts"]}
    agent_mounts = {m["mountPath"]: m for m in find(injected, "entourage-logging")["volumeMounts"]}
    for path in ("/var/log/app", "/data/audit"):
        assert not app_mounts[path].get("readOnly")
        agent_path = AGENT_LOG_ROOT + path
        assert agent_mounts[agent_path] == {"name": app_mounts[path]["name"], "mountPath": agent_path, "readOnly": True}
    assert find(injected, "entourage-logging")["args"] == [
        "/var/run/entourage/logs/var/log/app=/var/log/app",
        "/var/run/entourage/logs/data/audit=/data/audit",
    ]


def test_an_existing_volume_at_a_logging_path_is_shared_not_shadowed(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/tmp"})
    injection = inject_checked(pod, settings)
    assert injection.status["volumes"] == []
    assert find(injection.pod, "entourage-logging")["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/var/run/entourage/logs/tmp", "readOnly": True}
    ]
    assert find(injection.pod, "checkout") is pod["spec"]["containers"][0]


# -- the logging agent cannot be made to run the pod author's programs ---------------------------


def injected_containers(injection: Injection) -> list[dict[str, Any]]:
    spec = injection.pod["spec"]
    return [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] in injection.components]


def test_the_agent_mounts_the_shared_directories_under_its_own_directory_only(settings: Settings) -> None:
    """The app's path, mounted in the agent, would put the app's files over the agent's own."""
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/opt/app/bin,/tmp,/home/app/logs"})
    agent = find(inject_checked(pod, settings).pod, "entourage-logging")
    assert [m["mountPath"] for m in agent["volumeMounts"]] == [AGENT_LOG_ROOT + p for p in ("/opt/app/bin", "/tmp", "/home/app/logs")]


@pytest.mark.parametrize("native", ["true", "false"])
def test_every_injected_program_is_an_absolute_path(settings: Settings, native: str) -> None:
    pod = reference_pod(
        {**EVERYTHING, "entourage.dev/adapter": "nginx-prometheus,statsd-prometheus", "entourage.dev/native-sidecars": native}
    )
    fluent = reference_pod({"entourage.dev/logging": "fluent-bit", "entourage.dev/native-sidecars": native})
    for injection in (inject_checked(pod, settings), inject_checked(fluent, settings)):
        for container in injected_containers(injection):
            ready = (container.get("startupProbe") or (container.get("lifecycle") or {}).get("postStart") or {}).get("exec")
            for command in (container["command"], *([ready["command"]] if ready else [])):
                assert command[0].startswith("/"), (container["name"], command[0])


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ("/usr/local/bin", "'/usr/local/bin': /usr/local/bin is under /usr, which holds programs and libraries"),
        ("/bin", "'/bin': /bin holds programs"),
        ("/lib64/app", "is under /lib64, which holds shared libraries"),
        ("/etc/app", "is under /etc, which holds configuration"),
        ("/var/run/secrets/kubernetes.io/serviceaccount", "which holds runtime state and the service-account token"),
        ("/run/app", "is under /run, which holds runtime state"),
        ("/proc/1", "is under /proc"),
        ("/dev", "/dev holds device files"),
        ("/", "'/': / holds the whole filesystem"),
        ("/var", "'/var': /var holds /var/lib"),
        ("/var/log/app,/var/log/app/", "the same path is listed twice"),
    ],
)
def test_system_directories_are_refused_as_logging_paths_by_name_with_the_reason(settings: Settings, paths: str, message: str) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": paths})
    with pytest.raises(PodDenied) as denial:
        inject_pod(pod, settings)
    [problem] = denial.value.problems
    assert problem.startswith("entourage.dev/logging-paths: ") and message in problem


def test_the_issues_reproduction_is_denied_before_anything_is_built(settings: Settings) -> None:
    """logging-paths: /usr/local/bin plus an app volume there holding an executable named sh."""
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/usr/local/bin"})
    pod["spec"]["volumes"].append({"name": "tools", "emptyDir": {}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "tools", "mountPath": "/usr/local/bin"})
    with pytest.raises(PodDenied, match="/usr/local/bin is under /usr"):
        inject_pod(pod, settings)


@pytest.mark.parametrize(
    ("volume", "kind"),
    [
        ({"secret": {"secretName": "db"}}, "secret"),
        ({"configMap": {"name": "settings"}}, "configMap"),
        ({"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}, "projected"),
        ({"downwardAPI": {"items": []}}, "downwardAPI"),
    ],
)
def test_credential_and_configuration_volumes_are_never_shared_with_the_agent(
    settings: Settings, volume: dict[str, Any], kind: str
) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/srv/creds"})
    pod["spec"]["volumes"].append({"name": "creds", **volume})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "creds", "mountPath": "/srv/creds"})
    with pytest.raises(PodDenied) as denial:
        inject_pod(pod, settings)
    assert denial.value.problems == [
        f"entourage.dev/logging-paths: '/srv/creds': the app mounts volume 'creds' ({kind}) there; secret, configMap, "
        "projected, downwardAPI volumes are never shared with the logging agent: write logs to a directory of their own"
    ]


def test_a_shared_mount_keeps_its_sub_path(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/var/log/app,/var/log/audit"})
    pod["spec"]["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "data"}})
    pod["spec"]["containers"][0]["volumeMounts"] += [
        {"name": "data", "mountPath": "/var/log/app", "subPath": "logs/app"},
        {"name": "data", "mountPath": "/var/log/audit", "subPathExpr": "audit"},
    ]
    injection = inject_checked(pod, settings)
    assert injection.status["volumes"] == []
    assert find(injection.pod, "entourage-logging")["volumeMounts"] == [
        {"name": "data", "mountPath": "/var/run/entourage/logs/var/log/app", "readOnly": True, "subPath": "logs/app"},
        {"name": "data", "mountPath": "/var/run/entourage/logs/var/log/audit", "readOnly": True, "subPathExpr": "audit"},
    ]


def test_a_shared_mount_whose_sub_path_needs_the_apps_environment_is_denied(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true"})
    pod["spec"]["volumes"].append({"name": "node-logs", "hostPath": {"path": "/var/log/pods-shared"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "node-logs", "mountPath": "/var/log/app", "subPathExpr": "$(POD_NAME)"})
    with pytest.raises(PodDenied, match=r"'/var/log/app': the app mounts volume 'node-logs' there with subPathExpr '\$\(POD_NAME\)'"):
        inject_pod(pod, settings)


@pytest.mark.parametrize("mount_path", ["/var/log/app/", "/var//log/./app", "/var/log/app//"])
def test_a_mount_path_is_compared_normalised_so_no_second_mount_shadows_it(settings: Settings, mount_path: str) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/var/log/app/"})
    pod["spec"]["volumes"].append({"name": "logs", "emptyDir": {"sizeLimit": "1Gi"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "logs", "mountPath": mount_path})
    injection = inject_checked(pod, settings)
    assert injection.status["volumes"] == []
    assert find(injection.pod, "checkout") is pod["spec"]["containers"][0]
    assert find(injection.pod, "entourage-logging")["volumeMounts"] == [
        {"name": "logs", "mountPath": "/var/run/entourage/logs/var/log/app", "readOnly": True}
    ]


def test_the_agent_knows_the_pods_identity_from_the_downward_api(settings: Settings) -> None:
    injection = inject_checked(reference_pod({"entourage.dev/logging": "fluent-bit"}), settings)
    agent = find(injection.pod, "entourage-logging")
    assert agent["env"] == [
        {"name": "ENTOURAGE_POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "ENTOURAGE_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "ENTOURAGE_CONTAINER_NAME", "value": "checkout"},
    ]
    records = [agent["args"][i + 1] for i, arg in enumerate(agent["args"]) if arg == "-p" and agent["args"][i + 1].startswith("record=")]
    assert records == [
        "record=namespace_name $(ENTOURAGE_POD_NAMESPACE)",
        "record=pod_name $(ENTOURAGE_POD_NAME)",
        "record=container_name $(ENTOURAGE_CONTAINER_NAME)",
    ]
    assert "path=/var/run/entourage/logs/var/log/app/*" in agent["args"]


def test_the_logging_target_follows_the_annotation_then_default_container_then_first(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "kubectl.kubernetes.io/default-container": "web"})
    pod["spec"]["containers"].append({"name": "web", "image": "nginx:1.27"})
    injected = inject_checked(pod, settings).pod
    assert [m["mountPath"] for m in find(injected, "web")["volumeMounts"]] == ["/var/log/app"]
    pod["metadata"]["annotations"]["entourage.dev/logging-container"] = "checkout"
    injected = inject_checked(pod, settings).pod
    assert "/var/log/app" in [m["mountPath"] for m in find(injected, "checkout")["volumeMounts"]]
    # The pod already says which container is the default: we leave it alone.
    assert injected["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "web"


def test_a_missing_logging_container_is_denied_with_the_names_that_exist(settings: Settings) -> None:
    with pytest.raises(PodDenied, match=r"entourage.dev/logging-container: 'api': no such container; the pod has checkout"):
        inject_pod(reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-container": "api"}), settings)


def test_names_never_collide_with_the_users_containers_or_volumes(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true"})
    pod["spec"]["containers"].append({"name": "entourage-logging", "image": "mine:1"})
    pod["spec"]["volumes"].append({"name": "entourage-logs-var-log-app", "emptyDir": {}})
    injection = inject_checked(pod, settings)
    assert injection.status == {"initContainers": [], "containers": ["entourage-logging-2"], "volumes": ["entourage-logs-var-log-app-2"]}


def test_long_targets_give_names_of_at_most_63_characters(settings: Settings) -> None:
    host = "a" * 60 + ".b" * 10
    pod = reference_pod({"entourage.dev/wait-for": f"{host}:5432,{host}:5433"})
    names = inject_checked(pod, settings).status["initContainers"]
    assert len(names) == 2 and len(set(names)) == 2 and all(len(n) <= 63 for n in names)


def test_an_ambassador_port_used_by_the_app_is_denied(settings: Settings) -> None:
    with pytest.raises(PodDenied, match=r"port 8080 of ambassador route '8080=redis:6379' is already used by container 'checkout'"):
        inject_pod(reference_pod({"entourage.dev/ambassador": "8080=redis:6379"}), settings)


def test_a_port_of_the_pods_own_native_sidecar_is_taken_for_an_ambassador_or_an_adapter(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "9000=redis:6379"})
    pod["spec"]["initContainers"] = [
        {"name": "proxy", "image": "envoy:1.31.0", "restartPolicy": "Always", "ports": [{"containerPort": 9000}, {"containerPort": 9113}]}
    ]
    with pytest.raises(PodDenied, match=r"port 9000 of ambassador route '9000=redis:6379' is already used by container 'proxy'"):
        inject_pod(pod, settings)
    pod["metadata"]["annotations"] = {"entourage.dev/adapter": "nginx-prometheus"}
    with pytest.raises(PodDenied, match=r"port 9113 of adapter 'nginx-prometheus' \(metrics\) is already used by container 'proxy'"):
        inject_pod(pod, settings)
    # A plain init container has exited before any sidecar starts: its ports are free again.
    del pod["spec"]["initContainers"][0]["restartPolicy"]
    pod["metadata"]["annotations"]["entourage.dev/ambassador"] = "9000=redis:6379"
    assert inject_checked(pod, settings).reason == INJECTED


def test_two_routes_on_one_local_port_are_denied(settings: Settings) -> None:
    with pytest.raises(PodDenied, match=r"port 6379 .* already used by ambassador route"):
        inject_pod(reference_pod({"entourage.dev/ambassador": "redis-a:6379,6379=redis-b:7000"}), settings)


def test_an_adapter_port_colliding_with_a_route_is_denied(settings: Settings) -> None:
    with pytest.raises(PodDenied, match="adapter 'nginx-prometheus' \\(metrics\\)"):
        inject_pod(
            reference_pod({"entourage.dev/ambassador": "9113=metrics-db:9113", "entourage.dev/adapter": "nginx-prometheus"}), settings
        )


def test_a_privileged_local_port_the_pod_makes_unprivileged_adds_no_capability(settings: Settings) -> None:
    pod = with_sysctls(reference_pod({"entourage.dev/ambassador": "443=tls://api.example.com:443"}), "443")
    ambassador = find(inject_checked(pod, settings).pod, "entourage-ambassador-443")
    assert ambassador["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert (
        ambassador["args"][-1]
        == "OPENSSL:api.example.com:443,verify=1,cafile=/etc/ssl/certs/ca-certificates.crt,commonname=api.example.com"
    )


def test_an_adapter_port_collision_names_the_adapter_key_and_both_owners(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "9113=metrics-db:9113", "entourage.dev/adapter": "nginx-prometheus"})
    with pytest.raises(PodDenied) as denial:
        inject_pod(pod, settings)
    assert denial.value.problems == [
        "entourage.dev/adapter: 'nginx-prometheus': port 9113 of adapter 'nginx-prometheus' (metrics) is already used by ambassador route '9113=metrics-db:9113'"
    ]


def with_sysctls(pod: dict[str, Any], start: Any, name: str = "net.ipv4.ip_unprivileged_port_start") -> dict[str, Any]:
    """The pod with its own ``net.ipv4.ip_unprivileged_port_start`` (None: no sysctls at all)."""
    if start is not None:
        pod["spec"]["securityContext"] = {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}, {"name": name, "value": start}]}
    return pod


@pytest.mark.parametrize(
    ("port", "start"),
    [(1024, None), (65535, None), (1023, "0"), (1023, "1023"), (80, "80"), (1, "0")],
    ids=["1024-unset", "65535-unset", "1023-start-0", "1023-start-1023", "80-start-80", "1-start-0"],
)
def test_a_local_port_at_or_above_the_unprivileged_start_is_injected_without_a_capability(
    settings: Settings, port: int, start: Any
) -> None:
    injected = inject_checked(with_sysctls(reference_pod({"entourage.dev/ambassador": f"{port}=db:5432"}), start), settings).pod
    assert find(injected, f"entourage-ambassador-{port}")["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_sysctl_may_be_spelled_with_slashes(settings: Settings) -> None:
    pod = with_sysctls(reference_pod({"entourage.dev/ambassador": "80=db:5432"}), "0", name="net/ipv4/ip_unprivileged_port_start")
    assert find(inject_checked(pod, settings).pod, "entourage-ambassador-80")


FIX = "; use a local port of 1024 or more, or set that sysctl in the pod's spec.securityContext.sysctls to at most {port}"


@pytest.mark.parametrize(
    ("route", "start", "found"),
    [
        ("1023=db:5432", None, "does not set it"),
        ("1023=db:5432", "1024", "sets it to 1024"),
        ("80=db:5432", "81", "sets it to 81"),
        ("tls://api.example.com:443", "1000", "sets it to 1000"),
        ("80=db:5432", "eighty", "sets it to 'eighty', not an integer from 0 to 65535"),
        ("80=db:5432", "-1", "sets it to '-1', not an integer from 0 to 65535"),
        ("80=db:5432", "65536", "sets it to '65536', not an integer from 0 to 65535"),
        ("80=db:5432", "", "sets it to '', not an integer from 0 to 65535"),
        ("80=db:5432", 0, "sets it to '0', not an integer from 0 to 65535"),
        ("80=db:5432", {"value": 0}, "sets it to \"{'value': 0}\", not an integer from 0 to 65535"),
    ],
    ids=["unset", "1024", "above-the-port", "the-upstream-port", "words", "negative", "too-large", "empty", "not-a-string", "an-object"],
)
def test_a_privileged_local_port_is_denied_naming_the_annotation_value_reason_and_fix(
    settings: Settings, route: str, start: Any, found: str
) -> None:
    port = int(route.split("=")[0]) if "=" in route else 443
    shown = route if "=" in route else f"{port}={route}"  # a route is named with its local port
    with pytest.raises(PodDenied) as denial:
        inject_pod(with_sysctls(reference_pod({"entourage.dev/ambassador": route}), start), settings)
    assert denial.value.problems == [
        f"entourage.dev/ambassador: {shown!r}: local port {port} is below 1024: the non-root ambassador binds it only where "
        f"net.ipv4.ip_unprivileged_port_start is at most {port} (an added NET_BIND_SERVICE does not survive its execve), "
        f"and the pod's spec.securityContext.sysctls {found}" + FIX.format(port=port)
    ]


def test_every_privileged_route_is_named_along_with_the_other_problems(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "80=db:5432,2000=db:5432,53=dns:53,2000=other:1"})
    with pytest.raises(PodDenied) as denial:
        inject_pod(pod, settings)
    assert [problem.split(" is ")[0] for problem in denial.value.problems] == [
        "entourage.dev/ambassador: '80=db:5432': local port 80",
        "entourage.dev/ambassador: '53=dns:53': local port 53",
        "entourage.dev/ambassador: '2000=other:1': port 2000 of ambassador route '2000=other:1'",
    ]


def test_an_ambassador_profile_gets_each_part_of_the_route(settings: Settings) -> None:
    envoy = {
        "image": "envoyproxy/envoy:v1.31.0",
        "command": ["/proxy"],
        "args": ["--listen=127.0.0.1:{local-port}", "--to={upstream}", "--host={upstream-host}", "--port={upstream-port}"],
        "tlsArgs": ["--tls", "--to={upstream}", "--sni={upstream-host}"],
        "readyCommand": ["/proxy", "--check={local-port}"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }
    configured = build_settings({"defaults": {"ambassador": "envoy"}, "profiles": {"ambassador": {"envoy": envoy}}})
    pod = reference_pod(
        {"entourage.dev/ambassador": "7000=[fd00::1]:6379,8443=tls://api.example.com:443", "entourage.dev/native-sidecars": "true"}
    )
    injected = inject_checked(pod, configured).pod
    plain, tls = find(injected, "entourage-ambassador-7000"), find(injected, "entourage-ambassador-8443")
    assert plain["args"] == ["--listen=127.0.0.1:7000", "--to=[fd00::1]:6379", "--host=fd00::1", "--port=6379"]
    assert tls["args"] == ["--tls", "--to=api.example.com:443", "--sni=api.example.com"]
    assert plain["startupProbe"]["exec"]["command"] == ["/proxy", "--check=7000"]


def test_profile_parameters_set_by_annotation_reach_the_ambassador_and_the_logging_agent(settings: Settings) -> None:
    pod = reference_pod(
        {
            "entourage.dev/ambassador": "8443=tls://api.example.com:443",
            "entourage.dev/ambassador.socat.ca-file": "/etc/ssl/custom.pem",
            "entourage.dev/logging": "fluent-bit",
            "entourage.dev/logging-paths": "/var/log/app,/data/audit",
            "entourage.dev/logging.fluent-bit.host": "collector.example",
        }
    )
    injected = inject_checked(pod, settings).pod
    assert (
        find(injected, "entourage-ambassador-8443")["args"][-1]
        == "OPENSSL:api.example.com:443,verify=1,cafile=/etc/ssl/custom.pem,commonname=api.example.com"
    )
    agent = find(injected, "entourage-logging")["args"]
    assert (
        f"path={AGENT_LOG_ROOT}/var/log/app/*,{AGENT_LOG_ROOT}/data/audit/*" in agent
        and "host=collector.example" in agent
        and "port=24224" in agent
    )


def test_a_request_override_equal_to_the_profiles_limit_is_accepted(settings: Settings) -> None:
    pod = reference_pod(
        {"entourage.dev/logging": "true", "entourage.dev/logging-memory-request": "64Mi", "entourage.dev/logging-cpu-request": "0.1"}
    )
    resources = find(inject_checked(pod, settings).pod, "entourage-logging")["resources"]
    assert resources == {"requests": {"cpu": "0.1", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


def test_every_logging_path_is_shared_when_the_first_is_already_a_volume_of_the_app(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/tmp,/var/log/app"})
    agent = find(inject_checked(pod, settings).pod, "entourage-logging")
    assert agent["volumeMounts"] == [
        {"name": "tmp", "mountPath": f"{AGENT_LOG_ROOT}/tmp", "readOnly": True},
        {"name": "entourage-logs-var-log-app", "mountPath": f"{AGENT_LOG_ROOT}/var/log/app", "readOnly": True},
    ]


def test_the_logging_target_messages_name_every_container(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "kubectl.kubernetes.io/default-container": "ghost"})
    pod["spec"]["containers"].append({"name": "web", "image": "nginx:1.27"})
    assert inject_checked(pod, settings).warnings == (
        "kubectl.kubernetes.io/default-container names no container; logging uses 'checkout'",
    )
    pod["metadata"]["annotations"]["entourage.dev/logging-container"] = "api"
    with pytest.raises(PodDenied) as denial:
        inject_pod(pod, settings)
    assert denial.value.problems == ["entourage.dev/logging-container: 'api': no such container; the pod has checkout, web"]


def test_a_port_declared_twice_in_the_pod_is_owned_by_its_first_container(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "8080=redis:6379"})
    pod["spec"]["containers"].append({"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": "8080"}, {"containerPort": 8080}]})
    with pytest.raises(PodDenied) as denial:
        inject_pod(pod, settings)
    assert denial.value.problems == [
        "entourage.dev/ambassador: '8080=redis:6379': port 8080 of ambassador route '8080=redis:6379' is already used by container 'checkout'"
    ]


@pytest.mark.parametrize("policy", ["Never", "OnFailure"])
def test_a_pod_that_is_not_restarted_gets_the_classic_sidecar_warning(settings: Settings, policy: str) -> None:
    pod = reference_pod({"entourage.dev/adapter": "nginx-prometheus"})
    pod["spec"]["restartPolicy"] = policy
    assert inject_checked(pod, settings).warnings == (
        'classic sidecars keep this pod running after the app exits; set entourage.dev/native-sidecars: "true"',
    )


def test_a_host_network_pod_is_warned_about_each_ambassador_port(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/ambassador": "6379=redis:6379,7000=db:7000"})
    pod["spec"]["hostNetwork"] = True
    assert inject_checked(pod, settings).warnings == ("hostNetwork pod: ambassador ports 6379, 7000 are bound on the node's loopback",)


def test_wait_for_containers_run_before_the_pods_own_init_containers(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/wait-for": "dns://my-db-service", "entourage.dev/wait-for-timeout": "90s"})
    pod["spec"]["initContainers"] = [{"name": "init-myservice", "image": "busybox:1.28"}]
    injection = inject_checked(pod, settings)
    assert containers(injection.pod, "initContainers") == ["entourage-wait-my-db-service", "init-myservice"]
    assert find(injection.pod, "entourage-wait-my-db-service")["args"] == ["dns", "my-db-service", "90", "system", "false"]
    assert [op["path"] for op in injection.patch if op["path"].startswith("/spec")] == ["/spec/initContainers/0"]


def test_absent_arrays_and_maps_are_created_exactly_once(settings: Settings) -> None:
    pod = {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    pod["metadata"]["annotations"] = None
    pod = {
        "metadata": {"name": "bare", "annotations": {"entourage.dev/logging": "true", "entourage.dev/wait-for": "db:1"}},
        "spec": pod["spec"],
    }
    injection = inject_checked(pod, settings)
    paths = [op["path"] for op in injection.patch]
    assert paths.count("/spec/volumes") == 1 and paths.count("/spec/initContainers") == 1
    assert "/spec/containers/0/volumeMounts" in paths
    bare = {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    namespaced = inject_checked(bare, settings, namespace_annotations={"entourage.dev/logging": "true"})
    assert "/metadata/annotations" in [op["path"] for op in namespaced.patch]


def test_annotation_keys_with_slashes_are_escaped_in_the_patch(settings: Settings) -> None:
    paths = [op["path"] for op in inject_checked(reference_pod(EVERYTHING), settings).patch]
    assert "/metadata/annotations/entourage.dev~1status" in paths
    assert "/metadata/annotations/kubectl.kubernetes.io~1default-container" in paths


def test_the_users_containers_change_only_by_the_logging_mounts(settings: Settings) -> None:
    pod = reference_pod(EVERYTHING)
    injected = inject_checked(pod, settings).pod
    app = dict(find(injected, "checkout"))
    mounts = app.pop("volumeMounts")
    original = dict(pod["spec"]["containers"][0])
    assert mounts[: len(original["volumeMounts"])] == original.pop("volumeMounts")
    assert app == original


def test_namespace_annotations_apply_and_the_pods_own_win(settings: Settings) -> None:
    namespace = {"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/srv/logs", "other/key": "x"}
    pod = reference_pod({"entourage.dev/logging-paths": "/var/log/app"})
    injected = inject_checked(pod, settings, namespace_annotations=namespace).pod
    assert find(injected, "entourage-logging")["args"] == ["/var/run/entourage/logs/var/log/app=/var/log/app"]
    opted_out = reference_pod({"entourage.dev/inject": "false"})
    assert inject_checked(opted_out, settings, namespace_annotations=namespace).reason == DISABLED


def test_resource_overrides_apply_to_every_container_of_that_kind(settings: Settings) -> None:
    pod = reference_pod(
        {"entourage.dev/wait-for": "a:1,b:2", "entourage.dev/wait-for-memory-limit": "48Mi", "entourage.dev/wait-for-cpu-request": "5m"}
    )
    injected = inject_checked(pod, settings).pod
    for name in ("entourage-wait-a-1", "entourage-wait-b-2"):
        assert find(injected, name)["resources"] == {
            "requests": {"cpu": "5m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "48Mi"},
        }


def test_a_request_override_above_the_profiles_limit_is_denied_with_the_key_to_set(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-memory-request": "128Mi"})
    with pytest.raises(
        PodDenied, match=r"logging-memory-request: '128Mi': above the memory limit 64Mi \(set entourage.dev/logging-memory-limit as well\)"
    ):
        inject_pod(pod, settings)


def test_a_job_pod_with_classic_sidecars_gets_a_warning_under_120_characters(settings: Settings) -> None:
    pod = reference_pod({"entourage.dev/logging": "true"})
    pod["spec"]["restartPolicy"] = "Never"
    injection = inject_checked(pod, settings)
    assert any("native-sidecars" in w for w in injection.warnings)
    assert all(len(w) < 120 for w in injection.warnings)


def test_adapter_parameters_set_by_annotation_reach_the_arguments(settings: Settings) -> None:
    pod = reference_pod(
        {
            "entourage.dev/adapter": "nginx-prometheus",
            "entourage.dev/adapter.nginx-prometheus.status-port": "8081",
            "entourage.dev/adapter.nginx-prometheus.port": "9200",
        }
    )
    adapter = find(inject_checked(pod, settings).pod, "entourage-adapter-nginx-prometheus")
    assert adapter["args"] == ["--nginx.scrape-uri=http://127.0.0.1:8081/stub_status", "--web.listen-address=:9200"]
    assert adapter["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]


def test_a_pod_without_a_named_container_is_denied_saying_so(settings: Settings) -> None:
    with pytest.raises(PodDenied) as denial:
        inject_pod({"metadata": {"annotations": {"entourage.dev/logging": "true"}}, "spec": {"containers": []}}, settings)
    assert denial.value.problems == ["spec.containers: a pod needs at least one container with a name"]


def test_a_status_annotation_on_the_namespace_is_not_inherited(settings: Settings) -> None:
    namespace = {"entourage.dev/status": "{}", "entourage.dev/logging": "true"}
    assert inject_checked(reference_pod(), settings, namespace_annotations=namespace).reason == INJECTED


def test_a_malformed_pod_is_denied_not_crashed(settings: Settings) -> None:
    for spec in (
        None, {}, {"containers": []}, {"containers": [{"image": "x"}]}, {"containers": [{"name": "a"}], "volumes": "x"},
        {"containers": ["app"]}, {"containers": [{"name": "a"}], "initContainers": [5]},
    ):  # fmt: skip
        with pytest.raises(PodDenied):
            inject_pod({"metadata": {"annotations": {"entourage.dev/logging": "true"}}, "spec": spec}, settings)


def test_wait_for_parameters_are_honoured_and_warned_about_when_unused() -> None:
    """A waitFor profile's declared parameter reaches its container like any other kind's."""
    settings = build_settings(
        {
            "defaults": {"waitFor": "probe"},
            "profiles": {
                "waitFor": {
                    "probe": {
                        "image": "registry.example/probe:1.0",
                        "command": ["/probe"],
                        "args": ["{kind}", "{target}", "{timeout-seconds}", "--interval={interval}"],
                        "params": {"interval": {"type": "duration", "default": "2s", "description": "between attempts"}},
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
                    }
                }
            },
        }
    )
    asked = {"entourage.dev/wait-for": "tcp://db:5432", "entourage.dev/wait-for.probe.interval": "5s"}
    pod = {"metadata": {"annotations": asked}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    [wait] = inject_pod(pod, settings).pod["spec"]["initContainers"]
    assert wait["args"][-1] == "--interval=5"
    unused = {"entourage.dev/logging": "true", "entourage.dev/wait-for.probe.interval": "5s"}
    warnings = inject_pod({**pod, "metadata": {"annotations": unused}}, settings).warnings
    assert any("wait-for.probe.* has no effect" in warning for warning in warnings)


OPENSHIFT = {"openshift.io/sa.scc.uid-range": "1000680000/10000", "openshift.io/sa.scc.supplemental-groups": "1000680000/10000"}


@pytest.mark.parametrize("native", ["true", "false"])
def test_in_a_namespace_that_assigns_uids_injected_containers_name_none(settings: Settings, native: str) -> None:
    pod = reference_pod({**EVERYTHING, "entourage.dev/native-sidecars": native})
    injection = inject_checked(pod, settings, namespace_annotations=OPENSHIFT)
    for name in injection.components:
        security = find(injection.pod, name)["securityContext"]
        assert "runAsUser" not in security and "runAsGroup" not in security, name
        assert security["runAsNonRoot"] is True and security["capabilities"]["drop"] == ["ALL"]
    # The same pod elsewhere keeps the profiles' UIDs, and the shared containers are untouched.
    elsewhere = inject_checked(reference_pod({**EVERYTHING, "entourage.dev/native-sidecars": native}), settings)
    assert all(find(elsewhere.pod, name)["securityContext"]["runAsUser"] == 65532 for name in elsewhere.components)


def test_run_as_user_profile_keeps_the_uids_even_where_the_namespace_assigns_them() -> None:
    fixed = build_settings({"runAsUser": "profile"})
    injection = inject_checked(reference_pod(EVERYTHING), fixed, namespace_annotations=OPENSHIFT)
    assert all(find(injection.pod, name)["securityContext"]["runAsUser"] == 65532 for name in injection.components)
    with pytest.raises(ConfigError, match="runAsUser: expected auto or profile, got 1000"):
        build_settings({"runAsUser": 1000})
