"""The pure injection core: pod + annotations + settings in, injected pod + JSONPatch out. No I/O.

``inject_pod`` serves both ``POST /mutate`` and ``entourage inject``. It never mutates its input:
the result shares every untouched subtree with the original pod and copies only the paths it adds
to, which keeps it fast on large pods. It writes its patch from what it added; the tests hold
that patch equal to ``patch.diff`` of the two pods, which proves that it only adds. The injected
containers are shared between pods (``profiles.common.shared``): results are read-only.

The server hands it pods decoded by ``webhook/admission/partial.py``, which keeps only the fields
read here: ``tests/test_partial_reads.py`` admits every golden pod with a pod that records each
read and fails when one falls outside what the decoder keeps.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.engine import caches, patch, policy, status
from webhook.engine.annotations import INJECT, STATUS, json_type, own_annotations, parse_annotations
from webhook.engine.profiles import adapter, ambassador, logging, waitfor
from webhook.engine.profiles.common import NameAllocator, merge_resources, shared, slug
from webhook.engine.request import InjectionRequest, Route, WaitTarget
from webhook.engine.settings import ANNOTATION_KINDS, LIST_LIMITS, Limits, Profile, Settings
from webhook.engine.status import Component
from webhook.errors import PodDenied

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
UID_RANGE = "openshift.io/sa.scc.uid-range"
"""Set by OpenShift on every namespace: pods get a UID from this range, and a fixed one outside it
is rejected by the restricted SCC."""

# Why a pod came back unchanged; used by logs, metrics labels and tests.
INJECTED = "injected"
NO_ANNOTATION = "no_annotation"
ALREADY_INJECTED = "already_injected"
DISABLED = "disabled"
NOTHING_REQUESTED = "nothing_requested"


@dataclass(frozen=True)
class ClusterFacts:
    """What the serving layer knows about the cluster; the engine never asks for it itself."""

    native_sidecars: bool | None = None
    """True when the apiserver and every kubelet are >= 1.29; None while unknown."""


@dataclass(frozen=True)
class Injection:
    """The outcome for one pod: ``reason`` is INJECTED or why nothing was done."""

    reason: str
    pod: Mapping[str, Any]
    patch: list[dict[str, Any]] = field(default_factory=list)
    status: Mapping[str, list[str]] = field(default_factory=dict)
    """What was injected, by section (also written to the status annotation)."""
    made: tuple[Component, ...] = ()
    """Each injected container's kind, profile, profile version, image and fingerprint, in
    ``components``' order: the status annotation records them, metrics count by them."""
    warnings: tuple[str, ...] = ()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The config kind (``waitFor``, ``ambassador``, ``logging``, ``adapter``) of each injected container."""
        return tuple(component.kind for component in self.made)

    @property
    def components(self) -> list[str]:
        """Injected container names, for logs, metrics and audit annotations."""
        return [*self.status.get("initContainers", ()), *self.status.get("containers", ())]


def requested_annotations(pod: Mapping[str, Any], settings: Settings, namespace_annotations: Mapping[str, str] | None) -> dict[str, Any]:
    """Our annotations on the pod over those of its namespace (the pod wins); empty → fast path."""
    metadata = pod.get("metadata")
    # `type(...) is dict` first: decoded JSON is all dicts, and the Mapping ABC check is a Python call.
    annotations = metadata.get("annotations") if type(metadata) is dict or isinstance(metadata, Mapping) else None
    own = own_annotations(annotations, settings.annotation_prefix) if type(annotations) is dict or isinstance(annotations, Mapping) else {}
    if namespace_annotations:
        inherited = own_annotations(namespace_annotations, settings.annotation_prefix)
        inherited.pop(STATUS, None)
        if inherited:
            return {**inherited, **own}
    return own


def skip_reason(own: Mapping[str, Any]) -> str | None:
    """Why a pod with these of our annotations (``requested_annotations``) gets nothing, or None
    when they ask for something: the one definition of "injected" and "asks for injection"."""
    if not own:
        return NO_ANNOTATION
    if STATUS in own:
        return ALREADY_INJECTED
    if own.get(INJECT) == "false":
        return DISABLED
    return None


def inject_pod(
    pod: Mapping[str, Any],
    settings: Settings,
    *,
    namespace_annotations: Mapping[str, str] | None = None,
    cluster: ClusterFacts = ClusterFacts(),
) -> Injection:
    """Inject what the pod's annotations ask for, or say why not; raises PodDenied for bad input."""
    _check_annotations_shape(pod)
    own = requested_annotations(pod, settings, namespace_annotations)
    skipped = skip_reason(own)
    if skipped in (NO_ANNOTATION, ALREADY_INJECTED):
        return Injection(skipped, pod)
    governing = policy.applying(settings.policies, namespace_annotations) if settings.policies else []
    if governing:
        _check_enforced(pod, settings, namespace_annotations, governing)
    if skipped is not None:
        return Injection(skipped, pod)
    request = parse_annotations(own, settings)
    if not request.wants_anything:
        return Injection(NOTHING_REQUESTED, pod, warnings=request.warnings)
    if governing:
        _check_allowed(request, settings, governing)
    assigned_uid = settings.run_as_user == "auto" and UID_RANGE in (namespace_annotations or {})
    return _Builder(pod, request, settings, cluster, assigned_uid=assigned_uid).build()


def _check_enforced(
    pod: Mapping[str, Any], settings: Settings, namespace: Mapping[str, str] | None, governing: list[policy.Policy]
) -> None:
    """A pod may not override (or opt out of) what a policy enforces from its namespace."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    problems = policy.enforced_problems(
        governing,
        own_annotations(annotations, settings.annotation_prefix),
        own_annotations(namespace or {}, settings.annotation_prefix),
        settings.annotation_prefix,
    )
    if problems:
        raise PodDenied(problems)


def _check_allowed(request: InjectionRequest, settings: Settings, governing: list[policy.Policy]) -> None:
    """Every profile, upstream and wait-for target the request uses is one the policies allow."""
    chosen = {
        "logging": [request.logging] if request.logging else [],
        "ambassador": [settings.defaults.ambassador] if request.routes else [],
        "waitFor": [settings.defaults.wait_for] if request.wait_for else [],
        "adapter": list(request.adapters),
    }
    problems = policy.request_problems(governing, request, chosen, settings.annotation_prefix)
    if problems:
        raise PodDenied(problems)


def _check_annotations_shape(pod: Mapping[str, Any]) -> None:
    """``metadata.annotations`` is absent, null or a map of strings to strings; anything else used
    to be read as "no annotations" and admitted unchanged."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if type(metadata) is dict or isinstance(metadata, Mapping) else None
    if annotations is None:
        return
    if type(annotations) is not dict and not isinstance(annotations, Mapping):
        raise PodDenied([f"metadata.annotations: expected a map of strings to strings, got {json_type(annotations)}"])
    if set(map(type, annotations.values())) <= {str}:
        return  # the usual case, checked in C (2 ms for 40,000 values where the loop took 13 ms)
    for key, value in annotations.items():
        if type(value) is not str:
            shown = key if len(key) <= 80 else key[:77] + "..."
            raise PodDenied([f"metadata.annotations[{shown!r}]: expected a string value, got {json_type(value)}"])


_GROWN = frozenset({"containers", "initContainers", "volumes", "imagePullSecrets"})
"""The spec lists injection adds to; every other spec field is passed through as it is."""

Overrides = tuple[tuple[tuple[str, str], str], ...]
"""Resource overrides from annotations: ((section, resource), quantity) pairs."""


class _Builder:
    """Plans the containers and volumes for one pod, collecting every problem before denying."""

    def __init__(
        self, pod: Mapping[str, Any], request: InjectionRequest, settings: Settings, cluster: ClusterFacts, *, assigned_uid: bool = False
    ) -> None:
        self.pod, self.request, self.settings = pod, request, settings
        self.assigned_uid = assigned_uid
        """The namespace assigns UIDs (OpenShift): injected containers name none."""
        self.prefix = settings.annotation_prefix
        self.problems: list[str] = []
        self.warnings: list[str] = list(request.warnings)
        spec = pod.get("spec")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("containers"), list) or not spec["containers"]:
            raise PodDenied(["spec.containers: a pod needs at least one container with a name"])
        _check_lists(spec, settings.limits)
        self.spec = spec
        self.containers: list[dict[str, Any]] = list(spec["containers"])
        self.init_containers: list[Mapping[str, Any]] = list(spec.get("initContainers") or [])
        self.volumes: list[Mapping[str, Any]] = list(spec.get("volumes") or [])
        self.names = NameAllocator(c["name"] for c in [*self.containers, *self.init_containers, *(spec.get("ephemeralContainers") or [])])
        self.volume_names = NameAllocator(v["name"] for v in self.volumes)
        if request.native_sidecars is not None:
            self.native = request.native_sidecars
        elif settings.native_sidecars == "auto":
            self.native = cluster.native_sidecars is True
        else:
            self.native = settings.native_sidecars == "true"
        self.ports = self._ports_in_use()
        self.logging_target: int | None = None
        """Index of the user container that build() gave new log volume mounts."""
        self.profile_of: dict[str, Profile] = {}
        """Injected container name → the profile it was rendered from."""
        self.used: list[Profile] = []
        """Each profile a container was built from, in order: their imagePullSecrets go to the pod."""
        self.ca_volume: str | None = None
        """The wait-for CA bundle's volume, added once for all https targets."""
        self.object_volumes: dict[tuple[str, str], str] = {}
        """(configMap or secret, object name) → the pod volume a profile's volumes mount it from."""

    # -- planning ----------------------------------------------------------------------------

    def build(self) -> Injection:
        waits = [self._wait_for(target) for target in self.request.wait_for]
        ambassadors = [self._ambassador(route) for route in self.request.routes]
        agent = self._logging() if self.request.logging else None
        adapters = [self._adapter(name) for name in self.request.adapters]
        if self.problems:
            raise PodDenied(self.problems)
        if ambassadors and self.spec.get("hostNetwork") is True:
            ports = ", ".join(str(route.local_port) for route in self.request.routes)
            self.warnings.append(f"hostNetwork pod: ambassador ports {ports} are bound on the node's loopback")

        sidecars = [*ambassadors, *([agent] if agent else []), *adapters]
        new_volumes = self.volumes[len(self.spec.get("volumes") or []) :]
        early = ambassadors if self.native and self.request.ambassadors_first else []
        if self.native:
            # Wait-for containers need no proxy; the pod's own init containers (a migration) may.
            init_containers = [*waits, *early, *self.init_containers, *sidecars[len(early) :]]
            containers = self.containers
        else:
            init_containers = [*waits, *self.init_containers]
            # Ambassadors first: their postStart hook holds the app until the port listens.
            containers = [*ambassadors, *self.containers, *([agent] if agent else []), *adapters]
            self._warn_about_classic_sidecars(sidecars)

        sections = {
            "initContainers": [c["name"] for c in waits] + ([c["name"] for c in sidecars] if self.native else []),
            "containers": [] if self.native else [c["name"] for c in sidecars],
            "volumes": [v["name"] for v in new_volumes],
        }
        spec = dict(self.spec)
        pull_secrets = self._pull_secrets()
        if pull_secrets:
            spec["imagePullSecrets"] = [*(self.spec.get("imagePullSecrets") or []), *({"name": name} for name in pull_secrets)]
            sections["imagePullSecrets"] = pull_secrets
        spec["containers"] = containers
        if len(init_containers) != len(self.init_containers):
            spec["initContainers"] = init_containers
        if new_volumes:
            spec["volumes"] = self.volumes
        metadata = dict(self.pod.get("metadata") or {})
        annotations = dict(metadata.get("annotations") or {})
        added: dict[str, str] = {}
        if sections["containers"] and DEFAULT_CONTAINER not in annotations:
            added[DEFAULT_CONTAINER] = self.spec["containers"][0]["name"]
        made = tuple(self._component(container) for container in [*waits, *sidecars])
        added[f"{self.prefix}/{STATUS}"] = status.encode(sections, made)
        annotations.update(added)
        metadata["annotations"] = annotations
        desired = {**self.pod, "metadata": metadata, "spec": spec}
        leading = {"containers": 0 if self.native else len(ambassadors), "initContainers": len(waits) + len(early)}
        return Injection(INJECTED, desired, self._operations(desired, added, leading), sections, made, tuple(self.warnings))

    def _component(self, container: Mapping[str, Any]) -> Component:
        return status.component(container, self.profile_of[container["name"]])

    def _operations(self, desired: Mapping[str, Any], added: Mapping[str, str], leading: Mapping[str, int]) -> list[patch.Operation]:
        """The JSONPatch, written from what build() added (``leading``: elements put before the
        user's in each list) rather than found by diffing the whole pod, which cost a fifth of an
        injection. The tests hold it equal to ``patch.diff(pod, desired)``, which proves it only adds."""
        operations: list[patch.Operation] = []
        for key in desired:
            if key == "metadata":
                metadata = self.pod.get("metadata")
                if metadata is None or patch.absent(metadata, "/metadata"):
                    operations.append(patch.add("/metadata", desired["metadata"]))
                elif patch.absent(metadata.get("annotations"), "/metadata/annotations"):
                    operations.append(patch.add("/metadata/annotations", desired["metadata"]["annotations"]))
                else:
                    operations += (patch.add(f"/metadata/annotations/{patch.escape(name)}", value) for name, value in added.items())
            elif key == "spec":
                for field_name, value in desired["spec"].items():
                    if field_name not in _GROWN:
                        continue  # shared with the user's pod, untouched (and not read: see partial.py)
                    old = self.spec.get(field_name)
                    if value is old:
                        continue
                    path = f"/spec/{field_name}"
                    if field_name == "containers" and self.logging_target is not None:
                        index = self.logging_target
                        before, after = self.spec["containers"][index], self.containers[index]
                        operations += patch.list_additions(
                            f"{path}/{index}/volumeMounts", before.get("volumeMounts"), after["volumeMounts"]
                        )
                    operations += patch.list_additions(path, old, value, leading.get(field_name, 0))
        return operations

    def _profile(self, kind: str, name: str) -> Profile:
        profile = self.settings.profile(kind, name)
        assert profile is not None, f"{kind} profile {name} was validated by parse_annotations or the config"
        self.used.append(profile)
        return profile

    def _claim(self, base: str, profile: Profile) -> str:
        """A free container name for a component rendered from ``profile``."""
        name = self.names.claim(base)
        self.profile_of[name] = profile
        return name

    def _pull_secrets(self) -> list[str]:
        """The used profiles' imagePullSecrets the pod does not list yet, each once; the pod's own
        are kept as they are."""
        wanted = dict.fromkeys(name for profile in self.used for name in profile.image_pull_secrets)
        if not wanted:
            return []
        own = self.spec.get("imagePullSecrets")
        if own is not None and not _object_list(own):
            raise PodDenied(["spec.imagePullSecrets: expected a list of objects with names"])
        present = {secret.get("name") for secret in own or ()}
        return [name for name in wanted if name not in present]

    def _resources(self, kind: str, profile: Profile) -> tuple[Mapping[str, Mapping[str, str]], Overrides]:
        """The container's resources, and the overrides they come from (part of its shared key)."""
        annotation_kind = ANNOTATION_KINDS[kind]
        overrides = tuple(self.request.resources.get(annotation_kind, {}).items())
        resources, problems = _merged_resources(profile, overrides, f"{self.prefix}/{annotation_kind}")
        for problem in problems:
            if problem not in self.problems:
                self.problems.append(problem)
        return resources, overrides

    def _params(self, kind: str, profile: Profile) -> Mapping[str, str]:
        return self.request.params.get((kind, profile.name), {})

    def _ports_in_use(self) -> dict[int, str]:
        ports: dict[int, str] = {}
        listeners = [*self.containers, *(c for c in self.init_containers if c.get("restartPolicy") == "Always")]
        for container in listeners:
            owner = None
            for port in container.get("ports") or ():
                number = port.get("containerPort")  # ports are objects: checked in __init__
                if type(number) is int and number not in ports:
                    ports[number] = owner = owner or f"container {container['name']!r}"
        return ports

    def _claim_port(self, port: int, owner: str, key: str, value: str) -> None:
        if port in self.ports:
            self.problems.append(f"{self.prefix}/{key}: {value!r}: port {port} of {owner} is already used by {self.ports[port]}")
        else:
            self.ports[port] = owner

    # -- one method per pattern ------------------------------------------------------------------

    def _wait_for(self, target: WaitTarget) -> dict[str, Any]:
        profile = self._profile("waitFor", self.settings.defaults.wait_for)
        name = self._claim("entourage-wait-" + slug(target.target.split("://")[-1]), profile)
        resources, overrides = self._resources("waitFor", profile)
        timeout = self.request.wait_for_timeout
        params = self._params("waitFor", profile)
        ca_volume = None
        if waitfor.needs_ca_bundle(profile, target):
            if self.ca_volume is None:
                self.ca_volume = self.volume_names.claim("entourage-wait-for-ca")
                self.volumes.append(waitfor.ca_volume(profile, self.ca_volume))
            ca_volume = self.ca_volume
        mounts, uidless = self._profile_volumes(profile, params), self.assigned_uid
        return shared(
            ("waitFor", profile, name, target, timeout, tuple(params.items()), overrides, ca_volume, mounts, uidless),
            lambda: _adjusted(
                waitfor.build(profile, name=name, target=target, timeout=timeout, params=params, resources=resources, ca_volume=ca_volume),
                mounts,
                uidless,
            ),
        )

    def _ambassador(self, route: Route) -> dict[str, Any]:
        profile = self._profile("ambassador", self.settings.defaults.ambassador)
        name = self._claim(f"entourage-ambassador-{route.local_port}", profile)
        self._claim_port(route.local_port, f"ambassador route {str(route)!r}", "ambassador", str(route))
        problem = ambassador.bind_problem(route.local_port, self.spec)
        if problem:
            self.problems.append(f"{self.prefix}/ambassador: {str(route)!r}: {problem}")
        params = self._params("ambassador", profile)
        resources, overrides = self._resources("ambassador", profile)
        native = self.native
        mounts, uidless = self._profile_volumes(profile, params), self.assigned_uid
        return shared(
            ("ambassador", profile, name, route, tuple(params.items()), overrides, native, mounts, uidless),
            lambda: _sidecar(
                _adjusted(
                    ambassador.build(profile, name=name, route=route, params=params, resources=resources, native=native), mounts, uidless
                ),
                native,
            ),
        )

    def _adapter(self, profile_name: str) -> dict[str, Any]:
        profile = self._profile("adapter", profile_name)
        params = self._params("adapter", profile)
        for port_name, port in adapter.ports(profile, params):
            self._claim_port(port, f"adapter {profile_name!r} ({port_name})", "adapter", profile_name)
        name = self._claim(f"entourage-adapter-{profile_name}", profile)
        resources, overrides = self._resources("adapter", profile)
        native = self.native
        mounts, uidless = self._profile_volumes(profile, params), self.assigned_uid
        return shared(
            ("adapter", profile, name, tuple(params.items()), overrides, native, mounts, uidless),
            lambda: _sidecar(_adjusted(adapter.build(profile, name=name, params=params, resources=resources), mounts, uidless), native),
        )

    def _logging(self) -> dict[str, Any]:
        profile = self._profile("logging", self.request.logging or self.settings.defaults.logging)
        index = self._logging_target()
        paths = self.request.logging_paths or self.settings.defaults.logging_paths
        target = dict(self.containers[index]) if index is not None else {}
        shares: list[logging.LogShare] = []
        app_mounts = list(target.get("volumeMounts") or [])
        existing_at = logging.mounts_by_path(app_mounts)
        for path in paths:
            existing = existing_at.get(path)
            if existing is not None:
                # The app already has a volume there: share it instead of shadowing it.
                volume = next((v for v in self.volumes if v["name"] == existing["name"]), None)
                share = logging.share_existing(existing, volume, path)
                if isinstance(share, str):
                    self.problems.append(f"{self.prefix}/logging-paths: {path!r}: {share}")
                else:
                    shares.append(share)
                continue
            volume_name = self.volume_names.claim("entourage-logs-" + slug(path))
            self.volumes.append({"name": volume_name, "emptyDir": {}})
            app_mounts.append({"name": volume_name, "mountPath": path})
            shares.append(logging.LogShare(volume_name, path))
        if index is not None and len(app_mounts) != len(target.get("volumeMounts") or []):
            target["volumeMounts"] = app_mounts
            self.containers[index] = target
            self.logging_target = index
        name = self._claim("entourage-logging", profile)
        app = str(target.get("name", ""))
        params = self._params("logging", profile)
        resources, overrides = self._resources("logging", profile)
        native = self.native
        mounts, uidless = self._profile_volumes(profile, params), self.assigned_uid
        return shared(
            ("logging", profile, name, tuple(shares), app, tuple(params.items()), overrides, native, mounts, uidless),
            lambda: _sidecar(
                _adjusted(
                    logging.build(profile, name=name, shares=shares, app_container=app, params=params, resources=resources), mounts, uidless
                ),
                native,
            ),
        )

    def _profile_volumes(self, profile: Profile, params: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """(pod volume, mount path) of each of the profile's volumes: one pod volume per object,
        shared by every component that mounts it."""
        if not profile.volumes:
            return ()
        values = profile.values(params)
        mounts = []
        for volume in profile.volumes:
            key = (volume.source, volume.object_name(values))
            pod_volume = self.object_volumes.get(key)
            if pod_volume is None:
                pod_volume = self.object_volumes[key] = self.volume_names.claim(f"entourage-{profile.name}-{volume.name}")
                self.volumes.append(volume.volume(pod_volume, key[1]))
            mounts.append((pod_volume, volume.mount_path))
        return tuple(mounts)

    def _logging_target(self) -> int | None:
        names = [c["name"] for c in self.containers]
        wanted = self.request.logging_container
        if wanted is not None:
            if wanted in names:
                return names.index(wanted)
            listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            self.problems.append(f"{self.prefix}/logging-container: {wanted!r}: no such container; the pod has {listed}")
            return None
        default = ((self.pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER)
        if default in names:
            return names.index(default)
        if default is not None:
            self.warnings.append(f"{DEFAULT_CONTAINER} names no container; logging uses {names[0]!r}")
        return 0

    def _warn_about_classic_sidecars(self, sidecars: list[dict[str, Any]]) -> None:
        if sidecars and self.spec.get("restartPolicy") in ("Never", "OnFailure"):
            self.warnings.append(f'classic sidecars keep this pod running after the app exits; set {self.prefix}/native-sidecars: "true"')


def _adjusted(container: dict[str, Any], mounts: tuple[tuple[str, str], ...], uidless: bool) -> dict[str, Any]:
    """The built container with the profile's volumes mounted read-only after its own mounts,
    and, where the namespace assigns UIDs, without runAsUser and runAsGroup (runAsNonRoot stays)."""
    if mounts:
        own = container.get("volumeMounts") or []
        container["volumeMounts"] = [*own, *({"name": name, "mountPath": path, "readOnly": True} for name, path in mounts)]
    if uidless:
        container["securityContext"] = {k: v for k, v in container["securityContext"].items() if k not in ("runAsUser", "runAsGroup")}
    return container


_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A DNS label (RFC 1123, at most 63 characters), which Kubernetes requires of container and volume names."""

_SPEC_LISTS = ("containers", "initContainers", "ephemeralContainers", "volumes")
"""The spec lists the engine reads, each of objects with a name."""
_CONTAINER_LISTS = ("ports", "volumeMounts")
"""The lists inside a container that the engine reads."""


def _check_lists(spec: Mapping[str, Any], limits: Limits) -> None:
    """Shapes, lengths and names of every list the engine reads, before it reads any of them.

    The lengths are capped (``settings.LIST_LIMITS``) so that the work per pod stays linear and
    small (a 1 MB pod with 30,000 containers cost 240 ms); the caps are far above real pods (see
    Limits). A list over its cap is not counted ("more than"): the server's decoder stops reading
    it there. Every pod passes here, so each list is first checked whole with C-level calls
    (``map``, ``all``); only a list that fails is walked item by item, for the message naming the item."""
    for section in _SPEC_LISTS:
        items = spec.get(section)
        if items is None:
            continue
        if isinstance(items, list) and (problem := _too_long(items, section, limits)):
            raise PodDenied([f"spec.{section}: {problem}"])
        names = _names(items)
        if names is None:
            raise PodDenied([f"spec.{section}: expected a list of objects with names"])
        if not all(map(_NAME.fullmatch, names)):
            _deny_name(section, names)
    for section in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(section) or ()):
            for field_name in _CONTAINER_LISTS:
                items = container.get(field_name)
                if items is None:
                    continue
                if isinstance(items, list) and (problem := _too_long(items, field_name, limits)):
                    raise PodDenied([f"spec.{section}[{index}].{field_name}: {problem}"])
                if not _object_list(items):
                    raise PodDenied([f"spec.{section}[{index}].{field_name}: expected a list of objects"])


def _too_long(items: list[Any], field_name: str, limits: Limits) -> str | None:
    """What is wrong with ``items`` of ``field_name`` if it is over its limit (LIST_LIMITS)."""
    attribute, key = LIST_LIMITS[field_name]
    limit: int = getattr(limits, attribute)
    return f"more than {limit} items; at most {limit} are allowed (limits.{key})" if len(items) > limit else None


def _deny_name(section: str, names: list[str]) -> None:
    """Deny the first item of ``section`` whose name is not a DNS label."""
    for index, name in enumerate(names):
        if not _NAME.fullmatch(name):
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise PodDenied(
                [f"spec.{section}[{index}].name: {shown!r}: expected a DNS label (at most 63 lower-case letters, digits and '-')"]
            )


def _sidecar(container: dict[str, Any], native: bool) -> dict[str, Any]:
    """A native sidecar is an init container that the kubelet restarts and keeps running."""
    return {**container, "restartPolicy": "Always"} if native else container


_merges = caches.cache("resource merges", max_entries=256, max_bytes=1024 * 1024)


def _merged_resources(profile: Profile, overrides: Overrides, key_prefix: str) -> tuple[dict[str, dict[str, str]], list[str]]:
    """merge_resources, memoised: parsing quantities is not free and build_container copies."""
    key = (profile, overrides, key_prefix)
    merged = _merges.get(key)
    if merged is None:
        merged = merge_resources(profile, dict(overrides), key_prefix=key_prefix)
        _merges.put(key, merged, 4 * caches.key_size((overrides, key_prefix)) + 512)
    return merged


_DICT, _STR = frozenset({dict}), frozenset({str})
_name_of = operator.methodcaller("get", "name")


def _object_list(value: Any) -> bool:
    # Decoded JSON is all dicts: their types are compared in C, the Mapping ABC check is slow.
    return isinstance(value, list) and (set(map(type, value)) <= _DICT or all(isinstance(item, Mapping) for item in value))


def _names(value: Any) -> list[str] | None:
    """Each item's name when ``value`` is a list of objects whose names are strings, else None."""
    if not _object_list(value):
        return None
    names = list(map(_name_of, value))
    return names if set(map(type, names)) <= _STR or all(isinstance(name, str) for name in names) else None
