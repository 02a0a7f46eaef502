"""The grammars of values that reach containers (webhook/engine/grammar.py), stated positively.

Each value kind has a documented character set (README, "Grammar details"); every character
outside it is denied wherever it is slipped into a valid value: by the grammar function, by a
profile parameter of that type, and by every annotation whose value is of that kind. The
characters are not listed by hand: the ASCII ones are the complement of the set, all of them,
and the rest of Unicode is drawn by hypothesis (``st.characters`` excluding the set). Then the
edges of each grammar, one behaviour per test.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.engine import grammar
from webhook.engine.annotations import KEYS, STATUS, parse_annotations
from webhook.engine.quantity import parse_quantity
from webhook.engine.settings import ANNOTATION_KINDS, PARAM_TYPES, Param, Settings, load_settings
from webhook.errors import PodDenied

SETTINGS = load_settings(None, environ={})

# The documented character sets (README, "Grammar details"), each stated once.
ALNUM = string.ascii_letters + string.digits
HOST = ALNUM + "-." + ":"  # DNS names; IPv4 and IPv6 addresses (bare, as parse_host takes them)
PORT = string.digits
URL_PATH = ALNUM + "._~%/:@=+-" + "?"  # and one `?` before the query, of the same characters
DIRECTORY = ALNUM + "._-" + "/"
DURATION = string.digits + "hms"
DNS_LABEL = string.ascii_lowercase + string.digits + "-"
QUANTITY = string.digits + ".+-" + "eE" + "mkMGTPEi"
WORD = string.ascii_lowercase  # "true", "false"
LIST = ", "  # items are separated by commas; blanks around a comma are tolerated

GRAMMARS = {
    "host": (grammar.parse_host, HOST, ["db.prod.svc.cluster.local", "DB.example.", "10.0.0.1", "fd00::1"]),
    "port": (grammar.parse_port, PORT, ["1", "8080", "65535"]),
    "URL path": (grammar.parse_url_path, URL_PATH, ["/", "/healthz", "/api/v1/status?full=1"]),
    "directory": (grammar.parse_directory, DIRECTORY, ["/var/log/app", "/a_b/c-d/e.f"]),
    "duration": (grammar.parse_duration, DURATION, ["0", "90s", "1h30m"]),
    "DNS label": (grammar.parse_dns_label, DNS_LABEL, ["app", "my-db-1"]),
    "quantity": (parse_quantity, QUANTITY, ["50m", "128Mi", "1.5", "1e3"]),
}
PARAM_GRAMMARS = {
    "port": (PORT, ["9113"]),
    "host": (HOST, ["fluentd.logging.svc", "10.1.2.3"]),
    "path": (URL_PATH, ["/stub_status", "/etc/ssl/certs/ca-certificates.crt"]),
    "name": (DNS_LABEL, ["metrics"]),
    "duration": (DURATION, ["5m"]),
    "int": (string.digits, ["30"]),
    "enum": ("", ["json", "text"]),  # nothing may be added to a choice
}
ANNOTATION_GRAMMARS = {
    "inject": (WORD, ["false", "true"]),
    "logging": (DNS_LABEL, ["true", "tail", "fluent-bit"]),  # "true", "false" or a profile name
    "logging-paths": (DIRECTORY + LIST, ["/var/log/app", "/var/log/app, /data/audit"]),
    "logging-container": (DNS_LABEL, ["app"]),
    "ambassador": (HOST + "=/[]" + LIST, ["6379=redis.cache:6379", "tls://api.example.com:443", "7000=[2001:db8::1]:7000,10.0.0.1:5432"]),
    "wait-for": (
        HOST + URL_PATH + "[]" + LIST,
        ["tcp://db:5432,dns://my-db-service", "http://api:8080/healthz?x=1", "https://[::1]:8443/ready", "db:5432"],
    ),
    "wait-for-timeout": (DURATION, ["5m", "1h30m", "0"]),
    "adapter": (DNS_LABEL + LIST, ["nginx-prometheus", "nginx-prometheus, statsd-prometheus"]),
    "native-sidecars": (WORD, ["true", "false"]),
    "ambassadors-first": (WORD, ["true", "false"]),
    **{key: (QUANTITY, [spec.example]) for key, spec in KEYS.items() if spec.resource is not None},
    **{
        # an enum's examples are its own values
        f"{ANNOTATION_KINDS[kind]}.{name}.{param}": ("", list(spec.values)) if spec.type == "enum" else PARAM_GRAMMARS[spec.type]
        for kind, profiles in SETTINGS.profiles.items()
        for name, profile in profiles.items()
        for param, spec in profile.params.items()
    },
}


# What each grammar tells the user, word for word (the annotation's key and value are added by
# the caller).
NOT_A_HOST = "expected a DNS name (letters, digits, '-' and '.') or an IP address"
NOT_A_PORT = "expected a port number from 1 to 65535"
NOT_A_URL_PATH = "expected an absolute URL path such as /healthz (letters, digits and ._~%/:@=+-)"
NOT_A_DIRECTORY = "expected an absolute directory such as /var/log/app (letters, digits and ._-)"
NOT_A_CLEAN_DIRECTORY = "expected a clean absolute directory without '.' or '..' components"
NOT_A_DURATION = "expected a duration such as 90s, 5m, 1h30m, or 0 for no limit"
NOT_A_LABEL = "expected a DNS-1123 label (lower-case letters, digits and '-', at most 63)"
ZONE_ID = "IPv6 zone identifiers (%...) are not allowed"


def denied_saying(message: str) -> pytest.RaisesExc[ValueError]:
    """The grammar refuses the value with exactly this message."""
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def slipped_in(value: str, char: str, at: int) -> str:
    return value[:at] + char + value[at:]


def outside(allowed: str) -> list[str]:
    """Every ASCII character not in ``allowed``: computed, so none is forgotten."""
    return [char for char in map(chr, range(128)) if char not in allowed]


def everywhere(allowed: str, examples: list[str]) -> list[str]:
    """Each valid example with each ASCII character outside the set slipped in at each place."""
    return [slipped_in(value, char, at) for value in examples for char in outside(allowed) for at in range(len(value) + 1)]


@st.composite
def unicode_slipped_in(draw: st.DrawFn, allowed: str, examples: list[str]) -> str:
    value = draw(st.sampled_from(examples))
    return slipped_in(value, draw(st.characters(exclude_characters=allowed)), draw(st.integers(0, len(value))))


def denied_by_annotation(key: str, value: str, settings_: Settings = SETTINGS) -> bool:
    """True when the value is denied with exactly one message, naming this key."""
    try:
        parse_annotations({key: value}, settings_)
    except PodDenied as denial:
        return len(denial.problems) == 1 and denial.problems[0].startswith(f"{settings_.annotation_prefix}/{key}: ")
    return False


def test_the_tables_cover_every_annotation_key_and_parameter_type_with_valid_examples() -> None:
    assert set(ANNOTATION_GRAMMARS) >= set(KEYS) - {STATUS}
    assert set(PARAM_GRAMMARS) == set(PARAM_TYPES)
    for parse, _, examples in GRAMMARS.values():
        for value in examples:
            parse(value)
    for key, (_, examples) in ANNOTATION_GRAMMARS.items():
        for value in examples:
            parse_annotations({key: value}, SETTINGS)


@pytest.mark.parametrize("kind", sorted(GRAMMARS))
def test_every_ascii_character_outside_a_grammars_set_is_denied_anywhere_in_a_value(kind: str) -> None:
    parse, allowed, examples = GRAMMARS[kind]
    accepted = []
    for value in everywhere(allowed, examples):
        try:
            parse(value)
        except ValueError:
            continue
        accepted.append(value)
    assert accepted == []


@pytest.mark.parametrize("kind", sorted(GRAMMARS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_other_character_outside_a_grammars_set_is_denied_anywhere_in_a_value(kind: str, data: st.DataObject) -> None:
    parse, allowed, examples = GRAMMARS[kind]
    value = data.draw(unicode_slipped_in(allowed, examples))
    with pytest.raises(ValueError):  # noqa: PT011 - each grammar says what it expected in its own words
        parse(value)


def param(kind: str) -> Param:
    return Param(name="p", type=kind, default=PARAM_GRAMMARS[kind][1][0], values=("json", "text"))


@pytest.mark.parametrize("kind", sorted(PARAM_GRAMMARS))
def test_every_ascii_character_outside_a_parameter_types_set_is_denied_anywhere_in_a_value(kind: str) -> None:
    allowed, examples = PARAM_GRAMMARS[kind]
    accepted = []
    for value in everywhere(allowed, examples):
        try:
            param(kind).parse(value)
        except ValueError:
            continue
        accepted.append(value)
    assert accepted == []


@pytest.mark.parametrize("kind", sorted(PARAM_GRAMMARS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_other_character_outside_a_parameter_types_set_is_denied_anywhere_in_a_value(kind: str, data: st.DataObject) -> None:
    allowed, examples = PARAM_GRAMMARS[kind]
    with pytest.raises(ValueError):  # noqa: PT011
        param(kind).parse(data.draw(unicode_slipped_in(allowed, examples)))


@pytest.mark.parametrize("key", sorted(ANNOTATION_GRAMMARS))
def test_every_ascii_character_outside_an_annotations_set_is_denied_naming_the_key(key: str) -> None:
    allowed, examples = ANNOTATION_GRAMMARS[key]
    assert [value for value in everywhere(allowed, examples) if not denied_by_annotation(key, value)] == []


@pytest.mark.parametrize("key", sorted(ANNOTATION_GRAMMARS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_other_character_outside_an_annotations_set_is_denied_naming_the_key(key: str, data: st.DataObject) -> None:
    allowed, examples = ANNOTATION_GRAMMARS[key]
    value = data.draw(unicode_slipped_in(allowed, examples))
    assert denied_by_annotation(key, value), value


# ---------------------------------------------------------------------------------------------
# Hosts


@pytest.mark.parametrize("value", ["my_db", "db_1.prod.svc", "_db", "db.prod_"])
def test_a_host_with_an_underscore_is_denied(value: str) -> None:
    with denied_saying(NOT_A_HOST):
        grammar.parse_host(value)
    assert denied_by_annotation("wait-for", f"{value}:5432") and denied_by_annotation("ambassador", f"6379={value}:6379")


def test_a_host_is_lower_cased_and_an_address_normalised() -> None:
    assert grammar.parse_host("DB.Example.") == "db.example."
    assert grammar.parse_host("FD00:0::1") == "fd00::1"
    assert grammar.parse_host("010.0.0.1".lstrip("0")) == "10.0.0.1"


def test_a_host_name_may_be_253_characters_and_its_labels_63() -> None:
    label = "a" * 63
    longest = ".".join([label, label, label, "b" * 61])  # 253 characters
    assert grammar.parse_host(longest) == longest and grammar.parse_host(longest + ".") == longest + "."
    for too_long in (longest + "b", "a" * 64 + ".example"):
        with denied_saying(NOT_A_HOST):
            grammar.parse_host(too_long)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "expected a host name or IP address, got an empty string"),
        ("-db", NOT_A_HOST),
        ("db-", NOT_A_HOST),
        ("db..prod", NOT_A_HOST),
        (".db", NOT_A_HOST),
        ("1.2.3.4.5:6", NOT_A_HOST),
        ("fe80::1%eth0", ZONE_ID),
        ("db%1", ZONE_ID),
    ],
)
def test_hosts_outside_the_grammar_are_denied_saying_what_was_expected(value: str, message: str) -> None:
    with denied_saying(message):
        grammar.parse_host(value)


# ---------------------------------------------------------------------------------------------
# Ports and host:port


@pytest.mark.parametrize(("text", "port"), [("1", 1), ("65535", 65535), ("08080", 8080)])
def test_ports_from_1_to_65535_are_accepted_as_numbers(text: str, port: int) -> None:
    assert grammar.parse_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", "99999", "000080", "", "-1", "+80", "8o", "²"])
def test_other_ports_are_denied(text: str) -> None:
    with denied_saying(NOT_A_PORT):
        grammar.parse_port(text)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("db:5432", ("db", 5432)), ("DB.Prod:1", ("db.prod", 1)), ("[fd00::1]:443", ("fd00::1", 443)), ("10.0.0.1:80", ("10.0.0.1", 80))],
)
def test_host_port_splits_at_the_last_colon_and_brackets_ipv6(text: str, parsed: tuple[str, int]) -> None:
    assert grammar.parse_host_port(text) == parsed
    assert grammar.format_host_port(*parsed) == (text.lower() if "[" not in text else text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db", "expected host:port"),
        (":5432", "expected host:port"),
        ("::1:5432", "an IPv6 address must be written in brackets: [::1]:port"),
        ("[fd00::1:443", "expected [IPv6-address]:port"),
        ("[fd00::1]443", "expected [IPv6-address]:port"),
        ("[fe80::1%eth0]:80", ZONE_ID),
        ("[db]:80", "expected an IPv6 address inside [ ]"),
        ("[10.0.0.1]:80", "expected an IPv6 address inside [ ]"),
        ("[fd00::1]:0", NOT_A_PORT),
        ("db_1:80", NOT_A_HOST),
    ],
)
def test_host_port_errors_say_what_was_expected(text: str, message: str) -> None:
    with denied_saying(message):
        grammar.parse_host_port(text)


def test_a_bracketed_ipv6_address_without_a_port_is_an_http_authority() -> None:
    assert grammar.parse_bracketed_ipv6("[FD00::1]") == "fd00::1"
    for text, message in [
        ("fd00::1", "expected [IPv6-address] or [IPv6-address]:port"),
        ("[fe80::1%eth0]", "expected [IPv6-address] or [IPv6-address]:port"),
        ("[fd00::1", "expected [IPv6-address] or [IPv6-address]:port"),
        ("[db]", "expected an IPv6 address inside [ ]"),
    ]:
        with denied_saying(message):
            grammar.parse_bracketed_ipv6(text)


# ---------------------------------------------------------------------------------------------
# URL paths and directories


@pytest.mark.parametrize("value", ["/health$", "/$(reboot)", "/a$b?c=1", "/ok?x=$HOME"])
def test_a_url_path_with_a_dollar_sign_is_denied(value: str) -> None:
    with denied_saying(NOT_A_URL_PATH):
        grammar.parse_url_path(value)
    assert denied_by_annotation("wait-for", f"http://api:8080{value}")


@pytest.mark.parametrize("value", ["/..", "/a/..", "/a/../b", "/../a", "/a/..?x=1"])
def test_a_url_path_with_a_dot_dot_segment_is_denied(value: str) -> None:
    with denied_saying(NOT_A_URL_PATH):
        grammar.parse_url_path(value)
    assert denied_by_annotation("wait-for", f"http://api{value}")


@pytest.mark.parametrize("value", ["/a..", "/..a", "/a/..b/c", "/.well-known/ready", "/x?a=..", "/", "/a/b/"])
def test_dots_that_are_not_a_parent_segment_are_fine_in_a_url_path(value: str) -> None:
    assert grammar.parse_url_path(value) == value


def test_a_url_path_may_be_512_characters_and_has_one_query() -> None:
    longest = "/" + "a" * 511
    assert grammar.parse_url_path(longest) == longest
    for bad in (longest + "a", "healthz", "/a?b?c", "?x=1", ""):
        with denied_saying(NOT_A_URL_PATH):
            grammar.parse_url_path(bad)


@pytest.mark.parametrize("value", ["/var/log/.", "/var/./log", "/..", "/var/log/.."])
def test_a_directory_with_a_dot_or_dot_dot_component_is_denied(value: str) -> None:
    with denied_saying(NOT_A_CLEAN_DIRECTORY):
        grammar.parse_directory(value)


@pytest.mark.parametrize("value", ["var/log", "/var/log/", "//var/log", "/var//log", "/", ""])
def test_a_directory_that_is_relative_or_not_clean_is_denied(value: str) -> None:
    with denied_saying(NOT_A_DIRECTORY):
        grammar.parse_directory(value)


def test_a_directory_may_be_255_characters() -> None:
    longest = "/" + "d" * 254
    assert grammar.parse_directory(longest) == longest and grammar.parse_directory("/a/..b/c.") == "/a/..b/c."
    with denied_saying(NOT_A_DIRECTORY):
        grammar.parse_directory(longest + "d")


# ---------------------------------------------------------------------------------------------
# Durations, booleans, labels, lists


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h1m1s", 3661),
        ("0s", 0),
        ("24h", 86400),
        ("86400s", 86400),
        ("23h59m60s", 86400),
    ],
)
def test_durations_are_hours_minutes_and_seconds_in_that_order_in_at_most_16_characters(text: str, seconds: int) -> None:
    assert grammar.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["86401s", "24h0m1s", "25h", "999999999999999s"])
def test_durations_longer_than_a_day_are_denied_naming_the_limit(text: str) -> None:
    with denied_saying("at most 24h (86400s); 0 means no limit"):
        grammar.parse_duration(text)


@pytest.mark.parametrize("text", ["", "h", "1d", "5", "00", "1m1h", "1h 30m", "1.5h", "9999999999999999s", "-1s"])
def test_other_durations_are_denied(text: str) -> None:
    with denied_saying(NOT_A_DURATION):
        grammar.parse_duration(text)


def test_booleans_are_exactly_true_or_false() -> None:
    assert grammar.parse_bool("true") is True and grammar.parse_bool("false") is False
    for text in ("True", "yes", "1", "", " true"):
        with denied_saying('expected "true" or "false"'):
            grammar.parse_bool(text)


def test_a_dns_label_is_lower_case_and_at_most_63_characters() -> None:
    assert grammar.parse_dns_label("a") == "a" and grammar.parse_dns_label("a" * 63) == "a" * 63
    for text in ("a" * 64, "App", "-a", "a-", "a.b", ""):
        with denied_saying(NOT_A_LABEL):
            grammar.parse_dns_label(text)


def test_list_items_are_split_at_commas_and_only_spaces_around_them_are_dropped() -> None:
    assert grammar.split_list("a, b ,c") == ["a", "b", "c"]
    assert grammar.split_list("a") == ["a"]
    assert grammar.split_list("a\t,b") == ["a\t", "b"]  # a tab is kept, and then denied by the item's grammar
    for text in ("", "a,", ",a", "a,,b", "a, ,b"):
        with denied_saying("expected a comma-separated list without empty items"):
            grammar.split_list(text)


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("port", "08080", "8080"),
        ("host", "DB.Example", "db.example"),
        ("path", "/stub_status?x=1", "/stub_status?x=1"),
        ("name", "metrics-1", "metrics-1"),
        ("duration", "1h1m", "3660"),
        ("int", "007", "7"),
        ("int", "123456789", "123456789"),
        ("enum", "text", "text"),
    ],
)
def test_a_parameter_value_is_substituted_normalised_by_its_type(kind: str, text: str, value: str) -> None:
    assert param(kind).parse(text) == value


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("int", "1234567890", "expected a non-negative whole number"),
        ("int", "-1", "expected a non-negative whole number"),
        ("int", "٣", "expected a non-negative whole number"),
        ("enum", "xml", "expected one of json, text"),
        ("name", "Metrics", NOT_A_LABEL),
        ("duration", "90", NOT_A_DURATION),
    ],
)
def test_a_parameter_value_outside_its_type_is_denied_saying_what_was_expected(kind: str, text: str, message: str) -> None:
    with denied_saying(message):
        param(kind).parse(text)


def test_host_port_takes_the_first_closing_bracket() -> None:
    with denied_saying("expected [IPv6-address]:port"):
        grammar.parse_host_port("[fd00::1]]:80")


# ---------------------------------------------------------------------------------------------
# Log directories, mount paths and object names


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/var/log/app", "/var/log/app"),
        ("/var/log/app/", "/var/log/app"),
        ("/srv/LOGX", "/srv/LOGX"),
        ("/data//", "/data"),
        ("/varnish", "/varnish"),
    ],
)
def test_a_log_directory_drops_trailing_slashes_only(text: str, path: str) -> None:
    assert grammar.parse_log_directory(text) == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/", "/ holds the whole filesystem: a log volume is never mounted there; use a directory of its own such as /var/log/app"),
        (
            "/var/",
            "/var holds /var/lib, /var/run, /var/cache and more: a log volume is never mounted there; use a directory of its own such as /var/log/app",
        ),
        (
            "/etc",
            "/etc holds configuration (and the kubelet's hosts and resolv.conf): a log volume is never mounted there; use a directory of its own such as /var/log/app",
        ),
        (
            "/var/run/app",
            "/var/run/app is under /var/run, which holds runtime state and the service-account token (/var/run/secrets): a log volume is never mounted there; use a directory of its own such as /var/log/app",
        ),
        (
            "/lib64/x",
            "/lib64/x is under /lib64, which holds shared libraries: a log volume is never mounted there; use a directory of its own such as /var/log/app",
        ),
        ("/var/log/../run", NOT_A_CLEAN_DIRECTORY),
    ],
)
def test_a_log_directory_is_never_a_system_directory(text: str, message: str) -> None:
    with denied_saying(message):
        grammar.parse_log_directory(text)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/var/log/app", "/var/log/app"), ("/var/log/app/", "/var/log/app"), ("/var//log", "/var/log"), ("/var/./log", "/var/log"),
        ("/var/log/../run", "/var/run"), ("//Xa/", "/Xa"), ("/Xa/", "/Xa"), ("var/log", "/var/log"), ("/", "/"), ("/.hidden", "/.hidden"),
    ],
)  # fmt: skip
def test_a_mount_path_is_compared_as_the_runtime_resolves_it(text: str, path: str) -> None:
    assert grammar.normalise_path(text) == path


@pytest.mark.parametrize(
    ("text", "prefix", "valid"),
    [
        ("web-0", False, True), ("a", False, True), ("a.b-c", False, True), ("a" * 253, False, True),
        ("", False, False), ("a" * 254, False, False), ("Web", False, False), ("-a", False, False), ("a_b", False, False),
        ("web-", False, False), ("web-", True, True), ("-", True, False), ("web--", True, False), ("a" * 252 + "-", True, True),
        ("a" * 253 + "-", True, False), ("ns\n", False, False), (7, False, False), (None, True, False), ("a-", True, True),
    ],
)  # fmt: skip
def test_only_object_names_pass_is_object_name(text: object, prefix: bool, valid: bool) -> None:
    assert grammar.is_object_name(text, prefix=prefix) is valid


def test_an_object_name_is_a_whole_name_unless_a_prefix_is_asked_for() -> None:
    assert grammar.is_object_name("web-0") and not grammar.is_object_name("web-")
