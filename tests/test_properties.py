"""Property tests of the injection engine: random valid pods × random annotations.

Four properties, each stated by a test name:
1. random valid pods with random VALID annotation sets are either denied for a reason the
   generator predicted (a port collision, a request above a limit, ...) or injected with an
   add-only patch that reproduces the result, a valid pod, and idempotency;
2. random annotation STRINGS (shell metacharacters, look-alikes, very long values, unknown keys)
   give a denial naming the key or a valid pod whose arguments are all safe tokens;
3. every independent invalid key gets its own message;
4. a one-character typo of every known key is denied with the nearest known key suggested.

The bugs these properties found (a trailing newline passing `$`-anchored patterns, IPv6 zone
ids, quantity exponents overflowing Decimal, IPv6 http targets without a port, binary quantity
suffixes) are kept as plain regression tests at the end of the file.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import difflib
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

from tests.podcheck import assert_valid_injected_pod
from tests.test_golden import by_field
from webhook.admission import partial
from webhook.admission.decide import admit
from webhook.admission.reuse import AnswerCache
from webhook.admission.review import decode
from webhook.engine.annotations import KEYS, RESOURCE_FIELDS
from webhook.engine.inject import (
    ALREADY_INJECTED,
    DISABLED,
    INJECTED,
    NO_ANNOTATION,
    NOTHING_REQUESTED,
    Injection,
    inject_pod,
)
from webhook.engine.patch import diff, encode
from webhook.engine.quantity import parse_quantity
from webhook.engine.settings import ANNOTATION_KINDS, PLACEHOLDER, Settings, load_settings
from webhook.errors import PodDenied

SETTINGS = load_settings(None, environ={})
NATIVE = dataclasses.replace(SETTINGS, native_sidecars="true")
PREFIX = SETTINGS.annotation_prefix

# What an argument that reaches a container may contain: no white space, quotes, backslashes,
# `$`, backticks, `;`, `|`, `&`, `<`, `>`, `(`, `)`, nothing non-ASCII. fullmatch, never `$`.
SAFE_TOKEN = re.compile(r"[A-Za-z0-9._~%/:@=+,*?\[\]-]*")
# The apiserver's quantity grammar (non-negative), matched with fullmatch so "1\n" fails.
QUANTITY = re.compile(r"\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]{1,2})?")

LITERAL_ARGUMENTS = frozenset(
    arg
    for profiles in SETTINGS.profiles.values()
    for profile in profiles.values()
    for arg in (*profile.args, *profile.tls_args, *profile.ready_command)
    if not PLACEHOLDER.search(arg)
)
"""Arguments written in the catalog as they are (fluent-bit's ``record=pod_name $(ENTOURAGE_POD_NAME)``)."""

ADAPTER_PORTS = {"nginx-prometheus": [9113], "statsd-prometheus": [9102, 9125]}
"""The built-in adapters' default listening ports (checked against the catalog below)."""

PROPERTY = settings(max_examples=300, deadline=None)
ANSWERS = AnswerCache()


def test_the_generators_know_the_catalogs_adapter_ports() -> None:
    for name, ports in ADAPTER_PORTS.items():
        profile = SETTINGS.profile("adapter", name)
        assert profile is not None
        defaults = {param: spec.default for param, spec in profile.params.items()}
        assert sorted(
            int(re.sub(r"\{([a-z-]+)\}", lambda m, defaults=defaults: defaults[m[1]], port)) for _, port in profile.ports
        ) == sorted(ports)


# ---------------------------------------------------------------------------------------------
# Strategies: pods

label = st.from_regex(r"[a-z]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
container_name = st.one_of(
    label,
    # Names the engine would like for itself, and the longest legal name.
    st.sampled_from(
        [
            "app",
            "entourage-logging",
            "entourage-ambassador-6379",
            "entourage-wait-db-5432",
            "entourage-adapter-nginx-prometheus",
            "entourage-logging-2",
            "a" * 63,
        ]
    ),
)
volume_name = st.one_of(label, st.sampled_from(["entourage-logs-var-log-app", "entourage-logs-data", "logs"]))
port_number = st.one_of(st.sampled_from([80, 443, 5432, 6379, 8080, 9102, 9113, 9125]), st.integers(1, 65535))
MOUNT_PATHS = ["/var/log/app", "/var/log", "/data", "/tmp", "/srv/logs", "/etc/app"]
SYSTEM_DIRECTORIES = (
    "/bin",
    "/sbin",
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
)


def is_system_directory(path: str) -> bool:
    """The rule logging-paths follows, stated again: never at or under these, nor / or /var."""
    return path in ("/", "/var") or any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRECTORIES)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Pod as the apiserver sends it for admission (before our annotations are added)."""
    n_containers = draw(st.integers(1, 4))
    n_init = draw(st.integers(0, 2))
    names = draw(st.lists(container_name, min_size=n_containers + n_init, max_size=n_containers + n_init, unique=True))
    volumes = [
        {"name": name, **draw(st.sampled_from([{"emptyDir": {}}, {"configMap": {"name": "settings"}}]))}
        for name in draw(st.lists(volume_name, max_size=3, unique=True))
    ]

    def mounts() -> list[dict[str, Any]]:
        chosen = draw(st.lists(st.sampled_from(volumes), max_size=len(volumes), unique_by=lambda v: v["name"])) if volumes else []
        paths = draw(st.lists(st.sampled_from(MOUNT_PATHS), min_size=len(chosen), max_size=len(chosen), unique=True))
        result = []
        for volume, path in zip(chosen, paths, strict=True):
            mount: dict[str, Any] = {"name": volume["name"], "mountPath": path}
            if draw(st.booleans()):
                mount["readOnly"] = draw(st.booleans())
            result.append(mount)
        return result

    containers: list[dict[str, Any]] = [{"name": name, "image": "registry.example/app:1.0"} for name in names[:n_containers]]
    for port in draw(st.lists(port_number, max_size=5, unique=True)):
        entry: dict[str, Any] = {"containerPort": port}
        if draw(st.booleans()):
            entry["name"] = f"p{port}"
        if draw(st.booleans()):
            entry["protocol"] = "TCP"
        containers[draw(st.integers(0, n_containers - 1))].setdefault("ports", []).append(entry)
    for container in containers:
        if draw(st.booleans()) and (chosen := mounts()):
            container["volumeMounts"] = chosen
    spec: dict[str, Any] = {"containers": containers}
    if n_init or draw(st.booleans()):
        spec["initContainers"] = [
            {"name": name, "image": "busybox:1.36.1", "command": ["sh", "-c", "true"]} for name in names[n_containers:]
        ]
        for init in spec["initContainers"]:
            if draw(st.booleans()) and (chosen := mounts()):
                init["volumeMounts"] = chosen
    if volumes or draw(st.booleans()):
        spec["volumes"] = volumes
    if draw(st.booleans()):
        spec["hostNetwork"] = draw(st.booleans())
    if draw(st.booleans()):
        spec["restartPolicy"] = draw(st.sampled_from(["Always", "OnFailure", "Never"]))
    metadata: dict[str, Any] = {"name": "pod-under-test", "namespace": "shop"}
    base = draw(st.sampled_from(["absent", "empty", "other", "default-container", "ghost-default"]))
    if base != "absent":
        metadata["annotations"] = {}
    if base in ("other", "default-container", "ghost-default"):
        metadata["annotations"]["prometheus.io/scrape"] = "true"
    if base == "default-container":
        metadata["annotations"]["kubectl.kubernetes.io/default-container"] = draw(st.sampled_from([c["name"] for c in containers]))
    if base == "ghost-default":
        metadata["annotations"]["kubectl.kubernetes.io/default-container"] = "ghost"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def pod_ports(pod: Mapping[str, Any]) -> list[int]:
    """Ports the pod's containers listen on (what an ambassador or adapter must not reuse)."""
    return [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []]


# ---------------------------------------------------------------------------------------------
# Strategies: valid annotation values drawn from the grammar

dns_name = st.lists(st.from_regex(r"[a-z]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
host = st.one_of(dns_name, dns_name.map(str.upper), ipv4, ipv6)
url_path = st.one_of(
    st.just(""),
    st.lists(st.from_regex(r"[A-Za-z0-9_~%=+-]{1,8}", fullmatch=True), min_size=0, max_size=3).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(["/healthz", "/ready?full=1", "/api/v1/status", "/stub_status"]),
)
clean_dir = st.lists(
    st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,10}", fullmatch=True).filter(lambda s: s not in (".", "..")), min_size=1, max_size=4
).map(lambda parts: "/" + "/".join(parts))
CPU = ["1m", "5m", "10m", "50m", "100m", "250m", "0.5", "1", "2", "1500m"]
MEMORY = ["4Mi", "16Mi", "64Mi", "128Mi", "100M", "1Gi", "2Gi", "500k"]  # not Ki: BUG 5


def host_port(name: str, port: int) -> str:
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


@st.composite
def wait_targets(draw: st.DrawFn) -> list[str]:
    """1-3 targets on distinct hosts (so no two normalise to the same target)."""
    hosts = draw(st.lists(host, min_size=1, max_size=3, unique_by=lambda h: h.lower()))
    targets = []
    for name in hosts:
        kind = draw(st.sampled_from(["bare", "tcp", "http", "https", "dns"]))
        port = draw(st.integers(1, 65535))
        if kind == "bare":
            targets.append(host_port(name, port))
        elif kind == "tcp":
            targets.append("tcp://" + host_port(name, port))
        elif kind == "dns":
            targets.append("dns://" + name)
        else:
            # An IPv6 host without a port is a known bug (see below): always give it a port here.
            with_port = ":" in name or draw(st.booleans())
            authority = host_port(name, port) if with_port else name
            targets.append(f"{kind}://{authority}{draw(url_path)}")
    return targets


@st.composite
def routes(draw: st.DrawFn, taken: list[int]) -> list[tuple[int, str]]:
    """1-3 ambassador routes as (local port, annotation item); local ports may collide on purpose."""
    result = []
    for _ in range(draw(st.integers(1, 3))):
        upstream_port = draw(st.one_of(st.sampled_from([6379, 5432, 443]), st.integers(1, 65535)))
        upstream = ("tls://" if draw(st.booleans()) else "") + host_port(draw(host), upstream_port)
        if draw(st.booleans()):
            result.append((upstream_port, upstream))
        else:
            local = draw(st.one_of(st.integers(1, 65535), st.sampled_from([*taken, 9113, 9102, 9125, 6379])))
            result.append((local, f"{local}={upstream}"))
    return result


@st.composite
def valid_annotations(draw: st.DrawFn, pod: Mapping[str, Any]) -> tuple[dict[str, str], set[str], set[str]]:
    """Annotation values that each match the grammar, with the keys the engine must deny:
    (annotations without the prefix, keys denied while parsing, keys denied while building)."""
    names = [c["name"] for c in pod["spec"]["containers"]]
    own: dict[str, str] = {}
    parse_denied: set[str] = set()
    build_denied: set[str] = set()

    logging = draw(st.sampled_from([None, "true", "false", "tail", "fluent-bit"]))
    if logging is not None:
        own["logging"] = logging
    if draw(st.booleans()):
        paths = draw(st.lists(st.one_of(st.sampled_from(MOUNT_PATHS), clean_dir), min_size=1, max_size=3, unique=True))
        own["logging-paths"] = ",".join(paths)
        if any(b.startswith(a + "/") for a in paths for b in paths) or any(map(is_system_directory, paths)):
            parse_denied.add("logging-paths")
    if draw(st.booleans()):
        own["logging-container"] = draw(st.sampled_from([*names, "ghost"]))
    route_list: list[tuple[int, str]] = draw(routes(pod_ports(pod))) if draw(st.booleans()) else []
    start: int | None = None
    if route_list:
        own["ambassador"] = ",".join(item for _, item in route_list)
        # The pod's own net.ipv4.ip_unprivileged_port_start: a local port below it and below 1024 is denied.
        start = draw(st.one_of(st.none(), st.integers(0, 1100)))
        if start is not None:
            pod["spec"]["securityContext"] = {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": str(start)}]}
        if len({item for _, item in route_list}) != len(route_list):
            parse_denied.add("ambassador")
    if draw(st.booleans()):
        own["wait-for"] = ",".join(draw(wait_targets()))
    if draw(st.booleans()):
        own["wait-for-timeout"] = draw(st.sampled_from(["0", "90s", "5m", "1h", "1h30m", "2m30s"]))
    adapters = draw(
        st.sampled_from([[], ["nginx-prometheus"], ["statsd-prometheus"], ["nginx-prometheus", "statsd-prometheus"], ["false"]])
    )
    if adapters:
        own["adapter"] = ",".join(adapters)
    adapters = [a for a in adapters if a != "false"]
    if draw(st.booleans()):
        own["native-sidecars"] = draw(st.sampled_from(["true", "false"]))
    overrides = draw(st.lists(st.sampled_from(sorted(ANNOTATION_KINDS.values())), max_size=3))
    for kind in overrides:
        suffix = draw(st.sampled_from(sorted(RESOURCE_FIELDS)))
        own[f"{kind}-{suffix}"] = draw(st.sampled_from(CPU if "cpu" in suffix else MEMORY))

    # What the engine must refuse once every value parsed: the rules, computed here.
    logging_profile = {"true": SETTINGS.defaults.logging, "false": None, None: None}.get(logging, logging)
    used = {
        "logging": [logging_profile] if logging_profile else [],
        "ambassador": [SETTINGS.defaults.ambassador] if route_list else [],
        "adapter": adapters,
        "wait-for": [SETTINGS.defaults.wait_for] if "wait-for" in own else [],
    }
    if any(used.values()):
        ports = set(pod_ports(pod))
        for local, _ in route_list:  # claimed in this order: routes, then adapters
            if local in ports or (local < 1024 and (start is None or start > local)):
                build_denied.add("ambassador")
            ports.add(local)
        for name in adapters:
            for port in ADAPTER_PORTS[name]:
                if port in ports:
                    build_denied.add("adapter")
                ports.add(port)
        if logging_profile and own.get("logging-container", names[0]) not in names:
            build_denied.add("logging-container")
        elif logging_profile and shares_a_config_map(pod, own):
            build_denied.add("logging-paths")
        for kind, profiles in used.items():
            config_kind = next(k for k, v in ANNOTATION_KINDS.items() if v == kind)
            for profile_name in profiles:
                profile = SETTINGS.profile(config_kind, profile_name)
                assert profile is not None
                for resource in ("cpu", "memory"):
                    request = own.get(f"{kind}-{resource}-request", profile.resources["requests"][resource])
                    limit = own.get(f"{kind}-{resource}-limit", profile.resources["limits"][resource])
                    if parse_quantity(request) > parse_quantity(limit):
                        build_denied.add(f"{kind}-{resource}-request")
    return own, parse_denied, build_denied


def shares_a_config_map(pod: Mapping[str, Any], own: Mapping[str, str]) -> bool:
    """Whether the logging target mounts a configMap at a logging path (never shared)."""
    containers = pod["spec"]["containers"]
    names = [c["name"] for c in containers]
    default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    target = containers[names.index(own.get("logging-container") or (default if default in names else names[0]))]
    paths = own["logging-paths"].split(",") if "logging-paths" in own else list(SETTINGS.defaults.logging_paths)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    return any(m["mountPath"] in paths and "configMap" in volumes[m["name"]] for m in target.get("volumeMounts") or [])


# ---------------------------------------------------------------------------------------------
# The invariants of every answer


def denied_keys(denial: PodDenied) -> set[str]:
    """The key each message names (``entourage.dev/<key>: ...``)."""
    keys = set()
    for message in denial.problems:
        assert message.startswith(PREFIX + "/"), message
        keys.add(message[len(PREFIX) + 1 :].split(": ", 1)[0])
    return keys


def profile_of(name: str) -> list[Any]:
    """The profiles an injected container of this name may come from."""
    kind = next(
        k
        for prefix, k in (
            ("entourage-wait-", "waitFor"),
            ("entourage-ambassador-", "ambassador"),
            ("entourage-logging", "logging"),
            ("entourage-adapter-", "adapter"),
        )
        if name.startswith(prefix)
    )
    return list(SETTINGS.profiles[kind].values())


def injected_containers(injection: Injection) -> list[Mapping[str, Any]]:
    spec = injection.pod["spec"]
    names = set(injection.components)
    return [c for c in [*(spec.get("initContainers") or []), *spec["containers"]] if c["name"] in names]


def unsafe_arguments(injection: Injection) -> list[str]:
    """Every rendered argument (args, probe and hook commands, env values) that is not a safe token,
    except a profile's literal arguments (no placeholder: nothing of the pod's is in them)."""
    bad = []
    for container in injected_containers(injection):
        rendered = list(container.get("args") or [])
        rendered += (container.get("startupProbe") or {}).get("exec", {}).get("command", [])
        rendered += ((container.get("lifecycle") or {}).get("postStart") or {}).get("exec", {}).get("command", [])
        rendered += [env.get("value", "") for env in container.get("env") or []]
        rendered += [m["mountPath"] for m in container.get("volumeMounts") or []]
        bad += [arg for arg in rendered if arg not in LITERAL_ARGUMENTS and (not arg.isascii() or not SAFE_TOKEN.fullmatch(arg))]
    return bad


def _answer_by_field(review: Mapping[str, Any]) -> dict[str, Any]:
    """The response, its patch decoded and grouped by the field it adds to (the order between
    fields follows the pod's key order, which the pruned decode normalises; within one field it
    is kept)."""
    response = dict(review["response"])
    if "patch" in response:
        response["patch"] = by_field(orjson.loads(base64.b64decode(response["patch"])))
    return response


def assert_the_pruned_decode_answers_the_same(
    pod: Mapping[str, Any], settings_: Settings, namespace_annotations: dict[str, str] | None
) -> None:
    """The server decodes only what admission reads (webhook/admission/partial.py); the answer must not change."""
    request = {
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
        "namespace": "shop",
        "object": pod,
    }
    body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    lookup = (lambda namespace: namespace_annotations) if namespace_annotations else None
    full = admit(decode(body), settings_, namespace_annotations=lookup)
    fast = admit(decode(body, loads=partial.loads), settings_, namespace_annotations=lookup)
    assert (fast.outcome, fast.reason, fast.components, fast.owner) == (full.outcome, full.reason, full.components, full.owner)
    assert _answer_by_field(fast.review) == _answer_by_field(full.review)
    # As the server answers: through the answer cache, shared by every example (a key that
    # confused two different pods would hand one of them the other's answer).
    kept = ANSWERS.admit(decode(body, loads=partial.loads), settings_, namespace_annotations=lookup)
    assert kept.review == fast.review
    again = ANSWERS.admit(
        decode(body.replace(b'"uid":"u-1"', b'"uid":"u-2"', 1), loads=partial.loads), settings_, namespace_annotations=lookup
    )
    assert again.review == {**fast.review, "response": {**fast.review["response"], "uid": "u-2"}}


def check_injection(pod: dict[str, Any], settings_: Settings, namespace_annotations: dict[str, str] | None) -> Injection:
    """inject_pod, then every invariant; returns the injection (re-raises PodDenied)."""
    assert_the_pruned_decode_answers_the_same(pod, settings_, namespace_annotations)
    original = copy.deepcopy(pod)
    injection = inject_pod(pod, settings_, namespace_annotations=namespace_annotations)
    assert pod == original, "the input pod was mutated"
    assert jsonpatch.apply_patch(copy.deepcopy(original), injection.patch) == injection.pod
    assert injection.patch == diff(original, injection.pod), "the written patch differs from the diff"
    assert orjson.loads(base64.b64decode(encode(injection.patch), validate=True)) == injection.patch
    for operation in injection.patch:
        assert operation["op"] == "add", operation
        assert operation["path"].startswith(("/spec/", "/metadata/annotations")), operation["path"]
    if injection.reason != INJECTED:
        assert injection.patch == []
        return injection

    assert_valid_injected_pod(copy.deepcopy(injection.pod), injection.components)
    assert unsafe_arguments(injection) == []
    spec, old_spec = injection.pod["spec"], original["spec"]
    for container in injected_containers(injection):
        assert container["name"].startswith("entourage-") and len(container["name"]) <= 63
        candidates = [p for p in profile_of(container["name"]) if p.command == tuple(container["command"])]
        assert candidates and container["image"] in {p.image for p in candidates}, container["name"]
        for section in ("requests", "limits"):
            for amount in container["resources"][section].values():
                assert QUANTITY.fullmatch(amount), (container["name"], amount)
    # The user's containers keep their order and change only by added logging mounts.
    users = [c for c in spec["containers"] if c["name"] not in injection.components]
    assert [c["name"] for c in users] == [c["name"] for c in old_spec["containers"]]
    for before, after in zip(old_spec["containers"], users, strict=True):
        extra = after.get("volumeMounts", [])[len(before.get("volumeMounts", [])) :]
        assert after == {**before, **({"volumeMounts": [*before.get("volumeMounts", []), *extra]} if extra else {})}
        assert all(m["name"] in injection.status["volumes"] for m in extra)
    # wait-for first, then native ambassadors, then the user's init containers unchanged, then the
    # other native sidecars.
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    user_init = [c["name"] for c in old_spec.get("initContainers") or []]
    ours = set(injection.components)
    waits = [n for n in init_names if n.startswith("entourage-wait-") and n in ours]
    ambassadors = [n for n in init_names if n.startswith("entourage-ambassador-") and n in ours]
    before = len(waits) + len(ambassadors)
    assert init_names[:before] == waits + ambassadors
    assert init_names[before : before + len(user_init)] == user_init
    assert spec.get("initContainers", [])[before : before + len(user_init)] == old_spec.get("initContainers", [])

    again = inject_pod(injection.pod, settings_, namespace_annotations=namespace_annotations)
    assert again.reason == ALREADY_INJECTED and again.patch == []
    return injection


# ---------------------------------------------------------------------------------------------
# 1. Random valid pods × random valid annotations


@st.composite
def annotated_pods(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str] | None, set[str], set[str]]:
    """(pod, namespace annotations or None, keys denied while parsing, keys denied while building)."""
    pod = draw(pods())
    own, parse_denied, build_denied = draw(valid_annotations(pod))
    ours = {f"{PREFIX}/{key}": value for key, value in own.items()}
    if draw(st.booleans()) or not ours:
        if ours:
            pod["metadata"].setdefault("annotations", {}).update(ours)
        return pod, None, parse_denied, build_denied
    # Inherited from the namespace: the pod may have no annotations map at all.
    return pod, ours, parse_denied, build_denied


def run_valid_property(case: tuple[dict[str, Any], dict[str, str] | None, set[str], set[str]], settings_: Settings) -> None:
    pod, namespace, parse_denied, build_denied = case
    expected = parse_denied or build_denied
    note(f"expected denial of: {sorted(expected)}")
    try:
        injection = check_injection(pod, settings_, namespace)
    except PodDenied as denial:
        note(f"denied: {denial.problems}")
        event(f"denied: {sorted(denied_keys(denial))}")
        assert expected, f"denied for no predicted reason: {denial.problems}"
        assert denied_keys(denial) == expected
        return
    event(injection.reason)
    assert not expected, f"expected a denial of {sorted(expected)}, got {injection.reason}"
    assert injection.reason in (INJECTED, NO_ANNOTATION, NOTHING_REQUESTED)


@PROPERTY
@given(annotated_pods())
def test_a_valid_pod_with_valid_annotations_is_injected_validly_or_denied_for_a_predicted_reason(
    case: tuple[dict[str, Any], dict[str, str] | None, set[str], set[str]],
) -> None:
    run_valid_property(case, SETTINGS)


@PROPERTY
@given(annotated_pods())
def test_the_same_holds_with_native_sidecars_on_by_configuration(
    case: tuple[dict[str, Any], dict[str, str] | None, set[str], set[str]],
) -> None:
    run_valid_property(case, NATIVE)


# ---------------------------------------------------------------------------------------------
# 2. Random annotation strings

NASTY = ";|&$`()<>'\"\\\n\t\r \x00：аеоꓽ⁄／１٣%{}*?!#~,=[]:/."
LOOK_ALIKES = {":": "：", "a": "а", "e": "е", "o": "о", "/": "／", "1": "１", ".": "。", "-": "‐"}
PARAM_KEYS = sorted(
    f"{ANNOTATION_KINDS[kind]}.{name}.{param}"
    for kind, profiles in SETTINGS.profiles.items()
    for name, profile in profiles.items()
    for param in profile.params
)
FUZZED_KEYS = sorted(set(KEYS) - {"status"}) + PARAM_KEYS
VALID_EXAMPLES: dict[str, list[str]] = {
    "logging": ["true", "tail", "fluent-bit"],
    "logging-paths": ["/var/log/app", "/var/log/app,/data/audit"],
    "logging-container": ["app"],
    "ambassador": ["6379=redis.cache:6379", "tls://api.example.com:443", "7000=[2001:db8::1]:7000"],
    "wait-for": [
        "tcp://db:5432,dns://my-db-service",
        "http://api:8080/healthz",
        "https://[::1]:8443/ready?x=1",
        "db:5432",
        "dns://fd00::1",
    ],
    "wait-for-timeout": ["5m", "90s", "1h30m"],
    "adapter": ["nginx-prometheus", "statsd-prometheus"],
    "native-sidecars": ["true", "false"],
    "logging.fluent-bit.host": ["fluentd.logging"],
    "logging.fluent-bit.port": ["24224"],
    "ambassador.socat.ca-file": ["/etc/ssl/ca.pem"],
    "adapter.nginx-prometheus.status-path": ["/stub_status"],
}


def example_for(key: str) -> list[str]:
    if key in VALID_EXAMPLES:
        return VALID_EXAMPLES[key]
    if key in KEYS and KEYS[key].example:
        return [KEYS[key].example]
    return ["8080"]


@st.composite
def mutated(draw: st.DrawFn, key: str) -> str:
    """A valid value with something slipped in: the inputs most likely to get through."""
    value = draw(st.sampled_from(example_for(key)))
    fragment = draw(
        st.one_of(
            st.sampled_from(["\n", ";rm -rf /", "$(reboot)", "`id`", "'", '"', " ", "&&", "|", "\\", "<x", ">x", ")", "\u00a0", "\u200b"]),
            st.text(alphabet=NASTY, min_size=1, max_size=4),
        )
    )
    how = draw(st.sampled_from(["append", "prepend", "insert", "look-alike", "list", "zone"]))
    if how == "zone":  # an IPv6 zone id: fe80::1%eth0 is an address to Python's ipaddress
        if "]" in value:
            return value.replace("]", "%" + fragment + "]", 1)
        if value.startswith("dns://") and ":" in value[6:]:
            return value + "%" + fragment
    if how == "append":
        return value + fragment
    if how == "prepend":
        return fragment + value
    if how == "insert":
        at = draw(st.integers(0, len(value)))
        return value[:at] + fragment + value[at:]
    if how == "look-alike":
        spots = [i for i, ch in enumerate(value) if ch in LOOK_ALIKES]
        if not spots:
            return value + "："
        at = draw(st.sampled_from(spots))
        return value[:at] + LOOK_ALIKES[value[at]] + value[at + 1 :]
    return ",".join([value, fragment + value])


def random_value(key: str) -> st.SearchStrategy[str]:
    nasty = st.one_of(
        mutated(key),
        st.text(alphabet=NASTY + "abcdefz0123456789-", max_size=40),
        st.text(max_size=20),
        st.integers(4000, 5000).map(lambda n: "a" * n),
        st.integers(1, 3000).map(lambda n: "," * n),
        st.integers(1, 40).map(lambda n: ",".join(f"db{i}:5432" for i in range(n))),
        st.integers(9, 12).map(lambda n: "/" + "/".join("d" * 30 for _ in range(n))),
        st.text(alphabet="0123456789.eEmkMGi+-", min_size=1, max_size=14),
    )
    # Half valid, so that pods do get injected and their arguments are checked too (a plain
    # one_of would flatten the branches and make valid values one in nine).
    return st.booleans().flatmap(lambda valid: st.sampled_from(example_for(key)) if valid else nasty)


unknown_key = st.one_of(
    st.sampled_from(["loging", "ambasador", "wait-fr", "adapters", "logging.tail.x", "adapter.nope.port", "INJECT", ""]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-./：а", min_size=1, max_size=24),
).filter(lambda key: key not in KEYS and key not in PARAM_KEYS)


@st.composite
def random_annotations(draw: st.DrawFn) -> dict[str, str]:
    """1-4 of our keys (or unknown ones) with random strings, often next to a valid request."""
    own: dict[str, str] = {}
    any_key = st.integers(0, 3).flatmap(lambda n: unknown_key if n == 0 else st.sampled_from(FUZZED_KEYS))
    for key in draw(st.lists(any_key, min_size=1, max_size=3, unique=True)):
        own[key] = draw(random_value(key))
    baseline = draw(
        st.sampled_from(
            [
                {},
                {"logging": "true"},
                {"wait-for": "db:5432"},
                {"ambassador": "6379=redis:6379", "logging": "fluent-bit"},
                {"adapter": "nginx-prometheus", "native-sidecars": "true"},
            ]
        )
    )
    return {**baseline, **own}


REFERENCE_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "app-0", "annotations": {"prometheus.io/scrape": "true"}},
    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0", "ports": [{"containerPort": 8080}]}]},
}


@settings(max_examples=1000, deadline=None)
@given(random_annotations(), st.booleans())
@example({"wait-for": "db;rm -rf /:5432"}, False)
@example({"wait-for": "$(reboot):80"}, False)
@example({"ambassador": "6379=redis`id`:6379"}, False)
@example({"logging": "true", "logging-paths": "/var/log/app /etc"}, False)
@example({"wait-for": "http://api：8080/healthz"}, False)  # fullwidth colon
@example({"wait-for": "dns://dаtabase"}, False)  # Cyrillic а
@example({"logging": "true", "logging-cpu-limit": "1e3"}, True)
@example({"loging": "true"}, False)
def test_random_annotation_strings_give_a_denial_naming_the_key_or_a_valid_pod_with_safe_arguments(
    own: dict[str, str], native: bool
) -> None:
    check_random_annotations(own, native)


HOST_AND_PATH_KEYS = [
    "wait-for",
    "ambassador",
    "logging-paths",
    "logging.fluent-bit.host",
    "ambassador.socat.ca-file",
    "adapter.nginx-prometheus.status-path",
]
RESOURCE_KEYS = sorted(k for k in KEYS if k.endswith(tuple(RESOURCE_FIELDS)))
quantity_like = st.from_regex(r"\+?[0-9]{1,3}(\.[0-9]{0,2})?([kKMGTPE]i|[mkKMGTPE]|[eE][+-]?[0-9]{1,9})?", fullmatch=True)


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.sampled_from(HOST_AND_PATH_KEYS).flatmap(lambda key: st.tuples(st.just(key), mutated(key))),
        st.tuples(st.sampled_from(RESOURCE_KEYS), quantity_like),
    ),
    st.booleans(),
)
def test_a_valid_value_with_something_slipped_in_is_denied_or_stays_safe(case: tuple[str, str], native: bool) -> None:
    key, value = case
    baseline = {"logging": "fluent-bit"} if key.startswith("logging") else {"wait-for": "db:5432"} if key.startswith("wait") else {}
    if key.startswith("adapter"):
        baseline = {"adapter": "nginx-prometheus"}
    if key.startswith("ambassador") and key != "ambassador":
        baseline = {"ambassador": "6379=redis:6379"}
    check_random_annotations({**baseline, key: value}, native)


def check_random_annotations(own: dict[str, str], native: bool) -> None:
    """A denial whose every message names a key, or an injection passing check_injection."""
    pod = copy.deepcopy(REFERENCE_POD)
    pod["metadata"]["annotations"].update({f"{PREFIX}/{key}": value for key, value in own.items()})
    try:
        injection = check_injection(pod, NATIVE if native else SETTINGS, None)
    except PodDenied as denial:
        note(f"denied: {denial.problems}")
        event("denied")
        assert denial.problems
        for message in denial.problems:
            assert any(message.startswith(f"{PREFIX}/{key}") for key in [*own, *KEYS]), message
        return
    event(injection.reason)
    assert injection.reason in (INJECTED, DISABLED, NOTHING_REQUESTED, ALREADY_INJECTED)


# ---------------------------------------------------------------------------------------------
# 3. Every problem is reported, once

INVALID: dict[str, list[str]] = {
    "inject": ["maybe", "yes"],
    "logging": ["nonsense", "True", "tail;rm"],
    "logging-paths": ["var/log", "/var/../x", "/a b"],
    "logging-container": ["App", "a_b", "-app"],
    "ambassador": ["redis", "db;rm -rf /:1", "99999=db:1", "http://db:80"],
    "wait-for": ["$(reboot)", "ftp://x:1", "db:0", "http://user@db/"],
    "wait-for-timeout": ["5x", "-1s", "forever"],
    "adapter": ["nope", "nginx"],
    "native-sidecars": ["yes", "1"],
    "logging-cpu-limit": ["lots", "0", "-1", "3"],
    "wait-for-memory-request": ["lots", "0", "3Gi"],
    "ambassador-cpu-request": ["1 cpu", "0"],
    "adapter.nginx-prometheus.port": ["0", "http"],
    "logging.fluent-bit.host": ["a b", "$(x)"],
    "loging": ["true"],
    "wait-fr": ["db:1"],
    "bogus": ["1"],
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(INVALID)), min_size=1, max_size=len(INVALID), unique=True).flatmap(
        lambda keys: st.tuples(*(st.tuples(st.just(k), st.sampled_from(INVALID[k])) for k in keys))
    )
)
def test_a_pod_with_n_independent_invalid_keys_gets_n_messages_one_per_key(pairs: tuple[tuple[str, str], ...]) -> None:
    pod = copy.deepcopy(REFERENCE_POD)
    pod["metadata"]["annotations"].update({f"{PREFIX}/{key}": value for key, value in pairs})
    with pytest.raises(PodDenied) as denied:
        inject_pod(pod, SETTINGS)
    assert len(denied.value.problems) == len(pairs), denied.value.problems
    for key, value in pairs:
        named = [m for m in denied.value.problems if m.startswith(f"{PREFIX}/{key}: ")]
        assert len(named) == 1, (key, denied.value.problems)
        assert repr(value) in named[0], "the message shows the value"


# ---------------------------------------------------------------------------------------------
# 4. Typos of known keys


def typos(key: str) -> set[str]:
    deletions = {key[:i] + key[i + 1 :] for i in range(len(key))}
    transpositions = {key[:i] + key[i + 1] + key[i] + key[i + 2 :] for i in range(len(key) - 1)}
    return {t for t in deletions | transpositions if t and t not in KEYS and t not in PARAM_KEYS}


SUGGESTION = re.compile(rf"did you mean {re.escape(PREFIX)}/(?P<key>\S+)\?$")


def suggestion_for(typo: str) -> str:
    pod = copy.deepcopy(REFERENCE_POD)
    pod["metadata"]["annotations"][f"{PREFIX}/{typo}"] = "x"
    with pytest.raises(PodDenied) as denied:
        inject_pod(pod, SETTINGS)
    [message] = denied.value.problems
    assert message.startswith(f"{PREFIX}/{typo}: "), message
    match = SUGGESTION.search(message)
    assert match, f"no suggestion for {typo!r}: {message}"
    return match["key"]


@pytest.mark.parametrize("key", sorted(KEYS))
def test_a_one_character_typo_of_a_known_key_is_denied_with_a_suggestion_of_a_known_key(key: str) -> None:
    suggestions = {typo: suggestion_for(typo) for typo in sorted(typos(key))}
    assert all(s in KEYS or s in PARAM_KEYS for s in suggestions.values()), suggestions
    wrong = {typo: s for typo, s in suggestions.items() if s != key}
    # An ambiguous typo may point at another key; today none of the 816 does, allow a few.
    assert len(wrong) <= len(suggestions) // 4, wrong


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(KEYS)).flatmap(lambda key: st.tuples(st.just(key), st.sampled_from(sorted(typos(key))))))
def test_a_random_typo_suggests_the_intended_key_or_one_at_least_as_close(case: tuple[str, str]) -> None:
    key, typo = case
    suggested = suggestion_for(typo)
    assert suggested in KEYS or suggested in PARAM_KEYS
    if suggested != key:  # an ambiguous typo: the other key must be no farther from it
        assert difflib.SequenceMatcher(None, typo, suggested).ratio() >= difflib.SequenceMatcher(None, typo, key).ratio()


# ---------------------------------------------------------------------------------------------
# Bugs the properties above found, kept as regression tests


def _inject(own: dict[str, str]) -> Injection:
    pod = copy.deepcopy(REFERENCE_POD)
    pod["metadata"]["annotations"].update({f"{PREFIX}/{key}": value for key, value in own.items()})
    return inject_pod(pod, SETTINGS)


def _denied_naming(own: dict[str, str], key: str) -> None:
    try:
        injection = _inject(own)
    except PodDenied as denial:
        assert all(m.startswith(f"{PREFIX}/{key}") for m in denial.problems), denial.problems
        return
    pytest.fail(
        f"injected, unsafe arguments or resources reached the pod: {unsafe_arguments(injection)} "
        f"{[c.get('resources') for c in injected_containers(injection)]}"
    )


@pytest.mark.parametrize(
    ("key", "own"),
    [
        ("wait-for", {"wait-for": "db\n:5432"}),
        ("wait-for", {"wait-for": "tcp://db:5432,dns://my-db-service\n"}),  # as the property shrank it
        ("wait-for", {"wait-for": "dns://db\n"}),
        ("wait-for", {"wait-for": "http://db/healthz\n"}),
        ("logging-paths", {"logging": "true", "logging-paths": "/var/log/app\n"}),
        ("ambassador", {"ambassador": "6379=redis\n:6379"}),
        ("logging-cpu-limit", {"logging": "true", "logging-cpu-limit": "50m\n"}),
        ("logging.fluent-bit.host", {"logging": "fluent-bit", "logging.fluent-bit.host": "fluentd\n"}),
    ],
)
def test_a_value_ending_in_a_newline_is_denied(key: str, own: dict[str, str]) -> None:
    _denied_naming(own, key)


@pytest.mark.parametrize(
    ("key", "own"),
    [
        ("wait-for", {"wait-for": "[fe80::1%$(reboot)]:80"}),
        ("wait-for", {"wait-for": "https://[::1%\n]:8443/ready?x=1"}),  # as the property shrank it
        ("wait-for", {"wait-for": "dns://fe80::1%`id`"}),
        ("wait-for", {"wait-for": "http://[fe80::1%;reboot]:80/"}),
        ("ambassador", {"ambassador": "tls://[fe80::1%a b]:443"}),
    ],
)
def test_an_ipv6_zone_id_never_reaches_a_command(key: str, own: dict[str, str]) -> None:
    _denied_naming(own, key)


@pytest.mark.parametrize("value", ["0E1000000", "1e999999999"])
def test_a_quantity_with_a_huge_exponent_is_denied_not_crashed(value: str) -> None:
    with pytest.raises(PodDenied) as denied:
        _inject({"logging": "true", "logging-cpu-limit": value})
    assert denied.value.problems[0].startswith(f"{PREFIX}/logging-cpu-limit: ")


@pytest.mark.parametrize("target", ["http://[::1]/healthz", "https://[2001:db8::1]"])
def test_an_http_target_on_an_ipv6_host_without_a_port_is_accepted(target: str) -> None:
    injection = check_injection(
        {**copy.deepcopy(REFERENCE_POD), "metadata": {"name": "p", "annotations": {f"{PREFIX}/wait-for": target}}}, SETTINGS, None
    )
    assert injection.reason == INJECTED


@pytest.mark.parametrize(("value", "accepted"), [("131072Ki", True), ("1ki", False)])
def test_binary_quantities_follow_the_apiservers_suffixes(value: str, accepted: bool) -> None:
    own = {"logging": "true", "logging-memory-limit": value}
    if accepted:
        assert _inject(own).reason == INJECTED
    else:
        _denied_naming(own, "logging-memory-limit")


def test_the_quantity_grammar_of_the_tests_agrees_with_the_engine_on_valid_values() -> None:
    for amount in [*CPU, *MEMORY, "1e3", ".5", "+1"]:
        assert QUANTITY.fullmatch(amount) and parse_quantity(amount) >= Decimal(0)
