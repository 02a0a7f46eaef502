"""Adversarial pods cost bounded, linear work and are denied by name (issue #15 §1)."""

from __future__ import annotations

import difflib
import functools
import json
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from soak import adversarial
from tests import test_partial_reads
from tests.conftest import reference_review
from tests.webhook_process import Webhook, start
from webhook.admission import partial, validate
from webhook.admission.decide import admit
from webhook.admission.review import decode
from webhook.engine import inject
from webhook.engine.annotations import own_annotations
from webhook.engine.profiles.common import NameAllocator
from webhook.engine.settings import Settings, build_settings
from webhook.serving.validation import ValidateEndpoint

P = "entourage.dev/"


def denial(review: dict[str, Any], settings: Settings, **kwargs: Any) -> str:
    """The denial message, asserting it is the same through the full and the pruned decode."""
    messages = []
    for loads in (orjson.loads, partial.loads):
        response = admit(decode(orjson.dumps(review), loads=loads), settings, **kwargs).review["response"]
        assert response["allowed"] is False, response
        messages.append(response["status"]["message"])
    assert messages[0] == messages[1]
    return messages[0]


def with_keys(count: int, key: str = "x-{}") -> dict[str, Any]:
    return reference_review({P + "logging": "true", **{P + key.format(i): "v" for i in range(count)}})


def counting_suggestions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every spelling suggestion computed (the real difflib still runs)."""
    calls: list[str] = []
    real = difflib.get_close_matches

    def counted(word: str, *args: Any, **kwargs: Any) -> list[str]:
        calls.append(word)
        return real(word, *args, **kwargs)

    monkeypatch.setattr(difflib, "get_close_matches", counted)
    return calls


def test_more_keys_than_the_limit_are_denied_before_any_key_is_looked_at(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_suggestions(monkeypatch)
    message = denial(with_keys(10_000), settings)
    assert (
        "10001 annotations under entourage.dev/ (the pod's and its namespace's); at most 64 are allowed (limits.maxAnnotationKeys)"
        in message
    )
    assert calls == [] and len(message) < 300


@pytest.mark.parametrize("asks", [True, False], ids=["asking", "not-asking"])
def test_annotation_keys_beyond_the_kubernetes_limit_are_denied_before_the_engine(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, asks: bool
) -> None:
    """The apiserver refuses more than 256 KiB of annotations after mutating admission; the keys
    are measured in one pass before anything looks at them one by one (even a pod that asks for
    nothing: the apiserver would refuse it anyway)."""
    calls = counting_suggestions(monkeypatch)
    walked: list[int] = []
    real = inject.own_annotations
    monkeypatch.setattr(inject, "own_annotations", lambda annotations, prefix: walked.append(len(annotations)) or real(annotations, prefix))
    review = reference_review({P + "logging": "true"} if asks else None)
    annotations = review["request"]["object"]["metadata"]["annotations"]
    annotations.update({f"{i:x}": "" for i in range(80_000)})
    message = denial(review, settings)
    assert "metadata.annotations: more than 262144 bytes, keys and values together; Kubernetes allows at most 262144" in message
    assert calls == [] and walked == []


def test_annotations_within_the_kubernetes_limit_reach_the_engine(settings: Settings) -> None:
    review = reference_review({P + "logging": "true"})
    review["request"]["object"]["metadata"]["annotations"].update({f"k{i:05d}": "" for i in range(40_000)})  # 240,000 characters
    assert admit(decode(orjson.dumps(review), loads=partial.loads), settings).outcome == "injected"


def _with_annotations(extra: dict[str, str]) -> dict[str, Any]:
    review = reference_review({P + "logging": "true"})
    review["request"]["object"]["metadata"]["annotations"].update(extra)
    return review


def test_annotations_proven_too_large_by_their_text_are_never_decoded() -> None:
    body = orjson.dumps(_with_annotations({f"{i:x}": "" for i in range(150_000)}))
    annotations = partial.loads(body)["request"]["object"]["metadata"]["annotations"]
    assert type(annotations) is partial.OversizedAnnotations and annotations.at_least > partial.MAX_ANNOTATION_BYTES


@pytest.mark.parametrize(
    ("extra", "allowed"),
    [
        ({"note": "\u00e9" * 120_000}, True),  # 240,000 bytes of UTF-8, 720,000 of JSON escapes
        ({"note": "\u00e9" * 140_000}, False),  # 280,000 bytes, yet 140,000 characters
        ({"note": "\n" * 261_000}, True),  # two bytes of JSON for each byte
        ({"note": "\n" * 263_000}, False),
        ({"note": '"{}:, ' * 43_000}, True),  # every byte may be structure: the text proves nothing
        ({"note": '"{}:, ' * 44_000}, False),
    ],
    ids=["escaped-within", "escaped-over", "newlines-within", "newlines-over", "structure-within", "structure-over"],
)
def test_the_limit_counts_utf8_bytes_of_keys_and_values_whatever_the_escapes(
    settings: Settings, extra: dict[str, str], allowed: bool
) -> None:
    body = json.dumps(_with_annotations(extra)).encode()  # ensure_ascii: "é" is written \u00e9
    for loads in (orjson.loads, partial.loads):
        decision = admit(decode(body, loads=loads), settings)
        assert (decision.outcome == "injected") is allowed, decision.review["response"]


def test_the_namespaces_keys_count_towards_the_limit(settings: Settings) -> None:
    inherited = {f"{P}y-{i}": "v" for i in range(40)}
    message = denial(with_keys(30), settings, namespace_annotations=lambda namespace: inherited)
    assert "71 annotations under entourage.dev/" in message


def test_the_limit_is_configurable() -> None:
    tight = build_settings({"limits": {"maxAnnotationKeys": 2}})
    assert "3 annotations under entourage.dev/" in denial(with_keys(2), tight)


def test_only_the_first_few_unknown_keys_get_a_suggestion(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_suggestions(monkeypatch)
    message = denial(with_keys(60, "loging-{}"), settings)
    assert len(calls) == 2 * 5  # two admissions: the full and the pruned decode
    assert message.count("unknown annotation") == 5
    assert message.endswith("and 55 more unknown keys under entourage.dev/")


def test_a_huge_unknown_key_is_shortened_in_the_message_and_not_compared(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_suggestions(monkeypatch)
    message = denial(reference_review({P + "l" * 200_000: "true"}), settings)
    assert calls == [] and len(message) < 400 and "not a key Entourage knows" in message


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (["a"], "metadata.annotations: expected a map of strings to strings, got a list"),
        ("x", "metadata.annotations: expected a map of strings to strings, got str"),
        ({P + "logging": "true", "example.com/n": 5}, "metadata.annotations['example.com/n']: expected a string value, got a number"),
        ({"example.com/o": {"a": 1}}, "metadata.annotations['example.com/o']: expected a string value, got an object"),
        ({P + "logging": None}, "metadata.annotations['entourage.dev/logging']: expected a string value, got null"),
    ],
)
def test_annotations_that_are_not_a_map_of_strings_are_denied_by_name(settings: Settings, annotations: Any, expected: str) -> None:
    review = reference_review()
    review["request"]["object"]["metadata"]["annotations"] = annotations
    assert expected in denial(review, settings)


def grow(review: dict[str, Any], where: str, count: int) -> dict[str, Any]:
    spec = review["request"]["object"]["spec"]
    app = spec["containers"][0]
    if where == "containers":
        spec["containers"] += [{"name": f"c{i}", "image": "i"} for i in range(count - len(spec["containers"]))]
    elif where == "initContainers":
        spec["initContainers"] = [{"name": f"i{i}", "image": "i"} for i in range(count)]
    elif where == "volumes":
        spec["volumes"] = [{"name": f"v{i}", "emptyDir": {}} for i in range(count)]
    elif where == "volumeMounts":
        app["volumeMounts"] = [{"name": "v", "mountPath": f"/m/{i}"} for i in range(count)]
    else:
        app["ports"] = [{"containerPort": 1 + i} for i in range(count)]
    return review


@pytest.mark.parametrize(
    ("where", "count", "expected"),
    [
        ("containers", 129, "spec.containers: more than 128 items; at most 128 are allowed (limits.maxContainers)"),
        ("initContainers", 129, "spec.initContainers: more than 128 items; at most 128 are allowed (limits.maxContainers)"),
        ("volumes", 513, "spec.volumes: more than 512 items; at most 512 are allowed (limits.maxVolumes)"),
        ("volumeMounts", 513, "spec.containers[0].volumeMounts: more than 512 items; at most 512 are allowed (limits.maxVolumeMounts)"),
        ("ports", 257, "spec.containers[0].ports: more than 256 items; at most 256 are allowed (limits.maxPorts)"),
    ],
)
def test_lists_longer_than_their_limit_are_denied_naming_the_field(settings: Settings, where: str, count: int, expected: str) -> None:
    assert expected in denial(grow(reference_review({P + "logging": "true"}), where, count), settings)
    at_limit = admit(grow(reference_review({P + "logging": "true"}), where, count - 1), settings).review["response"]
    assert at_limit["allowed"] is True, at_limit


@pytest.mark.parametrize("name", ["Bad_Name", "a" * 64, "x" * 2_000_000, "-lead"])
def test_container_names_must_be_dns_labels(settings: Settings, name: str) -> None:
    review = reference_review({P + "logging": "true"})
    review["request"]["object"]["spec"]["containers"][0]["name"] = name
    message = denial(review, settings)
    assert "spec.containers[0].name: " in message and "expected a DNS label" in message and len(message) < 400


def test_invalid_pod_namespace_and_owner_names_are_dropped_not_stored(settings: Settings) -> None:
    review = reference_review({P + "logging": "true"})
    metadata = review["request"]["object"]["metadata"]
    metadata["name"], metadata["generateName"] = "n" * 254, "Not\nValid-"
    metadata["ownerReferences"][0]["name"] = "o" * 2_000_000
    review["request"]["namespace"] = "ns\n" * 10
    decision = admit(review, settings)
    assert decision.outcome == "injected"
    assert (decision.pod_name, decision.namespace, decision.owner) == ("", "", None)


def test_valid_names_are_kept(settings: Settings) -> None:
    review = reference_review({P + "logging": "true"})
    metadata = review["request"]["object"]["metadata"]
    metadata.pop("name", None)
    decision = admit(review, settings)
    assert decision.pod_name == metadata["generateName"]
    assert decision.owner is not None and decision.owner["name"] == metadata["ownerReferences"][0]["name"]


def test_name_allocation_searches_past_taken_names_once() -> None:
    names = NameAllocator(["entourage-logging", *(f"entourage-logging-{i}" for i in range(2, 101))])
    assert names.claim("entourage-logging") == "entourage-logging-101"
    assert names.counters["entourage-logging"] == 101
    assert names.claim("entourage-logging") == "entourage-logging-102"


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    server = start(tmp_path_factory.mktemp("bounded"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        (with_keys(5_000), "5001 annotations under entourage.dev/"),
        (with_keys(10, "loging-{}"), "and 5 more unknown keys"),
        (grow(reference_review({P + "logging": "true"}), "containers", 200), "spec.containers: more than 128 items; at most 128"),
        (grow(reference_review({P + "logging": "true"}), "ports", 300), "spec.containers[0].ports: more than 256 items; at most 256"),
    ],
)
def test_the_server_denies_them_with_the_same_messages(webhook: Webhook, review: dict[str, Any], expected: str) -> None:
    with webhook.client() as client:
        response = client.post("/mutate", content=orjson.dumps(review), headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    answer = response.json()["response"]
    assert answer["allowed"] is False and expected in answer["status"]["message"]


def test_the_server_denies_annotations_that_are_not_a_map(webhook: Webhook) -> None:
    review = reference_review()
    review["request"]["object"]["metadata"]["annotations"] = ["entourage.dev/logging"]
    with webhook.client() as client:
        answer = client.post("/mutate", content=orjson.dumps(review), headers={"Content-Type": "application/json"}).json()["response"]
    assert (
        answer["allowed"] is False
        and "metadata.annotations: expected a map of strings to strings, got a list" in answer["status"]["message"]
    )


MAX_COST_RATIO = 2.0
"""No adversarial body may cost the request path (decode, admit, answer) more than twice what
``json.loads`` takes on the same body or on an ordinary pod of its size, measured in the same run.
A ratio, so that it holds on a fast machine and on a loaded one alike; the absolute figures at
1.5 MB and 3 MiB, against a real server, are ``python -m soak --only adversarial``'s."""
MAX_GROWTH = 2.0
"""From 100 KB to 400 KB a case's cost may grow at most twice as much as json.loads' does on an
ordinary pod (4x both, when the work grows with the body; quadratic work would grow 16x)."""


@pytest.fixture(scope="module")
def costs_100k() -> list[adversarial.Cost]:
    return adversarial.costs(100_000, repeats=5)


@pytest.fixture(scope="module")
def costs_400k() -> list[adversarial.Cost]:
    return adversarial.costs(400_000, repeats=3)


def _confirmed(costs: list[adversarial.Cost], too_costly: Callable[[adversarial.Cost], bool], *, validate: bool = False) -> list[str]:
    """The costs that are still too high when measured again, three times longer: a neighbour's
    burst of CPU can push one best-of-five over a bound (2.08 once in CI, 1.6 on a quiet machine),
    while a real regression stays over it however often it is measured."""
    suspects = [cost for cost in costs if too_costly(cost)]
    if not suspects:
        return []
    again = adversarial.costs(suspects[0].size, repeats=15, cases=[cost.case for cost in suspects], validate=validate)
    return [cost.line() for cost in again if too_costly(cost)]


def test_no_adversarial_body_costs_more_than_twice_a_plain_json_decode(costs_100k: list[adversarial.Cost]) -> None:
    assert len(costs_100k) == len(adversarial.CASES) >= 35
    assert _confirmed(costs_100k, lambda cost: cost.ratio > MAX_COST_RATIO) == []
    assert [cost.line() for cost in costs_100k if cost.status.startswith("5")] == []


@pytest.fixture(scope="module")
def validate_costs_100k() -> list[adversarial.Cost]:
    return adversarial.costs(100_000, repeats=5, validate=True)


def test_no_adversarial_workload_costs_validate_more_than_twice_a_plain_json_decode(validate_costs_100k: list[adversarial.Cost]) -> None:
    """``/validate`` decodes the whole body (a pod UPDATE compares whole containers) with the
    collector paused, as ``/mutate`` does: each shape as a Deployment's template."""
    assert len(validate_costs_100k) == len(adversarial.CASES)
    assert _confirmed(validate_costs_100k, lambda cost: cost.ratio > MAX_COST_RATIO, validate=True) == []
    assert [cost.line() for cost in validate_costs_100k if cost.status.startswith("5")] == []


def _too_fast(small: adversarial.Cost, large: adversarial.Cost) -> str | None:
    if large.cpu < 0.2 * large.reference:
        return None  # cheaper than a fifth of decoding an ordinary pod: timer noise, not growth
    growth, reference = large.cpu / small.cpu, large.reference / small.reference
    if growth <= MAX_GROWTH * reference:
        return None
    return f"{small.case}: x{growth:.1f} for x{large.size / small.size:.1f} the body (json.loads of an ordinary pod: x{reference:.1f})"


def test_the_cost_of_each_adversarial_body_grows_no_faster_than_the_body(
    costs_100k: list[adversarial.Cost], costs_400k: list[adversarial.Cost]
) -> None:
    suspects = [small.case for small, large in zip(costs_100k, costs_400k, strict=True) if _too_fast(small, large)]
    if suspects:  # measured again, longer, as in _confirmed: noise passes, quadratic work does not
        again = zip(adversarial.costs(100_000, 15, suspects), adversarial.costs(400_000, 9, suspects), strict=True)
        assert [problem for small, large in again if (problem := _too_fast(small, large))] == []


@given(
    st.dictionaries(
        st.one_of(
            st.text(alphabet="ab/.\0", max_size=6),
            st.text(alphabet="ab/.\0", max_size=6).map(lambda rest: P + rest),
            st.text(alphabet="ab/.\0", max_size=6).map(lambda rest: "x" + P + rest),
        ),
        st.text(max_size=3),
        max_size=12,
    )
)
def test_own_annotations_finds_exactly_the_keys_under_the_prefix(annotations: dict[str, str]) -> None:
    for foreign in (0, 100):  # few keys: the loop; many foreign ones: the search of the joined keys
        padded = {**{f"f{i}": "" for i in range(foreign)}, **annotations}
        expected = {key[len(P) :]: value for key, value in padded.items() if key.startswith(P)}
        assert own_annotations(padded, "entourage.dev") == expected


def test_validate_denies_a_template_over_the_annotation_limit_before_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[int] = []
    real = validate.own_annotations
    monkeypatch.setattr(
        validate, "own_annotations", lambda annotations, prefix: walked.append(len(annotations)) or real(annotations, prefix)
    )
    review = _with_annotations({f"{i:x}": "" for i in range(80_000)})
    verdict = validate.validate(decode(adversarial.as_deployment(orjson.dumps(review))), build_settings({}))
    assert verdict.outcome == "denied" and walked == []
    assert verdict.review["response"]["status"]["message"] == (
        "Entourage would deny every pod of this Deployment: spec.template.metadata.annotations: more than 262144 bytes,"
        " keys and values together; Kubernetes allows at most 262144 and refuses the pod after admission"
    )


def _padded(review: dict[str, Any]) -> bytes:
    """``review`` past partial.CAPPED_FROM, with a field admission does not read."""
    review["request"]["object"].setdefault("spec", {})["padding"] = "x" * partial.CAPPED_FROM
    return orjson.dumps(review)


@pytest.mark.parametrize("where", ["containers", "initContainers", "volumes", "volumeMounts", "ports"])
@pytest.mark.parametrize("extra", [-1, 0, 1, 20_000])
def test_a_large_body_reads_each_list_up_to_its_limit_and_no_further(settings: Settings, where: str, extra: int) -> None:
    limit = {"containers": 128, "initContainers": 128, "volumes": 512, "volumeMounts": 512, "ports": 256}[where]
    body = _padded(grow(reference_review({P + "logging": "true"}), where, limit + extra))
    plain, capped = partial.loads(body), partial.loads(body, settings.limits)
    if extra <= 0:
        assert capped == plain
    else:
        spec, full = capped["request"]["object"]["spec"], plain["request"]["object"]["spec"]
        listed, whole = (spec[where], full[where]) if where in spec else (spec["containers"][0][where], full["containers"][0][where])
        assert len(listed) == limit + 1 and listed == whole[: limit + 1]
    for loads in (partial.loads, functools.partial(partial.loads, limits=settings.limits)):
        decision = admit(decode(body, loads=loads), settings)
        assert (decision.outcome == "denied") is (extra > 0), decision.review["response"]


def test_large_real_pods_decode_the_same_capped_or_not(settings: Settings) -> None:
    """Every golden pod, made large: the capped schema reads exactly what the plain one does."""
    pods = [document for _, document in test_partial_reads._pods()]
    assert len(pods) >= 20
    for pod in pods:
        body = _padded({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "object": pod}})
        assert partial.loads(body, settings.limits) == partial.loads(body)


def test_the_first_large_body_does_not_build_the_capped_decoder(settings: Settings) -> None:
    """Building it takes about 150 ms: ``prepare`` does it when a configuration is loaded."""
    partial.prepare(settings.limits)
    built = partial._capped_decoders.cache_info().misses
    partial.loads(_padded(grow(reference_review({P + "logging": "true"}), "containers", 50_000)), settings.limits)
    assert partial._capped_decoders.cache_info().misses == built


@pytest.mark.parametrize("path", sorted((Path(__file__).parent / "testdata" / "validate").glob("*.json")), ids=lambda path: path.stem)
def test_validation_decodes_what_it_reads_and_answers_as_the_full_decode(settings: Settings, path: Path) -> None:
    """``/validate``'s own decode, small and large (capped), gives every golden case the full
    decode's answer: it keeps every field validation reads."""
    review = orjson.loads(path.read_bytes())
    expected = validate.validate(decode(orjson.dumps(review)), settings).review
    small = orjson.dumps(review)
    review["request"]["padding"] = "x" * partial.CAPPED_FROM
    for body in (small, orjson.dumps(review)):
        assert (
            validate.validate(decode(body, loads=functools.partial(partial.loads_for_validation, limits=settings.limits)), settings).review
            == expected
        )


@pytest.mark.parametrize("body", [b"5", b"[1]", b'"x"', b"null", b'{"request":5}', b'{"request":{"kind":[]}}', b"{", b"\xff"])
def test_validation_answers_a_body_of_another_shape_with_a_400(body: bytes) -> None:
    state = types.SimpleNamespace(settings=build_settings({}), namespace_annotations=None, cluster=inject.ClusterFacts())
    code, answer, verdict = ValidateEndpoint(lambda: state).respond(body)
    assert code == 400 and verdict is None and orjson.loads(answer)["code"] == 400
