"""Decode only the parts of an AdmissionReview that admission reads, in one pass, never twice.

Parsing a whole pod into dicts is most of the cost of a large request, yet the engine reads only
names, ports, volume mounts, annotations, one sysctl and a few flags. msgspec decodes the body straight into
plain dicts shaped by the TypedDicts below and skips every other field without building it (a
1.4 MB pod of 100,000 env entries: about 2 ms, where ``json.loads`` takes 15). The result has
the same shape as the full decode with the unread fields left out, so the engine cannot tell the
difference: ``tests/test_partial_reads.py`` records every field admission reads on the golden pods
and checks it is kept here, and ``tests/test_properties.py`` holds that the answers are the same.
The patch never copies the pod back, so nothing is lost.

Every field is typed to accept any JSON value, so a body of an unexpected shape is decoded by the
same single pass (an earlier version decoded it again with orjson: a pod author could make every
request pay for two decodes). Where admission only needs to know that a value is not what it
expects, the value's content is skipped too: an object becomes ``{}`` and an array an empty
``Skipped`` marker, neither of which is a string, a number or a list, which is all admission
asks of them. What is left is the cost of building what admission reads: for a body made of
nothing but ``{}`` in a list it reads (500,000 empty containers in 1.5 MB), about what
``json.loads`` takes; for everything else less (soak/adversarial.py measures 38 such shapes).

A body that is not JSON, nests deeper than the interpreter's recursion limit, or holds a number
beyond a double's range or an integer beyond 64 bits where admission reads it raises
``msgspec.DecodeError`` or ``RecursionError`` (``review.decode`` answers 400). One difference
from orjson remains, by design: a number beyond a double's range (valid JSON grammar, RFC 8259
§6) in a field that is never read does not make the body a 400. Invalid UTF-8 and unpaired
surrogate escapes (``"\\udead"``) anywhere still do.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict

import msgspec
import orjson

from webhook.admission import capped
from webhook.engine.settings import LIST_LIMITS, Limits
from webhook.errors import PodDenied


class Skipped(msgspec.Struct, array_like=True, gc=False):
    """A JSON array whose content is not read: skipped by the decoder, never built. It encodes as
    ``[]`` (the answer cache's key) and is not a list, so admission treats it as the wrong type
    it is. A Struct with no fields ignores any array's elements, which costs no allocation."""


class _Object(TypedDict, total=False):
    """A JSON object whose content is not read: decoded as ``{}`` (only its presence counts)."""


Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer as Kubernetes has them (int64). A longer one is refused before it is built:
turning thousands of digits into a Python int takes time quadratic in the digits (a 1.5 MB
array of 4,000-digit integers cost 34 ms; refused, 2 ms), and the apiserver never sends one."""
Scalar = str | Int | float | bool | None
Value = Scalar | _Object | Skipped
"""Any JSON value where admission reads a string, a number or a flag: strings and numbers are
kept, an object or an array becomes a marker of its type."""


class _Owner(TypedDict, total=False):
    apiVersion: Value
    kind: Value
    name: Value
    uid: Value
    controller: Value


class _Port(TypedDict, total=False):
    containerPort: Value


class _Mount(TypedDict, total=False):
    name: Value
    mountPath: Value
    subPath: Value
    subPathExpr: Value


class _Volume(TypedDict, total=False):
    name: Value
    # The sources the logging agent never shares (profiles/logging.NEVER_SHARED): only presence.
    secret: Value
    configMap: Value
    projected: Value
    downwardAPI: Value


class _Container(TypedDict, total=False):
    name: Value
    ports: list[_Port | Scalar | Skipped] | _Object | Scalar
    volumeMounts: list[_Mount | Scalar | Skipped] | _Object | Scalar
    restartPolicy: Value


class _Named(TypedDict, total=False):
    name: Value


class _Sysctl(TypedDict, total=False):
    name: Value
    value: Value


class _PodSecurityContext(TypedDict, total=False):
    sysctls: list[_Sysctl | Scalar | Skipped] | _Object | Scalar
    """Read for an ambassador below port 1024: ``net.ipv4.ip_unprivileged_port_start``."""


class _Spec(TypedDict, total=False):
    # Lists of items that are objects, as admission reads them; an item of another type (or a
    # list where an object is expected) stays the wrong type it is, for admission to deny.
    volumes: list[_Volume | Scalar | Skipped] | _Object | Scalar
    initContainers: list[_Container | Scalar | Skipped] | _Object | Scalar
    containers: list[_Container | Scalar | Skipped] | _Object | Scalar
    ephemeralContainers: list[_Named | Scalar | Skipped] | _Object | Scalar
    restartPolicy: Value
    hostNetwork: Value
    imagePullSecrets: list[_Named | Scalar | Skipped] | _Object | Scalar
    """Read when a profile requires pull secrets (each secret's name)."""
    securityContext: _PodSecurityContext | Scalar | Skipped


Annotations = dict[str, Scalar | _Object | Skipped] | Skipped | Scalar
"""A value that is not a string keeps its JSON type, because the denial names it ("expected a
string value, got a list"); a list's content is skipped and the list decoded as ``[]``."""

MAX_ANNOTATION_BYTES = 256 * 1024
"""Kubernetes' own limit on a pod's annotations, keys and values together (``TotalAnnotationSizeLimitB``
in the apiserver's validation, which runs after mutating admission)."""


class OversizedAnnotations(msgspec.Struct, frozen=True, gc=False):
    """In place of annotations that hold more than MAX_ANNOTATION_BYTES (``at_least`` bytes of
    keys and values): never decoded, for a pod the apiserver refuses anyway."""

    at_least: int


def check_annotation_size(pod: Mapping[str, Any]) -> None:
    """Deny a pod whose annotations exceed what Kubernetes allows, before the engine looks at them
    one by one: it would walk each key three times (its shape, our prefix, its copy), 20 ms for
    140,000 tiny keys, for a pod the apiserver refuses anyway. ``loads`` leaves the largest
    undecoded (OversizedAnnotations); the others are measured here, in C. Also for pod templates
    (``/validate``): Kubernetes holds them to the same limit."""
    metadata = pod.get("metadata")
    # `type(...) is dict` first: decoded JSON is all dicts, and the Mapping ABC check is a Python call.
    annotations = metadata.get("annotations") if type(metadata) is dict or isinstance(metadata, Mapping) else None
    if type(annotations) is dict or isinstance(annotations, Mapping):
        oversized = _size(annotations) > MAX_ANNOTATION_BYTES
    else:
        oversized = isinstance(annotations, OversizedAnnotations)
    if oversized:
        raise PodDenied(
            [
                f"metadata.annotations: more than {MAX_ANNOTATION_BYTES} bytes, keys and values together; Kubernetes allows at most {MAX_ANNOTATION_BYTES} and refuses the pod after admission"
            ]
        )


def _size(annotations: Mapping[str, Any]) -> int:
    """The bytes of the keys and string values as Kubernetes counts them (UTF-8), in C: joined,
    then encoded only when not ASCII. A value that is not a string is denied by name later."""
    text = "".join(annotations)
    if set(map(type, annotations.values())) <= {str}:
        text += "".join(annotations.values())
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Metadata(TypedDict, total=False):
    name: Value
    generateName: Value
    annotations: msgspec.Raw
    """Decoded by ``_annotations`` after a size check: a map of 280,000 tiny keys (3 MiB) costs the
    decoder three times what a list of the same strings does, and more per key the more keys."""
    ownerReferences: list[_Owner | Scalar | Skipped] | _Object | Scalar


class _Pod(TypedDict, total=False):
    metadata: _Metadata | Scalar | Skipped
    spec: _Spec | Scalar | Skipped


class _GroupVersionKind(TypedDict, total=False):
    group: Value
    version: Value
    kind: Value


class _Request(TypedDict, total=False):
    uid: Value
    kind: _GroupVersionKind | Scalar | Skipped
    namespace: Value
    operation: Value
    subResource: Value
    dryRun: Value
    object: _Pod | Scalar | Skipped


class _Review(TypedDict, total=False):
    apiVersion: Value
    kind: Value
    request: _Request | Scalar | Skipped


class _JobSpec(TypedDict, total=False):
    template: _Pod | Scalar | Skipped


class _JobTemplate(TypedDict, total=False):
    spec: _JobSpec | Scalar | Skipped


class _WorkloadSpec(TypedDict, total=False):
    template: _Pod | Scalar | Skipped
    jobTemplate: _JobTemplate | Scalar | Skipped
    """A CronJob's pod is at ``spec.jobTemplate.spec.template`` (validate.TEMPLATES)."""


class _Workload(TypedDict, total=False):
    """A workload or a Namespace, as ``/validate`` reads it: annotations and the pod template."""

    metadata: _Metadata | Scalar | Skipped
    spec: _WorkloadSpec | Scalar | Skipped


class _WorkloadRequest(_Request, total=False):
    object: _Workload | Scalar | Skipped  # type: ignore[misc]  # narrows the pod to a workload
    oldObject: _Workload | Scalar | Skipped


class _WorkloadReview(_Review, total=False):
    request: _WorkloadRequest | Scalar | Skipped  # type: ignore[misc]  # the workload's request


class _KindRequest(TypedDict, total=False):
    kind: _GroupVersionKind | Scalar | Skipped
    operation: Value


class _Kind(TypedDict, total=False):
    """Only ``request.kind``: which schema a ``/validate`` body gets."""

    request: _KindRequest | Scalar | Skipped


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {
    root: msgspec.json.Decoder(root | Scalar | Skipped) for root in (_Review, _WorkloadReview)
}
_kind_decoder = msgspec.json.Decoder(_Kind | Scalar | Skipped)
_annotations_decoder = msgspec.json.Decoder(Annotations)

CAPPED_FROM = 256 * 1024
"""Bodies larger than this are decoded with every list capped (``capped.py``): at its limit for
the lists admission sizes, at UNSIZED_CAP for the others. A smaller body holds at most 87,000
``{}`` items in all, which the plain decoder builds in about 5 ms."""
UNSIZED_CAP = 64
"""Items read of a list without a limit of its own in a large body: owner references (admission
reads the first 16), pull secrets and sysctls (a real pod has a handful). Every capped list is a
Struct class of cap + 1 fields, built once: 4,096 here took 0.5 s and 10 MiB."""


def prepare(limits: Limits) -> None:
    """Build the capped decoders for ``limits`` now, rather than in the first large request."""
    _capped_decoders(limits)


@functools.lru_cache(maxsize=4)
def _capped_decoders(limits: Limits) -> dict[Any, msgspec.json.Decoder[Any]]:
    """The capped decoder of each root schema, for these limits."""
    caps = {field: getattr(limits, attribute) for field, (attribute, _) in LIST_LIMITS.items()}
    roots = (_Review, _WorkloadReview)
    rewritten = capped.schemas(tuple(root | Scalar | Skipped for root in roots), lambda field: caps.get(field, UNSIZED_CAP))
    return {root: msgspec.json.Decoder(schema) for root, schema in zip(roots, rewritten, strict=True)}


_NOT_CONTENT = b'{}":, \t\n\r'
"""The bytes of a JSON object of strings that may be structure rather than key or value."""


def loads(body: bytes, limits: Limits | None = None) -> Any:
    """The review with only what admission reads (a body that is not an object: its type); with
    ``limits``, a large body's lists are read only as far as admission's limits on them."""
    if not body.isascii():
        body.decode("utf-8")  # skipped strings are not checked; JSON must be valid UTF-8
    review = _decoded(body, _Review, limits)
    if type(review) is Skipped:
        return []  # an array: decode() names its type
    metadata = _pod_metadata(review)
    if metadata is not None and "annotations" in metadata:
        metadata["annotations"] = _annotations(metadata["annotations"])
    return review


def loads_for_validation(body: bytes, limits: Limits | None = None) -> Any:
    """A ``/validate`` review: a workload's or a Namespace's with only what validation reads (the
    annotations and the pod template, decoded as ``loads`` decodes a pod); a Pod UPDATE's whole,
    since it compares the injected containers field by field."""
    if not body.isascii():
        body.decode("utf-8")
    kind = _kind_decoder.decode(body)
    request = kind.get("request") if type(kind) is dict else None
    gvk = request.get("kind") if type(request) is dict else None
    if (
        type(request) is dict
        and type(gvk) is dict
        and (gvk.get("group"), gvk.get("kind"), request.get("operation")) == ("", "Pod", "UPDATE")
    ):
        return orjson.loads(body)
    review = _decoded(body, _WorkloadReview, limits)
    if type(review) is Skipped:
        return []  # an array: decode() names its type
    if type(review) is dict:
        _decode_all_annotations(review)
    return review


def _decoded(body: bytes, root: Any, limits: Limits | None) -> Any:
    """``body`` decoded with the schema ``root`` (``_Review``, ``_WorkloadReview``): whole when
    small, its lists capped (``capped.py``) when larger than CAPPED_FROM."""
    if limits is None or len(body) <= CAPPED_FROM:
        return _decoders[root].decode(body)
    return capped.uncapped(_capped_decoders(limits)[root].decode(body))


def _decode_all_annotations(value: dict[str, Any]) -> None:
    """Every ``annotations`` Raw under ``value`` (objects only: no list holds one) decoded."""
    for key, item in value.items():
        if type(item) is dict:
            _decode_all_annotations(item)
        elif key == "annotations" and type(item) is msgspec.Raw:
            value[key] = _annotations(item)


def _pod_metadata(review: Any) -> dict[str, Any] | None:
    request = review.get("request") if type(review) is dict else None
    pod = request.get("object") if type(request) is dict else None
    metadata = pod.get("metadata") if type(pod) is dict else None
    return metadata if type(metadata) is dict else None


def _annotations(raw: msgspec.Raw) -> Any:
    """The annotations decoded, or OversizedAnnotations when their JSON text alone proves them
    over Kubernetes' limit, which costs one pass in C instead of a map of every key.

    The proof is a lower bound on the bytes of keys and values: the text's length less every byte
    that may be structure (quotes, braces, colons, commas, whitespace, even inside strings) and
    five bytes per backslash (an escape of up to six bytes stands for at least one). Whatever passes
    is at most the bound's worth of keys: 256 KiB of distinct keys, 90,000 at the very most."""
    if len(raw) > MAX_ANNOTATION_BYTES:
        text = bytes(raw)  # a Raw starts at its value: "{" for a map
        at_least = len(text.translate(None, _NOT_CONTENT)) - 5 * text.count(b"\\")
        if text[:1] == b"{" and at_least > MAX_ANNOTATION_BYTES:
            return OversizedAnnotations(at_least)
    annotations = _annotations_decoder.decode(raw)
    if type(annotations) is dict:
        if Skipped in set(map(type, annotations.values())):
            return {key: [] if type(value) is Skipped else value for key, value in annotations.items()}
        return annotations
    return [] if type(annotations) is Skipped else annotations
