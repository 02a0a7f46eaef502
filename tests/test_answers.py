"""Answers reused for identical requests (webhook/admission/reuse.py): only when admission could not
tell the requests apart, never for failures, bounded, and off with size 0."""

from __future__ import annotations

import base64
import copy
import dataclasses
from typing import Any

import pytest

from tests.conftest import reference_review
from webhook.admission import reuse
from webhook.admission.decide import (
    OUTCOME_DENIED,
    OUTCOME_INJECTED,
    admit,
)
from webhook.admission.reuse import DEFAULT_SIZE, AnswerCache
from webhook.engine.inject import ClusterFacts
from webhook.engine.settings import load_settings

SETTINGS = load_settings(None, environ={})
ANNOTATIONS = {"entourage.dev/logging": "true", "entourage.dev/wait-for": "tcp://db:5432"}


def review(uid: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    result = copy.deepcopy(reference_review(ANNOTATIONS if annotations is None else annotations))
    result["request"]["uid"] = uid
    return result


class EngineCalls(list[str]):
    """The uids the engine ran for, as the cache's ``on_miss``; ``failing`` makes it raise."""

    failing = False

    def admit(self, review: Any, *args: Any, **kwargs: Any) -> Any:
        self.append(review["request"]["uid"])
        if self.failing:
            raise RuntimeError("bug")
        return admit(review, *args, **kwargs)


@pytest.fixture
def engine_calls() -> EngineCalls:
    return EngineCalls()


def test_the_pods_of_one_workload_share_one_run_of_the_engine(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(on_miss=engine_calls.admit)
    first = cache.admit(review("uid-1"), SETTINGS)
    second = cache.admit(review("uid-2"), SETTINGS)
    assert engine_calls == ["uid-1"]
    assert first.outcome == OUTCOME_INJECTED
    fresh = admit(review("uid-2"), SETTINGS)
    assert second.review == fresh.review and second.review["response"]["uid"] == "uid-2"
    assert (second.outcome, second.reason, second.components, second.owner) == (fresh.outcome, fresh.reason, fresh.components, fresh.owner)
    assert first.review["response"]["uid"] == "uid-1"  # the kept answer is not changed by reuse
    assert (first.reused, second.reused, second.uid) == (False, True, "uid-2")
    assert isinstance(second.duration, float) and 0 <= second.duration < 1.0


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["request"]["object"]["metadata"]["annotations"].update({"entourage.dev/wait-for": "tcp://db:5433"}),
        lambda r: r["request"]["object"]["spec"]["containers"][0].update({"name": "renamed"}),
        lambda r: r["request"].update({"namespace": "other"}),
        lambda r: r["request"].update({"operation": "UPDATE"}),
    ],
    ids=["annotation", "container-name", "namespace", "operation"],
)
def test_a_request_admission_could_tell_apart_gets_its_own_answer(engine_calls: EngineCalls, change: Any) -> None:
    cache = AnswerCache(on_miss=engine_calls.admit)
    cache.admit(review("uid-1"), SETTINGS)
    changed = review("uid-2")
    change(changed)
    answer = cache.admit(changed, SETTINGS)
    assert engine_calls == ["uid-1", "uid-2"]
    assert answer.review == admit(changed, SETTINGS).review


def test_settings_cluster_facts_and_namespace_defaults_are_part_of_the_key(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(on_miss=engine_calls.admit)
    cache.admit(review("uid-1"), SETTINGS)
    cache.admit(review("uid-2"), dataclasses.replace(SETTINGS))
    cache.admit(review("uid-3"), SETTINGS, cluster=ClusterFacts(native_sidecars=True))
    defaults = {"entourage.dev/ambassador": "6379=redis:6379"}
    answer = cache.admit(review("uid-4"), SETTINGS, namespace_annotations=lambda namespace: defaults)
    assert engine_calls == ["uid-1", "uid-2", "uid-3", "uid-4"]
    assert answer.components == admit(review("uid-4"), SETTINGS, namespace_annotations=lambda namespace: defaults).components
    cache.admit(review("uid-5"), SETTINGS, namespace_annotations=lambda namespace: dict(defaults))
    assert engine_calls[-1] == "uid-4"  # equal defaults, another mapping object: reused


def test_denials_are_reused_and_failures_never(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(on_miss=engine_calls.admit)
    bad = {"entourage.dev/wait-for": "tcp://db:notaport"}
    assert cache.admit(review("uid-1", bad), SETTINGS).outcome == OUTCOME_DENIED
    assert cache.admit(review("uid-2", bad), SETTINGS).review["response"]["uid"] == "uid-2"
    assert engine_calls == ["uid-1"]

    engine_calls.failing = True
    other = {"entourage.dev/logging": "tail"}
    for uid in ("uid-3", "uid-4"):  # the endpoint answers the failure (tests/test_catch_all.py)
        with pytest.raises(RuntimeError, match="bug"):
            cache.admit(review(uid, other), SETTINGS)
    assert engine_calls == ["uid-1", "uid-3", "uid-4"]


def test_pods_that_ask_for_nothing_are_not_kept_and_size_bounds_the_rest(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(size=2, on_miss=engine_calls.admit)
    cache.admit(review("plain-1", {}), SETTINGS)
    assert cache.entries == {}
    for index in range(3):
        cache.admit(review(f"uid-{index}", {"entourage.dev/wait-for": f"tcp://db:{5000 + index}"}), SETTINGS)
    assert len(cache.entries) == 2
    cache.admit(review("again-0", {"entourage.dev/wait-for": "tcp://db:5000"}), SETTINGS)  # the oldest went
    assert engine_calls[-1] == "again-0"


def test_size_zero_runs_the_engine_every_time(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(0, on_miss=engine_calls.admit)
    cache.admit(review("uid-1"), SETTINGS)
    cache.admit(review("uid-2"), SETTINGS)
    assert engine_calls == ["uid-1", "uid-2"] and cache.entries == {}


def test_a_request_too_large_to_key_is_answered_but_not_kept(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(on_miss=engine_calls.admit)
    big = review("uid-1")
    big["request"]["object"]["metadata"]["annotations"]["notes"] = "x" * reuse.MAX_KEY
    assert cache.admit(big, SETTINGS).outcome == OUTCOME_INJECTED
    assert cache.entries == {}


def test_one_answer_is_kept_with_size_one(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(1, on_miss=engine_calls.admit)
    cache.admit(review("uid-1"), SETTINGS)
    cache.admit(review("uid-2"), SETTINGS)
    assert engine_calls == ["uid-1"] and len(cache.entries) == 1


def test_a_pod_that_asks_only_through_its_namespace_is_kept_per_namespace_defaults(engine_calls: EngineCalls) -> None:
    cache = AnswerCache(on_miss=engine_calls.admit)
    waits = {"entourage.dev/wait-for": "tcp://db:5432"}
    answers = [cache.admit(review(f"uid-{index}", {}), SETTINGS, namespace_annotations=lambda namespace: dict(waits)) for index in (1, 2)]
    assert engine_calls == ["uid-1"] and [a.components for a in answers] == [["entourage-wait-db-5432"]] * 2
    other = cache.admit(review("uid-3", {}), SETTINGS, namespace_annotations=lambda namespace: {"entourage.dev/wait-for": "tcp://db:6543"})
    assert engine_calls == ["uid-1", "uid-3"] and other.components == ["entourage-wait-db-6543"]


@pytest.mark.parametrize("size", [0, DEFAULT_SIZE])
def test_the_namespace_is_looked_up_as_admit_reads_it_and_cluster_facts_reach_the_engine(size: int) -> None:
    asked: list[object] = []

    def lookup(namespace: str) -> dict[str, str]:
        asked.append(namespace)
        return {"entourage.dev/logging": "true"}

    cache = AnswerCache(size)
    long_name = review("uid-1", {})
    long_name["request"]["namespace"] = "n" * 63
    native = cache.admit(long_name, SETTINGS, namespace_annotations=lookup, cluster=ClusterFacts(native_sidecars=True))
    assert asked == ["n" * 63]
    assert native.review == admit(long_name, SETTINGS, namespace_annotations=lookup, cluster=ClusterFacts(native_sidecars=True)).review
    assert (
        native.components == ["entourage-logging"]
        and "/spec/initContainers" in base64.b64decode(native.review["response"]["patch"]).decode()
    )
    without = review("uid-2", {})
    del without["request"]["namespace"]
    assert cache.admit(without, SETTINGS, namespace_annotations=lookup).components == [] and asked == ["n" * 63, "n" * 63]
    invalid = review("uid-3", {})
    invalid["request"]["namespace"] = "n" * 64  # not a DNS label: dropped, never looked up
    assert cache.admit(invalid, SETTINGS, namespace_annotations=lookup).components == [] and asked == ["n" * 63, "n" * 63]


def distinct(count: int) -> list[dict[str, Any]]:
    """``count`` requests admission tells apart (each its own wait-for port), as a stream of Jobs."""
    return [review(f"miss-{n}", {**ANNOTATIONS, "entourage.dev/wait-for": f"tcp://db:{1000 + n}"}) for n in range(count)]


def test_a_stream_of_misses_stops_paying_for_keys_and_the_next_workload_is_found_again(engine_calls: EngineCalls) -> None:
    """After BYPASS_AFTER misses in a row only every PROBE_EVERY-th request is looked up and kept;
    two probes of one workload meet, and from then on every request is looked up again."""
    cache = AnswerCache(on_miss=engine_calls.admit)
    for request in distinct(reuse.BYPASS_AFTER):
        cache.admit(request, SETTINGS)
    assert cache.bypassing and len(cache.entries) == reuse.BYPASS_AFTER
    for request in distinct(reuse.BYPASS_AFTER * 2)[reuse.BYPASS_AFTER :]:  # still misses: 1 in PROBE_EVERY is kept
        cache.admit(request, SETTINGS)
    assert cache.bypassing and len(cache.entries) == DEFAULT_SIZE
    kept_before = set(cache.entries)
    engine_calls.clear()
    answers = [cache.admit(review(f"pod-{n}"), SETTINGS) for n in range(3 * reuse.PROBE_EVERY)]  # one workload scaled up
    assert not cache.bypassing
    first_probe = len(set(cache.entries) - kept_before)
    assert first_probe == 1  # the workload's answer, kept by its first probe
    assert len(engine_calls) == 2 * reuse.PROBE_EVERY - 1  # until its second probe found it
    assert [a.reused for a in answers] == [False] * len(engine_calls) + [True] * (len(answers) - len(engine_calls))
    fresh = admit(review("pod-0"), SETTINGS).review
    assert all(
        {**a.review, "response": {**a.review["response"], "uid": "x"}} == {**fresh, "response": {**fresh["response"], "uid": "x"}}
        for a in answers
    )


def test_unannotated_pods_are_not_misses(engine_calls: EngineCalls) -> None:
    """Only requests that were looked up count towards the bypass."""
    cache = AnswerCache(on_miss=engine_calls.admit)
    for n in range(2 * reuse.BYPASS_AFTER):
        cache.admit(review(f"plain-{n}", {}), SETTINGS)
    assert cache.misses == 0 and not cache.bypassing


def test_while_bypassing_a_workload_among_unannotated_pods_is_found_again(engine_calls: EngineCalls) -> None:
    """A probe that falls on an unannotated pod passes to the next annotated one: a workload
    scaling up among other pods is found within two probes, and lookups resume."""
    cache = AnswerCache(on_miss=engine_calls.admit)
    for request in distinct(reuse.BYPASS_AFTER):
        cache.admit(request, SETTINGS)
    assert cache.bypassing
    answers = []
    for n in range(4 * reuse.PROBE_EVERY):  # in step with the probes: every other pod is the workload's
        cache.admit(review(f"plain-{n}", {}), SETTINGS)
        answers.append(cache.admit(review(f"pod-{n}"), SETTINGS))
    assert not cache.bypassing and answers[-1].reused
    assert sum(not answer.reused for answer in answers) <= reuse.PROBE_EVERY + 1
