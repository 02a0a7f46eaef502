"""Settings and the profile catalog: what Entourage may inject, loaded from built-ins and a YAML file.

The configuration file (``--config``) has the same shape as ``BUILTIN_PROFILES`` under
``profiles``: a profile named like a built-in one is merged over it (so an air-gapped cluster can
point ``image`` at its own registry), a new name adds a profile. ``imageRegistry`` moves every
profile's image to a mirror at once (``rehome``), and ``imagePullSecrets`` names the Secrets every
injected image needs (a profile may add its own). Everything is validated at load
time so that a broken file is refused as a whole and the previous configuration stays in force.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from webhook.engine import grammar, policy
from webhook.engine.policy import Policy
from webhook.engine.quantity import parse_quantity
from webhook.errors import ConfigError

KINDS = ("logging", "ambassador", "adapter", "waitFor")
"""Profile kinds, as spelled in the configuration file."""

ANNOTATION_KINDS = {"logging": "logging", "ambassador": "ambassador", "adapter": "adapter", "waitFor": "wait-for"}
"""How each kind is spelled in annotation keys (``wait-for-cpu-limit``)."""

BUILTIN_PLACEHOLDERS: Mapping[str, frozenset[str]] = {
    "logging": frozenset({"paths", "path-globs", "path-map"}),
    "ambassador": frozenset({"local-port", "upstream-host", "upstream-port", "upstream"}),
    "adapter": frozenset(),
    "waitFor": frozenset({"kind", "target", "timeout-seconds", "ca-file"}),
}
"""Placeholders the engine fills in per kind; profile parameters add their own names."""

LIST_PLACEHOLDERS = frozenset({"paths", "path-map"})
"""Placeholders that expand into one argument per directory: each must be a whole ``args`` item."""

PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9-]*)\}")

RESTRICTED_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""Every injected container starts from this: Pod Security Standards ``restricted`` and then some."""

_SECURITY_OVERRIDES = frozenset({"runAsUser", "runAsGroup", "readOnlyRootFilesystem", "seccompProfile", "capabilities"})
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")
"""A registry host, an optional port and an optional path (``registry.corp.example:5000/mirror``)."""
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
"""A DNS subdomain (RFC 1123): how Kubernetes names Secrets and ConfigMaps."""
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
"""A key of a ConfigMap's or Secret's data."""
_PINNED_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})$")


def _parse_param_value(kind: str, choices: tuple[str, ...], text: str) -> str:
    """Validate a profile parameter value by its declared type; return it as it is substituted."""
    if kind == "port":
        return str(grammar.parse_port(text))
    if kind == "host":
        return grammar.parse_host(text)
    if kind == "path":
        return grammar.parse_url_path(text)
    if kind == "name":
        return grammar.parse_dns_label(text)
    if kind == "duration":
        return str(grammar.parse_duration(text))
    if kind == "int":
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise ValueError("expected a non-negative whole number")
        return str(int(text))
    if kind == "enum":
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text
    raise ValueError(f"unknown parameter type {kind!r}")  # pragma: no cover - checked at load


PARAM_TYPES = ("port", "host", "path", "name", "duration", "int", "enum")


@dataclass(frozen=True)
class Param:
    """A value a pod may set by annotation (``entourage.dev/adapter.PROFILE.PARAM``)."""

    name: str
    type: str
    """One of PARAM_TYPES: the grammar the value must match."""
    default: str
    """Used when the pod does not set it; validated like a pod's value."""
    description: str = ""
    values: tuple[str, ...] = ()
    """The allowed values of an ``enum`` parameter."""

    def parse(self, text: str) -> str:
        return _parse_param_value(self.type, self.values, text)


@dataclass(frozen=True)
class CaBundle:
    """A CA bundle from a ConfigMap or Secret of the pod's own namespace, mounted read-only.

    Named in the configuration only: a pod annotation can neither choose it nor point it at
    another namespace or a host path. ``kube-root-ca.crt`` (key ``ca.crt``), which Kubernetes
    puts in every namespace, holds the cluster's own CA.
    """

    source: str
    """``configMap`` or ``secret``."""
    name: str
    key: str = "ca.crt"

    def volume(self, name: str, path: str) -> dict[str, Any]:
        """The pod volume holding just this key, as the file ``path``; read-only to everyone."""
        items = [{"key": self.key, "path": path}]
        if self.source == "secret":
            return {"name": name, "secret": {"secretName": self.name, "items": items, "defaultMode": 0o444}}
        return {"name": name, "configMap": {"name": self.name, "items": items, "defaultMode": 0o444}}


@dataclass(frozen=True)
class ProfileVolume:
    """A ConfigMap or Secret of the pod's own namespace, mounted read-only in the companion: its
    configuration or credentials, the platform way.

    The object's name is fixed in the profile or comes from a parameter of type ``name`` (a DNS
    label a pod may set): a pod can choose which object of its own namespace, never another
    namespace's (configMap and secret volumes have none) nor a host path."""

    name: str
    """Part of the pod volume's name, unique in the profile."""
    source: str
    """``configMap`` or ``secret``."""
    ref: str
    """The object's name, or ``{param}``."""
    mount_path: str
    optional: bool = False

    def object_name(self, values: Mapping[str, str]) -> str:
        return render_text(self.ref, values)

    def volume(self, name: str, object_name: str) -> dict[str, Any]:
        if self.source == "secret":
            # 0444: the companion runs as a non-root UID that owns nothing in the volume, and only
            # its own container mounts it.
            return {"name": name, "secret": {"secretName": object_name, "defaultMode": 0o444, "optional": self.optional}}
        return {"name": name, "configMap": {"name": object_name, "defaultMode": 0o444, "optional": self.optional}}


@dataclass(frozen=True, eq=False)
class Profile:
    """One injectable container: image, command, resources; chosen by name, never built by a pod.

    Compared and hashed by identity (``eq=False``): each load makes new profiles, and the engine
    memoises work per profile object.
    """

    kind: str
    name: str
    image: str
    """A pinned tag or digest: never ``latest``, so a pod gets what was reviewed."""
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    tls_args: tuple[str, ...] = ()
    """Ambassadors only: the arguments for a ``tls://`` upstream (TLS origination with verification)."""
    ready_command: tuple[str, ...] = ()
    """Ambassadors only: exits 0 once 127.0.0.1:{local-port} accepts (retrying for a few seconds);
    run as the startupProbe (native) or postStart hook (classic) so the app starts after it."""
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, str], ...] = ()
    """(name, containerPort template) pairs the container listens on, checked for collisions."""
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    security_context: Mapping[str, Any] = field(default_factory=lambda: dict(RESTRICTED_SECURITY_CONTEXT))
    params: Mapping[str, Param] = field(default_factory=dict)
    description: str = ""
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets (of the pod's namespace) the image needs: added to the pod's imagePullSecrets."""
    ca_bundle: CaBundle | None = None
    """Wait-for only: the CA bundle that verifies https targets instead of the image's roots."""
    volumes: tuple[ProfileVolume, ...] = ()
    """ConfigMaps and Secrets of the pod's namespace mounted read-only in the container."""

    def values(self, params: Mapping[str, str]) -> dict[str, str]:
        """Every declared parameter's value: the pod's (validated) annotation over the default."""
        return {**{name: param.default for name, param in self.params.items()}, **params}


@dataclass(frozen=True)
class Defaults:
    """What a pod gets when its annotations do not say."""

    logging: str = "tail"
    """Profile for ``logging: "true"``."""
    ambassador: str = "socat"
    """Profile for every ambassador route."""
    wait_for: str = "curl"
    """Profile that runs the wait-for script (``busybox`` cannot wait for https targets)."""
    wait_for_timeout: int = 300
    """Seconds a wait-for container waits before failing (``wait-for-timeout``; 0 = forever)."""
    logging_paths: tuple[str, ...] = ("/var/log/app",)
    """Directories shipped when ``logging-paths`` is absent."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one pod may ask for; values beyond them are denied, not clamped."""

    max_ambassador_routes: int = 8
    max_wait_for_targets: int = 8
    max_logging_paths: int = 8
    max_adapters: int = 4
    max_annotation_keys: int = 64
    """Keys under the prefix on one pod (its namespace's included); more are denied before any
    key is parsed: each unknown key costs a spelling suggestion, and 20,000 of them held the
    event loop for 20 s. The fixed keys and a few profile parameters stay far below 64."""
    max_containers: int = 128
    """Per list (containers, initContainers, ephemeralContainers): real pods have a handful."""
    max_volumes: int = 512
    """Volumes per pod: a pod mounting hundreds of ConfigMaps is rare but real."""
    max_volume_mounts: int = 512
    """Volume mounts per container (at most one per volume, plus subPaths)."""
    max_ports: int = 256
    """Ports per container (Kubernetes has no limit; hundreds are already unusual)."""
    max_cpu: Decimal = Decimal(2)
    """Largest CPU request or limit an annotation may set for one injected container (cores)."""
    max_memory: Decimal = Decimal(2 * 2**30)
    """Largest memory request or limit an annotation may set for one injected container (bytes)."""
    max_cpu_text: str = "2"
    max_memory_text: str = "2Gi"


LIST_LIMITS: dict[str, tuple[str, str]] = {
    "containers": ("max_containers", "maxContainers"),
    "initContainers": ("max_containers", "maxContainers"),
    "ephemeralContainers": ("max_containers", "maxContainers"),
    "volumes": ("max_volumes", "maxVolumes"),
    "volumeMounts": ("max_volume_mounts", "maxVolumeMounts"),
    "ports": ("max_ports", "maxPorts"),
}
"""Each list of a pod that admission sizes (in the spec or in a container): the Limits attribute
that caps it and its key in the configuration file. The engine denies a longer list
(``inject._check_lists``); the server's decoder reads no further (``admission/partial.py``)."""


@dataclass(frozen=True, eq=False)
class Settings:
    """Everything the pure injection needs besides the pod itself (hashed by identity, like Profile)."""

    annotation_prefix: str = "entourage.dev"
    """Annotation keys are ``<prefix>/<key>``; a DNS subdomain."""
    native_sidecars: str = "auto"
    """``true``, ``false`` or ``auto`` (native only when the cluster is known to support it)."""
    on_error: str = "deny"
    """What an unexpected engine failure answers: ``deny`` (with a message) or ``allow`` unchanged."""
    run_as_user: str = "auto"
    """``auto``: in a namespace that assigns UIDs (OpenShift's ``openshift.io/sa.scc.uid-range``
    annotation), injected containers carry no runAsUser/runAsGroup, which the platform rejects
    outside the namespace's range, and keep runAsNonRoot; elsewhere the profile's. ``profile``:
    always the profile's."""
    validation: str = "deny"
    """What ``POST /validate`` does with invalid annotations on workloads and Namespaces and with
    changes to injected containers: ``deny`` (a workload UPDATE that leaves our annotations as
    they were is only warned about, so an unrelated edit of an old workload is never blocked),
    ``warn`` (admit with warnings) or ``off`` (admit without looking)."""
    defaults: Defaults = field(default_factory=Defaults)
    limits: Limits = field(default_factory=Limits)
    profiles: Mapping[str, Mapping[str, Profile]] = field(default_factory=dict)
    image_registry: str | None = None
    """Where every profile's image is pulled from instead of its own registry (``rehome``)."""
    policies: tuple[Policy, ...] = ()
    """Who may use what, by namespace labels (webhook/engine/policy.py)."""

    def profile(self, kind: str, name: str) -> Profile | None:
        return self.profiles.get(kind, {}).get(name)


# ---------------------------------------------------------------------------------------------
# Loading


def _suggest(word: str, known: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(where: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(str(key), known)}; known keys: {', '.join(known)}")


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _quantity(where: str, value: Any) -> Decimal:
    try:
        return parse_quantity(str(value))
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _resources(where: str, value: Any) -> dict[str, dict[str, str]]:
    data = _mapping(where, value)
    _check_keys(where, data, ("requests", "limits"))
    resources: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        amounts = _mapping(f"{where}.{section}", data.get(section))
        _check_keys(f"{where}.{section}", amounts, ("cpu", "memory", "ephemeral-storage"))
        for resource in ("cpu", "memory"):
            if resource not in amounts:
                raise ConfigError(f"{where}.{section}.{resource}: required (injected containers carry requests and limits)")
        for resource, amount in amounts.items():
            _quantity(f"{where}.{section}.{resource}", amount)
        resources[section] = {resource: str(amount) for resource, amount in amounts.items()}
    for resource, request in resources["requests"].items():
        limit = resources["limits"].get(resource)
        if limit is not None and parse_quantity(request) > parse_quantity(limit):
            raise ConfigError(f"{where}: requests.{resource} {request} is above limits.{resource} {limit}")
    return resources


def _security_context(where: str, value: Any) -> dict[str, Any]:
    """Overrides on top of RESTRICTED_SECURITY_CONTEXT; nothing may weaken ``restricted``."""
    data = _mapping(where, value)
    for key in data:
        if key not in _SECURITY_OVERRIDES:
            raise ConfigError(
                f"{where}: {key!r} cannot be set (injected containers stay Pod Security 'restricted'); "
                f"settable: {', '.join(sorted(_SECURITY_OVERRIDES))}"
            )
    merged: dict[str, Any] = dict(RESTRICTED_SECURITY_CONTEXT.items())
    for key in ("runAsUser", "runAsGroup"):
        if key in data:
            if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] <= 0:
                raise ConfigError(f"{where}.{key}: expected a non-zero user or group id, got {data[key]!r}")
            merged[key] = data[key]
    if "readOnlyRootFilesystem" in data:
        if not isinstance(data["readOnlyRootFilesystem"], bool):
            raise ConfigError(f"{where}.readOnlyRootFilesystem: expected true or false")
        merged["readOnlyRootFilesystem"] = data["readOnlyRootFilesystem"]
    if "seccompProfile" in data:
        seccomp = _mapping(f"{where}.seccompProfile", data["seccompProfile"])
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            raise ConfigError(f"{where}.seccompProfile.type: expected RuntimeDefault or Localhost")
        merged["seccompProfile"] = dict(seccomp)
    if "capabilities" in data:
        capabilities = _mapping(f"{where}.capabilities", data["capabilities"])
        _check_keys(f"{where}.capabilities", capabilities, ("add",))
        added = _strings(f"{where}.capabilities.add", capabilities.get("add"))
        if set(added) - {"NET_BIND_SERVICE"}:
            raise ConfigError(f"{where}.capabilities.add: only NET_BIND_SERVICE is allowed under 'restricted', got {list(added)}")
        merged["capabilities"] = {"drop": ["ALL"], **({"add": list(added)} if added else {})}
    return merged


def _params(where: str, value: Any) -> dict[str, Param]:
    params: dict[str, Param] = {}
    for name, spec in _mapping(where, value).items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not grammar.DNS_LABEL.fullmatch(name):
            raise ConfigError(f"{here}: a parameter name is a DNS label (lower-case letters, digits, '-')")
        spec = _mapping(here, spec)
        _check_keys(here, spec, ("type", "default", "description", "values"))
        kind = spec.get("type")
        if kind not in PARAM_TYPES:
            raise ConfigError(f"{here}.type: expected one of {', '.join(PARAM_TYPES)}, got {kind!r}")
        choices = _strings(f"{here}.values", spec.get("values"))
        if kind == "enum" and not choices:
            raise ConfigError(f"{here}.values: an enum parameter lists its allowed values")
        if "default" not in spec:
            raise ConfigError(f"{here}.default: required (a pod may leave the parameter unset)")
        param = Param(name=name, type=kind, default=str(spec["default"]), description=str(spec.get("description", "")), values=choices)
        try:
            param.parse(param.default)
        except ValueError as error:
            raise ConfigError(f"{here}.default: {param.default!r}: {error}") from None
        params[name] = param
    return params


_PROFILE_KEYS = (
    "description",
    "image",
    "imagePullPolicy",
    "imagePullSecrets",
    "command",
    "args",
    "tlsArgs",
    "readyCommand",
    "env",
    "ports",
    "resources",
    "securityContext",
    "params",
    "caBundle",
    "volumes",
)


def _profile(kind: str, name: str, data: Mapping[str, Any]) -> Profile:
    where = f"profiles.{kind}.{name}"
    if not grammar.DNS_LABEL.fullmatch(name) or len(name) > 40:
        raise ConfigError(f"{where}: a profile name is a DNS label of at most 40 characters")
    _check_keys(where, data, _PROFILE_KEYS)
    image = data.get("image")
    if not isinstance(image, str) or not _PINNED_IMAGE.fullmatch(image) or image.endswith(":latest"):
        raise ConfigError(f"{where}.image: expected an image with a pinned tag or digest (not 'latest'), got {image!r}")
    command = _strings(f"{where}.command", data.get("command"))
    if not command:
        raise ConfigError(f"{where}.command: required (the image's entrypoint is not assumed)")
    _absolute_program(f"{where}.command[0]", command[0])
    pull_policy = data.get("imagePullPolicy", "IfNotPresent")
    if pull_policy not in ("IfNotPresent", "Always", "Never"):
        raise ConfigError(f"{where}.imagePullPolicy: expected IfNotPresent, Always or Never, got {pull_policy!r}")
    env: list[tuple[str, str]] = []
    for index, item in enumerate(data.get("env") or []):
        item = _mapping(f"{where}.env[{index}]", item)
        _check_keys(f"{where}.env[{index}]", item, ("name", "value"))
        if not isinstance(item.get("name"), str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item["name"]):
            raise ConfigError(f"{where}.env[{index}].name: expected an environment variable name")
        env.append((item["name"], str(item.get("value", ""))))
    ports: list[tuple[str, str]] = []
    for index, item in enumerate(data.get("ports") or []):
        item = _mapping(f"{where}.ports[{index}]", item)
        _check_keys(f"{where}.ports[{index}]", item, ("name", "containerPort"))
        port_name = item.get("name")
        if not isinstance(port_name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?", port_name):
            raise ConfigError(f"{where}.ports[{index}].name: expected an IANA service name (at most 15 characters)")
        ports.append((port_name, str(item.get("containerPort"))))
    params = _params(f"{where}.params", data.get("params"))
    profile = Profile(
        kind=kind,
        name=name,
        image=image,
        command=command,
        args=_strings(f"{where}.args", data.get("args")),
        tls_args=_strings(f"{where}.tlsArgs", data.get("tlsArgs")),
        ready_command=_strings(f"{where}.readyCommand", data.get("readyCommand")),
        env=tuple(env),
        ports=tuple(ports),
        resources=_resources(f"{where}.resources", data.get("resources")),
        security_context=_security_context(f"{where}.securityContext", data.get("securityContext")),
        params=params,
        description=str(data.get("description", "")),
        image_pull_policy=pull_policy,
        image_pull_secrets=_secret_names(f"{where}.imagePullSecrets", data.get("imagePullSecrets")),
        ca_bundle=_ca_bundle(f"{where}.caBundle", data.get("caBundle")) if "caBundle" in data else None,
        volumes=_volumes(f"{where}.volumes", data.get("volumes"), params),
    )
    if kind != "waitFor" and profile.ca_bundle is not None:
        raise ConfigError(f"{where}.caBundle: only wait-for profiles have a CA bundle (ambassadors take a ca-file parameter)")
    if kind == "ambassador" and not profile.tls_args:
        raise ConfigError(f"{where}.tlsArgs: required for an ambassador (arguments for tls:// upstreams)")
    if kind == "ambassador" and not profile.ready_command:
        raise ConfigError(f"{where}.readyCommand: required for an ambassador (the app starts once it passes)")
    if kind != "ambassador" and (profile.tls_args or profile.ready_command):
        raise ConfigError(f"{where}: only ambassadors have tlsArgs and readyCommand")
    if kind != "adapter" and profile.ports:
        raise ConfigError(f"{where}.ports: only adapters declare ports")
    if profile.ready_command:
        _absolute_program(f"{where}.readyCommand[0]", profile.ready_command[0])
    _check_placeholders(where, profile)
    return profile


def _secret_names(where: str, value: Any) -> tuple[str, ...]:
    """Names of Secrets in the pod's namespace, each once, in order."""
    names = _strings(where, value)
    for name in names:
        if len(name) > 253 or not _OBJECT_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {name!r}: expected a Secret name (a DNS subdomain: lower-case letters, digits, '-' and '.')")
    return tuple(dict.fromkeys(names))


_RESERVED_MOUNTS = ("/var/run/entourage", "/etc/entourage", "/proc", "/sys", "/dev")
"""Paths the engine mounts its own volumes under, or the runtime owns."""


def _volumes(where: str, value: Any, params: Mapping[str, Param]) -> tuple[ProfileVolume, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of volumes")
    volumes: list[ProfileVolume] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        data = _mapping(here, item)
        _check_keys(here, data, ("name", "configMap", "secret", "mountPath", "optional"))
        name = data.get("name")
        if not isinstance(name, str) or not grammar.DNS_LABEL.fullmatch(name) or len(name) > 20:
            raise ConfigError(f"{here}.name: expected a DNS label of at most 20 characters, got {name!r}")
        sources = [source for source in ("configMap", "secret") if source in data]
        if len(sources) != 1:
            raise ConfigError(f"{here}: expected exactly one of configMap or secret (an object of the pod's namespace), got {sorted(data)}")
        source, ref = sources[0], data[sources[0]]
        bound = PLACEHOLDER.fullmatch(ref) if isinstance(ref, str) else None
        if bound:
            param = params.get(bound[1])
            if param is None or param.type != "name":
                raise ConfigError(
                    f"{here}.{source}: {ref!r}: a placeholder here names a parameter of type name (a DNS label a pod may set)"
                )
        elif not isinstance(ref, str) or len(ref) > 253 or not _OBJECT_NAME.fullmatch(ref):
            raise ConfigError(f"{here}.{source}: {ref!r}: expected the name of a {source} in the pod's namespace, or {{param}}")
        path = data.get("mountPath")
        if not isinstance(path, str) or not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", path) or "/../" in path + "/" or "/./" in path + "/":
            raise ConfigError(f"{here}.mountPath: expected an absolute, normalised path, got {path!r}")
        if any(path == reserved or path.startswith(reserved + "/") for reserved in _RESERVED_MOUNTS):
            raise ConfigError(f"{here}.mountPath: {path}: {', '.join(_RESERVED_MOUNTS)} are reserved")
        optional = data.get("optional", False)
        if not isinstance(optional, bool):
            raise ConfigError(f"{here}.optional: expected true or false")
        for other in volumes:
            if other.name == name:
                raise ConfigError(f"{here}.name: {name!r} is used twice")
            if path == other.mount_path or path.startswith(other.mount_path + "/") or other.mount_path.startswith(path + "/"):
                raise ConfigError(f"{here}.mountPath: {path} overlaps {other.mount_path}")
        volumes.append(ProfileVolume(name=name, source=source, ref=ref, mount_path=path, optional=optional))
    return tuple(volumes)


def _ca_bundle(where: str, value: Any) -> CaBundle:
    data = _mapping(where, value)
    _check_keys(where, data, ("configMap", "secret", "key"))
    sources = [source for source in ("configMap", "secret") if source in data]
    if len(sources) != 1:
        raise ConfigError(
            f"{where}: expected exactly one of configMap or secret (the name of one in the pod's namespace), got {sorted(data)}"
        )
    source = sources[0]
    name, key = data[source], data.get("key", "ca.crt")
    if not isinstance(name, str) or len(name) > 253 or not _OBJECT_NAME.fullmatch(name):
        raise ConfigError(f"{where}.{source}: {name!r}: expected the name of a {source} in the pod's namespace (a DNS subdomain)")
    if not isinstance(key, str) or len(key) > 253 or not _DATA_KEY.fullmatch(key):
        raise ConfigError(f"{where}.key: {key!r}: expected a data key such as ca.crt (letters, digits, '-', '_', '.')")
    return CaBundle(source=source, name=name, key=key)


def rehome(image: str, registry: str) -> str:
    """``image`` pulled from ``registry``: its own registry host replaced, its path kept.

    An image without a registry host is Docker Hub's, whose single-name images live under
    ``library/`` (``busybox:1.36.1`` → ``REGISTRY/library/busybox:1.36.1``), as Harbor proxy
    caches and ``crane copy`` mirrors lay them out. An image already under ``registry`` is kept.
    """
    if image.startswith(registry + "/"):
        return image
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        path = rest
    else:
        path = image if rest else f"library/{image}"
    return f"{registry}/{path}"


def _absolute_program(where: str, program: str) -> None:
    """A bare name would be looked up in the container's PATH: the program must be the image's own."""
    if not program.startswith("/"):
        raise ConfigError(
            f"{where}: {program!r}: expected an absolute path such as /bin/sh (a bare name is looked up in the container's PATH)"
        )


def _check_placeholders(where: str, profile: Profile) -> None:
    """Every placeholder is filled the same way for every pod, so anything that would fail to
    render or give an invalid container is refused here, once, rather than for each pod."""
    builtin = BUILTIN_PLACEHOLDERS[profile.kind]
    for name in profile.params:
        if name in builtin:
            raise ConfigError(f"{where}.params.{name}: the name of the engine's placeholder {{{name}}}; choose another")
    known = builtin | set(profile.params)
    # `command` is literal (it may hold a script with braces); placeholders live in the rest.
    fields = {
        "args": profile.args,
        "tlsArgs": profile.tls_args,
        "readyCommand": profile.ready_command,
        "env": [value for _, value in profile.env],
        "ports": [port for _, port in profile.ports],
    }
    for field_name, templates in fields.items():
        for index, template in enumerate(templates):
            here = f"{where}.{field_name}[{index}]"
            for placeholder in PLACEHOLDER.findall(template):
                if placeholder not in known:
                    raise ConfigError(
                        f"{here}: unknown placeholder {{{placeholder}}}{_suggest(placeholder, known)}; "
                        f"known here: {', '.join('{' + k + '}' for k in sorted(known)) or 'none (declare params)'}"
                    )
                if placeholder in LIST_PLACEHOLDERS and (field_name != "args" or template != f"{{{placeholder}}}"):
                    raise ConfigError(
                        f"{here}: {template!r}: {{{placeholder}}} expands into one argument per directory, "
                        "so it must be a whole item of args"
                    )
    for index, (port_name, template) in enumerate(profile.ports):
        here = f"{where}.ports[{index}].containerPort"
        bound = PLACEHOLDER.fullmatch(template)
        param = profile.params.get(bound[1]) if bound else None
        if bound and (param is None or param.type != "port"):
            kind = f"of type {param.type}" if param else "an engine placeholder"
            raise ConfigError(f"{here}: {template!r} ({port_name}) is bound to {{{bound[1]}}}, {kind}; expected a parameter of type port")
        if not bound:
            try:
                grammar.parse_port(template)
            except ValueError:
                raise ConfigError(f"{here}: {template!r} ({port_name}): expected a port number or a {{parameter}} of type port") from None


def render_text(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{name}`` placeholders (values are validated tokens; no other expansion)."""
    return PLACEHOLDER.sub(lambda match: values[match[1]], template)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A config profile named like a built-in replaces the keys it sets; params merge by name."""
    merged = dict(base)
    for key, value in override.items():
        if key == "params" and isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def _defaults(data: Mapping[str, Any]) -> Defaults:
    _check_keys("defaults", data, ("logging", "ambassador", "waitFor", "waitForTimeout", "loggingPaths"))
    base = Defaults()
    try:
        timeout = grammar.parse_duration(str(data["waitForTimeout"])) if "waitForTimeout" in data else base.wait_for_timeout
    except ValueError as error:
        raise ConfigError(f"defaults.waitForTimeout: {data['waitForTimeout']!r}: {error}") from None
    paths = []
    for path in _strings("defaults.loggingPaths", data.get("loggingPaths")) or base.logging_paths:
        try:
            paths.append(grammar.parse_log_directory(path))
        except ValueError as error:
            raise ConfigError(f"defaults.loggingPaths: {path!r}: {error}") from None
    if len(set(paths)) != len(paths) or any(b.startswith(a + "/") for a in paths for b in paths):
        raise ConfigError(f"defaults.loggingPaths: {paths}: each directory once, none inside another")
    return Defaults(
        logging=str(data.get("logging", base.logging)),
        ambassador=str(data.get("ambassador", base.ambassador)),
        wait_for=str(data.get("waitFor", base.wait_for)),
        wait_for_timeout=timeout,
        logging_paths=tuple(paths),
    )


def _limits(data: Mapping[str, Any]) -> Limits:
    counts = ("maxAmbassadorRoutes", "maxWaitForTargets", "maxLoggingPaths", "maxAdapters")
    sizes = ("maxAnnotationKeys", "maxContainers", "maxVolumes", "maxVolumeMounts", "maxPorts")
    _check_keys("limits", data, (*counts, *sizes, "maxCpu", "maxMemory"))
    for key in (*counts, *sizes):
        top = 64 if key in counts else 4096
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or not 1 <= data[key] <= top):
            raise ConfigError(f"limits.{key}: expected a whole number from 1 to {top}, got {data[key]!r}")
    base = Limits()
    max_cpu = str(data.get("maxCpu", base.max_cpu_text))
    max_memory = str(data.get("maxMemory", base.max_memory_text))
    return Limits(
        max_ambassador_routes=data.get("maxAmbassadorRoutes", base.max_ambassador_routes),
        max_wait_for_targets=data.get("maxWaitForTargets", base.max_wait_for_targets),
        max_logging_paths=data.get("maxLoggingPaths", base.max_logging_paths),
        max_adapters=data.get("maxAdapters", base.max_adapters),
        max_annotation_keys=data.get("maxAnnotationKeys", base.max_annotation_keys),
        max_containers=data.get("maxContainers", base.max_containers),
        max_volumes=data.get("maxVolumes", base.max_volumes),
        max_volume_mounts=data.get("maxVolumeMounts", base.max_volume_mounts),
        max_ports=data.get("maxPorts", base.max_ports),
        max_cpu=_quantity("limits.maxCpu", max_cpu),
        max_memory=_quantity("limits.maxMemory", max_memory),
        max_cpu_text=max_cpu,
        max_memory_text=max_memory,
    )


def build_settings(data: Mapping[str, Any] | None) -> Settings:
    """Validate a parsed configuration document and merge it over the built-in catalog."""
    from webhook.engine.profiles.catalog import BUILTIN_PROFILES

    data = _mapping("configuration", data)
    _check_keys(
        "configuration",
        data,
        (
            "annotationPrefix",
            "nativeSidecars",
            "onError",
            "validation",
            "runAsUser",
            "imageRegistry",
            "imagePullSecrets",
            "defaults",
            "limits",
            "profiles",
            "policies",
        ),
    )
    prefix = data.get("annotationPrefix", "entourage.dev")
    if not isinstance(prefix, str) or not all(grammar.DNS_LABEL.fullmatch(part) for part in prefix.split(".")) or len(prefix) > 200:
        raise ConfigError(f"annotationPrefix: expected a DNS subdomain such as entourage.dev, got {prefix!r}")
    native = str(data.get("nativeSidecars", "auto")).lower()
    if native not in ("auto", "true", "false"):
        raise ConfigError(f"nativeSidecars: expected auto, true or false, got {data.get('nativeSidecars')!r}")
    on_error = data.get("onError", "deny")
    if on_error not in ("deny", "allow"):
        raise ConfigError(f"onError: expected deny or allow, got {on_error!r}")
    run_as_user = data.get("runAsUser", "auto")
    if run_as_user not in ("auto", "profile"):
        raise ConfigError(f"runAsUser: expected auto or profile, got {run_as_user!r}")
    validation = data.get("validation", "deny")
    validation = "off" if validation is False else validation  # YAML 1.1: an unquoted off is false
    if validation not in ("deny", "warn", "off"):
        raise ConfigError(f"validation: expected deny, warn or off, got {validation!r}")

    raw_profiles = _mapping("profiles", data.get("profiles"))
    _check_keys("profiles", raw_profiles, KINDS)
    profiles: dict[str, dict[str, Profile]] = {}
    for kind in KINDS:
        declared = dict(BUILTIN_PROFILES.get(kind, {}))
        for name, spec in _mapping(f"profiles.{kind}", raw_profiles.get(kind)).items():
            spec = _mapping(f"profiles.{kind}.{name}", spec)
            declared[str(name)] = _merge(declared[name], spec) if name in declared else dict(spec)
        profiles[kind] = {name: _profile(kind, name, spec) for name, spec in declared.items()}
    registry = _image_registry(data.get("imageRegistry"))
    pull_secrets = _secret_names("imagePullSecrets", data.get("imagePullSecrets"))
    if registry is not None or pull_secrets:
        for by_name in profiles.values():
            for name, profile in by_name.items():
                by_name[name] = _relocated(profile, registry, pull_secrets)

    settings = Settings(
        annotation_prefix=prefix,
        native_sidecars=native,
        on_error=on_error,
        run_as_user=run_as_user,
        validation=validation,
        defaults=_defaults(_mapping("defaults", data.get("defaults"))),
        limits=_limits(_mapping("limits", data.get("limits"))),
        profiles=profiles,
        image_registry=registry,
        policies=policy.load("policies", data.get("policies"), {kind: tuple(declared) for kind, declared in profiles.items()}),
    )
    for kind, name in (
        ("logging", settings.defaults.logging),
        ("ambassador", settings.defaults.ambassador),
        ("waitFor", settings.defaults.wait_for),
    ):
        if settings.profile(kind, name) is None:
            raise ConfigError(f"defaults.{kind}: no {kind} profile named {name!r}{_suggest(name, tuple(profiles[kind]))}")
    return settings


def _image_registry(value: Any) -> str | None:
    if value is None or value == "":
        return None  # the chart's default: each image's own registry
    if not isinstance(value, str) or len(value) > 200 or not _REGISTRY.fullmatch(value.rstrip("/")):
        raise ConfigError(
            f"imageRegistry: {value!r}: expected a registry host with an optional port and path, such as registry.corp.example/mirror"
        )
    return value.rstrip("/")


def _relocated(profile: Profile, registry: str | None, pull_secrets: tuple[str, ...]) -> Profile:
    """The profile with its image moved to ``registry`` and the global pull secrets before its own."""
    image = rehome(profile.image, registry) if registry is not None else profile.image
    if not _PINNED_IMAGE.fullmatch(image):
        raise ConfigError(
            f"imageRegistry: profiles.{profile.kind}.{profile.name}.image {profile.image!r} becomes {image!r}, not a valid image"
        )
    secrets = tuple(dict.fromkeys((*pull_secrets, *profile.image_pull_secrets)))
    return dataclasses.replace(profile, image=image, image_pull_secrets=secrets)


def parse_settings(text: str, *, source: str = "configuration") -> Settings:
    """Parse YAML text into Settings; the error names the source."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None
    try:
        return build_settings(data)
    except ConfigError as problem:
        raise ConfigError(f"{source}: {problem}") from None


def load_settings(path: str | None = None, *, environ: Mapping[str, str] = os.environ) -> Settings:
    """Built-ins merged with the file at ``path`` (or ``$ENTOURAGE_CONFIG``); no file → built-ins."""
    path = path or environ.get("ENTOURAGE_CONFIG") or None
    if path is None:
        return build_settings({})
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration file: {error.strerror}") from None
    return parse_settings(text, source=path)
