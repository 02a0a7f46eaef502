"""The annotation contract, table-driven like vault-k8s: (key, value, valid?) and the exact messages."""

from __future__ import annotations

import pytest

from webhook.engine.annotations import (
    KEYS,
    parse_annotations,
    parse_route,
    parse_wait_target,
)
from webhook.engine.request import WaitTarget
from webhook.engine.settings import Settings
from webhook.errors import PodDenied

VALID = [
    ("logging", "true"),
    ("logging", "false"),
    ("logging", "tail"),
    ("logging", "fluent-bit"),
    ("logging-paths", "/var/log/app"),
    ("logging-paths", "/var/log/app, /data/audit"),
    ("logging-paths", "/a_b/c-d/e.f"),
    ("logging-container", "app"),
    ("ambassador", "redis:6379"),
    ("ambassador", "6380=redis:6379"),
    ("ambassador", "tls://api.example.com:443"),
    ("ambassador", "8443=tls://10.0.0.1:443"),
    ("ambassador", "[fd00::1]:5432"),
    ("ambassador", "a:1,b:2,c:3"),
    ("wait-for", "db:5432"),
    ("wait-for", "tcp://db.prod.svc.cluster.local:5432"),
    ("wait-for", "http://api"),
    ("wait-for", "http://api:8080/healthz"),
    ("wait-for", "https://api.example.com/ready?full=1"),
    ("wait-for", "dns://my-db-service"),
    ("wait-for", "tcp://[::1]:80"),
    ("wait-for", "http://[fd00::1]:8080/x"),
    ("wait-for-timeout", "90s"),
    ("wait-for-timeout", "5m"),
    ("wait-for-timeout", "1h"),
    ("wait-for-timeout", "1h30m"),
    ("wait-for-timeout", "0"),
    ("adapter", "nginx-prometheus"),
    ("adapter", "nginx-prometheus,statsd-prometheus"),
    ("adapter", "false"),
    ("native-sidecars", "true"),
    ("native-sidecars", "false"),
    ("logging-cpu-request", "50m"),
    ("ambassador-memory-limit", "128Mi"),
    ("wait-for-cpu-limit", "0.5"),
    ("adapter-memory-request", "1Gi"),
    ("adapter.nginx-prometheus.status-port", "8081"),
    ("adapter.nginx-prometheus.status-path", "/nginx_status"),
    ("logging.fluent-bit.host", "fluentd.logging"),
    ("ambassador.socat.ca-file", "/etc/ssl/custom.pem"),
    ("inject", "true"),
    ("inject", "false"),
]

INVALID = [
    ("logging", "yes", 'expected "true", "false" or a logging profile: fluent-bit, tail'),
    ("logging", "True", "expected"),
    ("logging-paths", "var/log", "expected an absolute directory"),
    ("logging-paths", "/var/log/../etc", "expected a clean absolute directory"),
    ("logging-paths", "/var//log", "expected an absolute directory"),
    ("logging-paths", "/var/log app", "expected an absolute directory"),
    ("logging-paths", "/var/log,/var/log/app", "/var/log/app is inside /var/log"),
    ("logging-paths", "/a,,/b", "without empty items"),
    ("logging-container", "App_1", "expected a DNS-1123 label"),
    ("ambassador", "redis", "expected host:port"),
    ("ambassador", "redis:0", "expected a port number from 1 to 65535"),
    ("ambassador", "redis:65536", "expected a port number from 1 to 65535"),
    ("ambassador", "70000=redis:6379", "expected a port number from 1 to 65535"),
    ("ambassador", "http://redis:6379", "the only upstream scheme is tls://"),
    ("ambassador", "::1:5432", "must be written in brackets"),
    ("ambassador", "redis:6379,redis:6379", "the same route is listed twice"),
    ("ambassador", ",".join(f"h{i}:{i + 1}" for i in range(9)), "at most 8 routes are allowed, got 9"),
    ("ambassador", "db;rm -rf /:5432", "expected a DNS name"),
    ("wait-for", "$(reboot):80", "expected a DNS name"),
    ("wait-for", "`id`:80", "expected a DNS name"),
    ("wait-for", "db:5432\nreboot", "expected a port number"),
    ("wait-for", "db：5432", "expected host:port"),
    ("wait-for", "dЬ:5432", "expected a DNS name"),
    ("wait-for", "ftp://db:21", "expected tcp://, http://, https:// or dns://"),
    ("wait-for", "http://user:pw@db/x", "credentials in URLs are not allowed"),
    ("wait-for", "http://db/x y", "expected an absolute URL path"),
    ("wait-for", "http://db/a'b", "expected an absolute URL path"),
    ("wait-for", "http://db/../../etc", "expected an absolute URL path"),
    ("wait-for", "http://db/?a=1&b=2", "expected an absolute URL path"),
    ("wait-for", "dns://-bad-", "expected a DNS name"),
    ("wait-for", "db:5432,tcp://db:5432", "the same target is listed twice"),
    ("wait-for-timeout", "5 minutes", "expected a duration"),
    ("wait-for-timeout", "-1s", "expected a duration"),
    ("wait-for-timeout", "1d", "expected a duration"),
    ("wait-for-timeout", "999999999h", "at most 24h (86400s)"),
    ("adapter", "prometheus", "no adapter profile 'prometheus'"),
    ("adapter", "nginx-prometheus,nginx-prometheus", "listed twice"),
    ("native-sidecars", "yes", 'expected "true" or "false"'),
    ("logging-cpu-request", "lots", "is not a Kubernetes quantity"),
    ("logging-cpu-request", "-1", "is not a Kubernetes quantity"),
    ("logging-memory-limit", "3Gi", "above the maximum of 2Gi set in the configuration"),
    ("logging-cpu-limit", "0", "must be above zero"),
    ("adapter.nginx-prometheus.status-port", "http", "expected a port number"),
    ("adapter.nginx-prometheus.stauts-port", "8080", "did you mean entourage.dev/adapter.nginx-prometheus.status-port?"),
    ("loging", "true", "did you mean entourage.dev/logging?"),
    ("waitfor", "db:1", "did you mean entourage.dev/wait-for?"),
    ("inject", "no", 'expected "false"'),
    ("status-", "x", "unknown annotation"),
]


@pytest.mark.parametrize(("key", "value"), VALID, ids=[f"{k}={v}" for k, v in VALID])
def test_a_valid_value_is_accepted(settings: Settings, key: str, value: str) -> None:
    parse_annotations({key: value}, settings)


def case_id(key: str, value: str) -> str:
    """A test id without backslashes: pytest escapes newlines and non-ASCII characters with
    them, and such an id cannot select its test by name once the module was collected in the
    same process, which is how `make mutate` runs the tests."""
    return f"{key}={value!a}".replace("\\", "^")


@pytest.mark.parametrize(("key", "value", "expected"), INVALID, ids=[case_id(k, v) for k, v, _ in INVALID])
def test_an_invalid_value_is_denied_naming_the_key_the_value_and_what_is_expected(
    settings: Settings, key: str, value: str, expected: str
) -> None:
    with pytest.raises(PodDenied) as denial:
        parse_annotations({key: value}, settings)
    (message,) = denial.value.problems
    assert message.startswith(f"entourage.dev/{key}: {value[:77]!r}"[:40])
    assert expected in message


def test_all_problems_of_one_pod_are_reported_together(settings: Settings) -> None:
    with pytest.raises(PodDenied) as denial:
        parse_annotations({"loging": "true", "wait-for": "x", "ambassador": "y", "wait-for-timeout": "z"}, settings)
    assert len(denial.value.problems) == 4


def test_values_are_never_echoed_with_raw_newlines(settings: Settings) -> None:
    with pytest.raises(PodDenied) as denial:
        parse_annotations({"wait-for": "db:1\nINJECTED LOG LINE"}, settings)
    assert "\n" not in str(denial.value) and "\\n" in str(denial.value)


def test_very_long_values_are_refused_before_parsing(settings: Settings) -> None:
    with pytest.raises(PodDenied, match="longer than 4096 characters"):
        parse_annotations({"wait-for": "a:1," * 2000}, settings)
    with pytest.raises(PodDenied) as denial:
        parse_annotations({"wait-for": "a" * 4097, "loging": "true"}, settings)
    assert (
        denial.value.problems[0] == f"entourage.dev/wait-for: {'a' * 77 + '...'!r}: longer than 4096 characters"
        and len(denial.value.problems) == 2
    )
    with pytest.raises(PodDenied) as denial:
        parse_annotations({"wait-for": "a" * 4096}, settings)
    assert denial.value.problems == [f"entourage.dev/wait-for: {'a' * 77 + '...'!r}: expected host:port"]


def test_every_problem_is_reported_after_a_value_that_is_not_a_string_or_after_our_status(settings: Settings) -> None:
    with pytest.raises(PodDenied) as denial:
        parse_annotations({"logging": 3, "loging": "true"}, settings)
    assert len(denial.value.problems) == 2
    with pytest.raises(PodDenied) as denial:
        parse_annotations({"status": "{}", "loging": "true"}, settings)
    assert denial.value.problems == ["entourage.dev/loging: 'true': unknown annotation; did you mean entourage.dev/logging?"]


def test_a_list_may_be_as_long_as_its_limit(settings: Settings) -> None:
    paths = ",".join(f"/p{i}" for i in range(settings.limits.max_logging_paths))
    assert len(parse_annotations({"logging": "true", "logging-paths": paths}, settings).logging_paths) == 8


def test_routes_and_targets_parse_into_their_parts() -> None:
    route = parse_route("8443=tls://[fd00::1]:443")
    assert (route.local_port, route.host, route.port, route.tls, route.upstream) == (8443, "fd00::1", 443, True, "[fd00::1]:443")
    assert parse_route("redis:6379").local_port == 6379
    assert parse_wait_target("http://api:8080?ready").target == "http://api:8080/?ready"
    assert parse_wait_target("http://api").target == "http://api/"
    assert parse_wait_target("DB.example:5432").target == "db.example:5432"
    assert parse_wait_target("DB.example:5432") == WaitTarget("tcp", "db.example:5432", "db.example")
    assert parse_wait_target("dns://My-DB") == WaitTarget("dns", "my-db", "my-db")
    assert parse_wait_target("http://[FD00::1]/healthz") == WaitTarget("http", "http://[fd00::1]/healthz", "fd00::1")
    assert parse_wait_target("https://[::1]?ready") == WaitTarget("https", "https://[::1]/?ready", "::1")
    assert parse_wait_target("http://api:8080/go?to=http://x") == WaitTarget("http", "http://api:8080/go?to=http://x", "api")


@pytest.mark.parametrize(
    ("own", "warnings"),
    [
        ({"logging-container": "app"}, ["entourage.dev/logging-container has no effect without entourage.dev/logging"]),
        ({"ambassador-cpu-limit": "1"}, ["entourage.dev/ambassador-* resources have no effect: no ambassador container is injected"]),
        ({"adapter-memory-limit": "1Gi"}, ["entourage.dev/adapter-* resources have no effect: no adapter container is injected"]),
        ({"ambassador": "redis:6379", "ambassador.socat.ca-file": "/ca.pem", "ambassador-cpu-limit": "1"}, []),
        ({"adapter": "nginx-prometheus", "adapter.nginx-prometheus.port": "9999", "adapter-cpu-limit": "1"}, []),
        ({"logging": "fluent-bit", "logging.tail.x": "1"}, None),
        ({"ambassador.socat.ca-file": "/ca.pem"}, ["entourage.dev/ambassador.socat.* has no effect: that profile is not used"]),
    ],
)
def test_a_valid_key_without_effect_gets_a_warning_naming_it(settings: Settings, own: dict[str, str], warnings: list[str] | None) -> None:
    if warnings is None:  # a parameter the profile does not declare is an unknown key
        with pytest.raises(PodDenied, match="unknown annotation"):
            parse_annotations(own, settings)
        return
    assert list(parse_annotations(own, settings).warnings) == warnings


def test_keys_that_have_no_effect_get_warnings_not_denials(settings: Settings) -> None:
    request = parse_annotations(
        {"logging-paths": "/x", "wait-for-timeout": "1m", "adapter-cpu-limit": "1", "adapter.nginx-prometheus.port": "9999"}, settings
    )
    assert len(request.warnings) == 4 and not request.wants_anything


def test_every_documented_key_is_known_to_the_parser(settings: Settings) -> None:
    for key, spec in KEYS.items():
        if spec.example and key != "status":
            parse_annotations({key: spec.example}, settings)


@pytest.mark.parametrize(
    ("own", "message"),
    [
        ({"inject": "no"}, """entourage.dev/inject: 'no': expected "false" (or "true", which changes nothing)"""),
        ({"adapter": "a,b,c,d,e"}, "entourage.dev/adapter: 'a,b,c,d,e': at most 4 adapters are allowed, got 5"),
        (
            {"adapter": "statsd-prometheus,statsd-prometheus"},
            "entourage.dev/adapter: 'statsd-prometheus,statsd-prometheus': the same adapter is listed twice",
        ),
        (
            {"logging-paths": ",".join(f"/p{i}" for i in range(9))},
            "entourage.dev/logging-paths: '/p0,/p1,/p2,/p3,/p4,/p5,/p6,/p7,/p8': at most 8 paths are allowed, got 9",
        ),
        ({"logging-paths": "/a,/a"}, "entourage.dev/logging-paths: '/a,/a': the same path is listed twice"),
        (
            {"logging-paths": "/a,/a b"},
            "entourage.dev/logging-paths: '/a,/a b': '/a b': expected an absolute directory such as /var/log/app (letters, digits and ._-)",
        ),
        ({"wait-for": "db:1,db:1"}, "entourage.dev/wait-for: 'db:1,db:1': the same target is listed twice"),
        ({"inj": "false"}, "entourage.dev/inj: 'false': unknown annotation; not a key Entourage knows"),
        ({"adapter.nope.port": "1"}, "entourage.dev/adapter.nope.port: '1': unknown annotation; not a key Entourage knows"),
        (
            {"adapter.nginx-prometheus": "1"},
            "entourage.dev/adapter.nginx-prometheus: '1': unknown annotation; did you mean entourage.dev/adapter.nginx-prometheus.port?",
        ),
        ({"logging": 3}, "entourage.dev/logging: annotation values are strings, got a number"),
        ({"wait-for": "db:5432,tcp://db:5432"}, "entourage.dev/wait-for: 'db:5432,tcp://db:5432': the same target is listed twice"),
        (
            {"ambassador": "http://db:80"},
            "entourage.dev/ambassador: 'http://db:80': the only upstream scheme is tls:// (plain TCP has none)",
        ),
        (
            {"ambassador": "1=2=db:5432"},
            "entourage.dev/ambassador: '1=2=db:5432': expected a DNS name (letters, digits, '-' and '.') or an IP address",
        ),
        ({"wait-for": "ftp://db:21"}, "entourage.dev/wait-for: 'ftp://db:21': expected tcp://, http://, https:// or dns:// (or host:port)"),
        ({"wait-for": "http://u@db/x"}, "entourage.dev/wait-for: 'http://u@db/x': credentials in URLs are not allowed"),
        (
            {"wait-for": "http://db?a?b"},
            "entourage.dev/wait-for: 'http://db?a?b': expected an absolute URL path such as /healthz (letters, digits and ._~%/:@=+-)",
        ),
        ({"wait-for": "http:///x"}, "entourage.dev/wait-for: 'http:///x': expected a host name or IP address, got an empty string"),
    ],
    ids=[
        "inject",
        "adapters-limit",
        "adapters-twice",
        "paths-limit",
        "paths-twice",
        "one-path-of-two",
        "targets-twice",
        "no-suggestion",
        "unknown-profile",
        "no-param",
        "not-a-string",
        "same-target-normalised",
        "route-scheme",
        "route-two-equals",
        "target-scheme",
        "credentials",
        "two-queries",
        "no-authority",
    ],
)
def test_messages_name_the_key_the_value_and_what_is_expected_word_for_word(
    settings: Settings, own: dict[str, object], message: str
) -> None:
    with pytest.raises(PodDenied) as denial:
        parse_annotations(own, settings)
    assert denial.value.problems == [message]


def test_values_are_shown_whole_up_to_80_characters_and_cut_after_77_beyond() -> None:
    settings = Settings()  # no profiles at all: every adapter name is unknown
    for length in (80, 81):
        value = "a" * (length - 1) + "b"
        with pytest.raises(PodDenied) as denial:
            parse_annotations({"adapter": value}, settings)
        shown = repr(value) if length == 80 else repr(value[:77] + "...")
        assert denial.value.problems == [f"entourage.dev/adapter: {shown}: no adapter profile {value!r}; known: none"]
