"""The configuration file: built-ins merged with the user's profiles, everything validated at load."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import reference_pod
from tests.podcheck import assert_valid_injected_pod
from webhook.engine.inject import inject_pod
from webhook.engine.profiles.logging import AGENT_LOG_ROOT
from webhook.engine.settings import (
    RESTRICTED_SECURITY_CONTEXT,
    Defaults,
    Limits,
    build_settings,
    load_settings,
    parse_settings,
)
from webhook.errors import ConfigError

ADAPTER = """
profiles:
  adapter:
    my-exporter:
      image: registry.example/exporter:1.2.3
      command: [/exporter]
      args: ["--listen=:{port}"]
      ports: [{name: metrics, containerPort: "{port}"}]
      params:
        port: {type: port, default: "9100"}
      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 50m, memory: 32Mi}}
"""


def test_no_file_means_the_built_in_catalog() -> None:
    settings = load_settings(None, environ={})
    assert set(settings.profiles["logging"]) == {"tail", "fluent-bit"}
    assert set(settings.profiles["adapter"]) == {"nginx-prometheus", "statsd-prometheus"}
    assert settings.native_sidecars == "auto" and settings.on_error == "deny"


def test_the_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("nativeSidecars: true\n")
    assert load_settings(None, environ={"ENTOURAGE_CONFIG": str(path)}).native_sidecars == "true"


def test_a_config_only_adapter_is_added_and_built_ins_stay() -> None:
    settings = parse_settings(ADAPTER)
    assert settings.profiles["adapter"]["my-exporter"].params["port"].default == "9100"
    assert "nginx-prometheus" in settings.profiles["adapter"]


def test_a_built_in_profile_can_be_pointed_at_a_mirror() -> None:
    settings = parse_settings("profiles: {logging: {tail: {image: 'mirror.example/busybox:1.36.1'}}}")
    tail = settings.profiles["logging"]["tail"]
    assert tail.image == "mirror.example/busybox:1.36.1" and tail.command[0] == "/bin/sh"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nativeSidecar: true", "unknown key 'nativeSidecar' (did you mean 'nativeSidecars'?)"),
        ("onError: maybe", "onError: expected deny or allow"),
        ("validation: strict", "validation: expected deny, warn or off, got 'strict'"),
        ("annotationPrefix: 'Not A Prefix'", "annotationPrefix: expected a DNS subdomain"),
        ("limits: {maxAmbassadorRoutes: 1000}", "limits.maxAmbassadorRoutes: expected a whole number from 1 to 64"),
        ("limits: {maxMemory: lots}", "limits.maxMemory: 'lots' is not a Kubernetes quantity"),
        ("defaults: {logging: vector}", "defaults.logging: no logging profile named 'vector'"),
        ("defaults: {waitForTimeout: forever}", "defaults.waitForTimeout: 'forever': expected a duration"),
        ("profiles: {sidecar: {}}", "profiles: unknown key 'sidecar'"),
        (ADAPTER.replace("exporter:1.2.3", "exporter:latest"), "pinned tag or digest (not 'latest')"),
        (ADAPTER.replace("exporter:1.2.3", "exporter"), "pinned tag or digest"),
        (ADAPTER.replace("--listen=:{port}", "--listen=:{prot}"), "unknown placeholder {prot} (did you mean 'port'?)"),
        (ADAPTER.replace("cpu: 50m", "cpu: 5m"), "requests.cpu 10m is above limits.cpu 5m"),
        (ADAPTER.replace("limits: {cpu: 50m, memory: 32Mi}", "limits: {cpu: 50m}"), "limits.memory: required"),
        (ADAPTER.replace('default: "9100"', 'default: "x"'), "params.port.default: 'x': expected a port number"),
        (ADAPTER.replace("type: port", "type: number"), "params.port.type: expected one of port"),
        (ADAPTER + "      securityContext: {privileged: true}\n", "'privileged' cannot be set"),
        (ADAPTER + "      securityContext: {runAsUser: 0}\n", "runAsUser: expected a non-zero user or group id"),
        (ADAPTER + "      securityContext: {capabilities: {add: [NET_ADMIN]}}\n", "only NET_BIND_SERVICE is allowed"),
        (ADAPTER + "      tlsArgs: [x]\n", "only ambassadors have tlsArgs"),
        (
            "profiles: {ambassador: {envoy: {image: 'envoy:1.31.0', command: [/usr/local/bin/envoy], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}}}}",
            "tlsArgs: required for an ambassador",
        ),
        (
            ADAPTER.replace("command: [/exporter]", "command: [exporter]"),
            "profiles.adapter.my-exporter.command[0]: 'exporter': expected an absolute path",
        ),
        (
            "profiles: {ambassador: {socat: {readyCommand: [socat, -u, 'OPEN:/dev/null', 'TCP:127.0.0.1:{local-port}']}}}",
            "profiles.ambassador.socat.readyCommand[0]: 'socat': expected an absolute path",
        ),
        (
            ADAPTER.replace("type: port", "type: int"),
            "profiles.adapter.my-exporter.ports[0].containerPort: '{port}' (metrics) is bound to {port}, of type int; expected a parameter of type port",
        ),
        (
            ADAPTER.replace('containerPort: "{port}"', 'containerPort: "9{port}"'),
            "profiles.adapter.my-exporter.ports[0].containerPort: '9{port}' (metrics): expected a port number or a {parameter} of type port",
        ),
        (
            "profiles: {logging: {tail: {args: ['--dirs={paths}']}}}",
            "profiles.logging.tail.args[0]: '--dirs={paths}': {paths} expands into one argument per directory, so it must be a whole item of args",
        ),
        (
            "profiles: {logging: {tail: {env: [{name: DIRS, value: '{path-map}'}]}}}",
            "profiles.logging.tail.env[0]: '{path-map}': {path-map} expands",
        ),
        (
            "profiles: {logging: {tail: {params: {paths: {type: name, default: x}}}}}",
            "profiles.logging.tail.params.paths: the name of the engine's placeholder {paths}",
        ),
        (
            "defaults: {loggingPaths: [/var/log/app, /usr/local/bin]}",
            "defaults.loggingPaths: '/usr/local/bin': /usr/local/bin is under /usr",
        ),
        (
            "defaults: {loggingPaths: [/var/log/app, /var/log/app/]}",
            "defaults.loggingPaths: ['/var/log/app', '/var/log/app']: each directory once",
        ),
        ("defaults: {waitForTimeout: 25h}", "defaults.waitForTimeout: '25h': at most 24h"),
        ("[1, 2]", "expected a mapping"),
        ("key: [unclosed", "not valid YAML"),
    ],
)
def test_an_invalid_configuration_is_refused_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text, source="config.yaml")
    assert str(error.value).startswith("config.yaml: ") and message in str(error.value)


def test_a_profile_security_context_starts_restricted_and_may_only_tighten() -> None:
    settings = parse_settings(ADAPTER + "      securityContext: {runAsUser: 1000, readOnlyRootFilesystem: false}\n")
    context = settings.profiles["adapter"]["my-exporter"].security_context
    assert context["runAsUser"] == 1000 and context["readOnlyRootFilesystem"] is False
    for key in ("allowPrivilegeEscalation", "capabilities", "runAsNonRoot", "seccompProfile", "privileged"):
        assert context[key] == RESTRICTED_SECURITY_CONTEXT[key]


@pytest.mark.parametrize("capabilities", ["{add: [NET_BIND_SERVICE]}", "{add: []}", "{}"])
def test_a_capabilities_override_still_drops_all(capabilities: str) -> None:
    settings = parse_settings(ADAPTER + f"      securityContext: {{capabilities: {capabilities}}}\n")
    context = settings.profiles["adapter"]["my-exporter"].security_context
    added = ["NET_BIND_SERVICE"] if "NET_BIND_SERVICE" in capabilities else []
    assert context["capabilities"] == {"drop": ["ALL"], **({"add": added} if added else {})}
    pod = reference_pod({"entourage.dev/adapter": "my-exporter"})
    injection = inject_pod(pod, settings)
    assert_valid_injected_pod(injection.pod, injection.components)
    (exporter,) = (c for c in injection.pod["spec"]["containers"] if c["name"] == "entourage-adapter-my-exporter")
    assert exporter["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_a_built_in_profile_override_merges_its_params_by_name() -> None:
    settings = parse_settings(
        "profiles: {adapter: {nginx-prometheus: {params: {port: {type: port, default: '9200'}, scheme: {type: enum, values: [http, https], default: http}}}}}"
    )
    params = settings.profiles["adapter"]["nginx-prometheus"].params
    assert {name: param.default for name, param in params.items()} == {
        "status-port": "8080",
        "status-path": "/stub_status",
        "port": "9200",
        "scheme": "http",
    }
    injection = inject_pod(reference_pod({"entourage.dev/adapter": "nginx-prometheus"}), settings)
    (exporter,) = (c for c in injection.pod["spec"]["containers"] if c["name"] == "entourage-adapter-nginx-prometheus")
    assert exporter["args"] == ["--nginx.scrape-uri=http://127.0.0.1:8080/stub_status", "--web.listen-address=:9200"]


def test_a_built_in_profile_override_replaces_every_other_key_it_sets() -> None:
    settings = parse_settings(
        "profiles: {logging: {tail: {args: ['{path-globs}'], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 2m, memory: 2Mi}}}}}"
    )
    tail = settings.profiles["logging"]["tail"]
    assert tail.args == ("{path-globs}",) and tail.resources == {
        "requests": {"cpu": "1m", "memory": "1Mi"},
        "limits": {"cpu": "2m", "memory": "2Mi"},
    }
    assert tail.image == "busybox:1.36.1" and tail.command[0] == "/bin/sh"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "profiles: {logging: {tail: {resources: {requests: {cpu: 5m, memory: 8Mi}}}}}",
            "profiles.logging.tail.resources.limits.cpu: required",
        ),
        ("profiles: {adapter: {nginx-prometheus: {params: null}}}", "unknown placeholder {status-port}"),
    ],
    ids=["resources-replaced-whole", "params-cleared"],
)
def test_a_built_in_profile_override_replaces_a_key_whole_except_params(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "zzz: 1",
            "configuration: configuration: unknown key 'zzz'; known keys: annotationPrefix, nativeSidecars, onError, validation, runAsUser, imageRegistry, imagePullSecrets, defaults, limits, profiles, policies",
        ),
        (
            "onErrors: deny",
            "configuration: configuration: unknown key 'onErrors' (did you mean 'onError'?); known keys: annotationPrefix, nativeSidecars, onError, validation, runAsUser, imageRegistry, imagePullSecrets, defaults, limits, profiles, policies",
        ),
        ("defaults: {logging: vectr}", "configuration: defaults.logging: no logging profile named 'vectr'"),
        ("defaults: {logging: tial}", "configuration: defaults.logging: no logging profile named 'tial' (did you mean 'tail'?)"),
    ],
)
def test_configuration_errors_suggest_the_nearest_key_only_when_one_is_close(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    assert str(error.value) == message


EVERY_DEFAULT_AND_LIMIT = """
defaults: {logging: fluent-bit, ambassador: envoy, waitFor: curl, waitForTimeout: 90s, loggingPaths: [/srv/a, /srv/b]}
limits:
  {maxAmbassadorRoutes: 1, maxWaitForTargets: 2, maxLoggingPaths: 3, maxAdapters: 64, maxAnnotationKeys: 5, maxContainers: 6,
   maxVolumes: 7, maxVolumeMounts: 4096, maxPorts: 1, maxCpu: 500m, maxMemory: 1Gi}
profiles:
  ambassador:
    envoy:
      image: envoyproxy/envoy:v1.31.0
      command: [/proxy]
      args: ["{local-port}"]
      tlsArgs: ["{local-port}"]
      readyCommand: [/proxy]
      resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
  waitFor:
    curl:
      image: curlimages/curl:8.11.1
      command: [/wait]
      args: ["{target}"]
      resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
"""


def test_every_default_and_limit_takes_effect() -> None:
    settings = parse_settings(EVERY_DEFAULT_AND_LIMIT)
    assert settings.defaults == Defaults(
        logging="fluent-bit", ambassador="envoy", wait_for="curl", wait_for_timeout=90, logging_paths=("/srv/a", "/srv/b")
    )
    assert settings.limits == Limits(
        max_ambassador_routes=1, max_wait_for_targets=2, max_logging_paths=3, max_adapters=64, max_annotation_keys=5, max_containers=6,
        max_volumes=7, max_volume_mounts=4096, max_ports=1, max_cpu=Decimal("0.5"), max_memory=Decimal(2**30), max_cpu_text="500m",
        max_memory_text="1Gi",
    )  # fmt: skip
    assert (Defaults(), Limits()) == (build_settings({}).defaults, build_settings({}).limits)


@pytest.mark.parametrize("value", [1, 64])
def test_a_count_limit_may_be_1_to_64(value: int) -> None:
    for key in ("maxAmbassadorRoutes", "maxWaitForTargets", "maxLoggingPaths", "maxAdapters"):
        parse_settings(f"limits: {{{key}: {value}}}")


@pytest.mark.parametrize("value", ["0", "65", "true", "'8'", "2.5", "-1"])
def test_other_count_limits_are_refused(value: str) -> None:
    for key in ("maxAmbassadorRoutes", "maxWaitForTargets", "maxLoggingPaths", "maxAdapters"):
        with pytest.raises(ConfigError) as error:
            parse_settings(f"limits: {{{key}: {value}}}", source="c.yaml")
        assert str(error.value).startswith(f"c.yaml: limits.{key}: expected a whole number from 1 to 64, got ")


SIZE_LIMITS = ("maxAnnotationKeys", "maxContainers", "maxVolumes", "maxVolumeMounts", "maxPorts")


@pytest.mark.parametrize("value", [1, 4096])
def test_a_size_limit_may_be_1_to_4096(value: int) -> None:
    for key in SIZE_LIMITS:
        parse_settings(f"limits: {{{key}: {value}}}")


@pytest.mark.parametrize("value", ["0", "4097", "true", "'8'", "2.5", "-1"])
def test_other_size_limits_are_refused(value: str) -> None:
    for key in SIZE_LIMITS:
        with pytest.raises(ConfigError) as error:
            parse_settings(f"limits: {{{key}: {value}}}", source="c.yaml")
        assert str(error.value).startswith(f"c.yaml: limits.{key}: expected a whole number from 1 to 4096, got ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "defaults: {logging: tail, lgging: x}",
            "defaults: unknown key 'lgging' (did you mean 'logging'?); known keys: logging, ambassador, waitFor, waitForTimeout, loggingPaths",
        ),
        (
            "limits: {maxCpus: 1}",
            "limits: unknown key 'maxCpus' (did you mean 'maxCpu'?); known keys: maxAmbassadorRoutes, maxWaitForTargets, maxLoggingPaths, maxAdapters, maxAnnotationKeys, maxContainers, maxVolumes, maxVolumeMounts, maxPorts, maxCpu, maxMemory",
        ),
        (
            "defaults: {loggingPaths: [/srv//a]}",
            "defaults.loggingPaths: '/srv//a': expected an absolute directory such as /var/log/app (letters, digits and ._-)",
        ),
        (
            "defaults: {loggingPaths: [/etc/app]}",
            "defaults.loggingPaths: '/etc/app': /etc/app is under /etc, which holds configuration (and the kubelet's hosts and resolv.conf): a log volume is never mounted there; use a directory of its own such as /var/log/app",
        ),
        ("defaults: {loggingPaths: /srv}", "defaults.loggingPaths: expected a list of strings"),
        ("defaults: {waitForTimeout: 120}", "defaults.waitForTimeout: 120: expected a duration such as 90s, 5m, 1h30m, or 0 for no limit"),
        ("limits: {maxCpu: 2 cores}", "limits.maxCpu: '2 cores' is not a Kubernetes quantity (examples: 100m, 0.5, 64Mi, 1Gi)"),
        ("limits: {maxMemory: 1 GB}", "limits.maxMemory: '1 GB' is not a Kubernetes quantity (examples: 100m, 0.5, 64Mi, 1Gi)"),
        ("defaults: {ambassador: envy}", "defaults.ambassador: no ambassador profile named 'envy'"),
        ("defaults: {waitFor: busybx}", "defaults.waitFor: no waitFor profile named 'busybx' (did you mean 'busybox'?)"),
        ("nativeSidecars: sometimes", "nativeSidecars: expected auto, true or false, got 'sometimes'"),
        ("annotationPrefix: " + "a" * 201, "annotationPrefix: expected a DNS subdomain such as entourage.dev, got '" + "a" * 201 + "'"),
        ("annotationPrefix: 7", "annotationPrefix: expected a DNS subdomain such as entourage.dev, got 7"),
        ("profiles: []", "profiles: expected a mapping, got list"),
    ],
)
def test_settings_errors_name_the_setting_and_the_value_word_for_word(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text, source="c.yaml")
    assert str(error.value) == f"c.yaml: {message}"


def test_settings_read_as_documented() -> None:
    settings = parse_settings("annotationPrefix: " + ".".join(["a" * 63] * 3) + "\nnativeSidecars: TRUE\nonError: allow\n")
    assert (settings.annotation_prefix, settings.native_sidecars, settings.on_error) == (".".join(["a" * 63] * 3), "true", "allow")
    assert parse_settings("nativeSidecars: false").native_sidecars == "false"
    assert parse_settings("").annotation_prefix == "entourage.dev" and parse_settings("{}").native_sidecars == "auto"


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_settings(str(tmp_path / "missing.yaml"))


EVERY_PROFILE_KEY = """
profiles:
  adapter:
    full:
      description: Every key a profile may have.
      image: registry.example/exporter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      imagePullPolicy: Always
      command: [/exporter, --flag]
      args: ["--listen=:{port}", "--mode={mode}"]
      env: [{name: LISTEN_ON, value: ":{port}"}, {name: _EMPTY}]
      ports: [{name: metrics, containerPort: "{port}"}, {name: admin, containerPort: 9901}]
      resources:
        requests: {cpu: 10m, memory: 16Mi, ephemeral-storage: 1Mi}
        limits: {cpu: 50m, memory: 32Mi}
      securityContext:
        runAsUser: 1
        runAsGroup: 2000
        readOnlyRootFilesystem: false
        seccompProfile: {type: Localhost, localhostProfile: profiles/exporter.json}
        capabilities: {add: [NET_BIND_SERVICE]}
      params:
        port: {type: port, default: "9100", description: the metrics port}
        mode: {type: enum, values: [fast, safe], default: safe}
"""


def test_every_key_of_a_profile_takes_effect() -> None:
    profile = parse_settings(EVERY_PROFILE_KEY).profiles["adapter"]["full"]
    assert (profile.kind, profile.name, profile.description) == ("adapter", "full", "Every key a profile may have.")
    assert profile.image.endswith("@sha256:" + "0123456789abcdef" * 4) and profile.image_pull_policy == "Always"
    assert (profile.command, profile.args) == (("/exporter", "--flag"), ("--listen=:{port}", "--mode={mode}"))
    assert profile.env == (("LISTEN_ON", ":{port}"), ("_EMPTY", ""))
    assert profile.ports == (("metrics", "{port}"), ("admin", "9901"))
    assert profile.resources == {
        "requests": {"cpu": "10m", "memory": "16Mi", "ephemeral-storage": "1Mi"},
        "limits": {"cpu": "50m", "memory": "32Mi"},
    }
    assert profile.security_context == {
        **RESTRICTED_SECURITY_CONTEXT,
        "runAsUser": 1,
        "runAsGroup": 2000,
        "readOnlyRootFilesystem": False,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/exporter.json"},
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    assert {name: (p.name, p.type, p.default, p.description, p.values) for name, p in profile.params.items()} == {
        "port": ("port", "port", "9100", "the metrics port", ()),
        "mode": ("mode", "enum", "safe", "", ("fast", "safe")),
    }
    settings = parse_settings(EVERY_PROFILE_KEY)
    injection = inject_pod(reference_pod({"entourage.dev/adapter": "full", "entourage.dev/adapter.full.mode": "fast"}), settings)
    (container,) = (c for c in injection.pod["spec"]["containers"] if c["name"] == "entourage-adapter-full")
    assert container["imagePullPolicy"] == "Always" and container["args"] == ["--listen=:9100", "--mode=fast"]
    assert container["env"] == [{"name": "LISTEN_ON", "value": ":9100"}, {"name": "_EMPTY", "value": ""}]
    assert container["ports"] == [
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
        {"name": "admin", "containerPort": 9901, "protocol": "TCP"},
    ]


def adapter(**keys: str) -> str:
    """A valid adapter profile named x, with some keys replaced (YAML flow values)."""
    spec = {
        "image": "exporter:1.0.0",
        "command": "[/exporter]",
        "resources": "{requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}",
        **keys,
    }
    return "profiles: {adapter: {x: {" + ", ".join(f"{key}: {value}" for key, value in spec.items() if value != "") + "}}}"


WHERE = "profiles.adapter.x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "profiles: {adapter: {" + "a" * 41 + ": {}}}",
            f"profiles.adapter.{'a' * 41}: a profile name is a DNS label of at most 40 characters",
        ),
        ("profiles: {adapter: {Big: {}}}", "profiles.adapter.Big: a profile name is a DNS label of at most 40 characters"),
        (adapter(image=""), f"{WHERE}.image: expected an image with a pinned tag or digest (not 'latest'), got None"),
        (adapter(command=""), f"{WHERE}.command: required (the image's entrypoint is not assumed)"),
        (adapter(command="/exporter"), f"{WHERE}.command: expected a list of strings"),
        (adapter(imagePullPolicy="always"), f"{WHERE}.imagePullPolicy: expected IfNotPresent, Always or Never, got 'always'"),
        (adapter(env="[x]"), f"{WHERE}.env[0]: expected a mapping, got str"),
        (adapter(env="[{name: A, valu: b}]"), f"{WHERE}.env[0]: unknown key 'valu' (did you mean 'value'?); known keys: name, value"),
        (adapter(env="[{name: A}, {name: 1A}]"), f"{WHERE}.env[1].name: expected an environment variable name"),
        (adapter(env="[{value: a}]"), f"{WHERE}.env[0].name: expected an environment variable name"),
        (adapter(ports="[x]"), f"{WHERE}.ports[0]: expected a mapping, got str"),
        (adapter(ports="[{name: m, port: 1}]"), f"{WHERE}.ports[0]: unknown key 'port'; known keys: name, containerPort"),
        (
            adapter(ports="[{name: metrics-and-more1, containerPort: 1}]"),
            f"{WHERE}.ports[0].name: expected an IANA service name (at most 15 characters)",
        ),
        (adapter(ports="[{containerPort: 1}]"), f"{WHERE}.ports[0].name: expected an IANA service name (at most 15 characters)"),
        (
            adapter(ports="[{name: m, containerPort: x}]"),
            f"{WHERE}.ports[0].containerPort: 'x' (m): expected a port number or a {{parameter}} of type port",
        ),
        (
            adapter(ports="[{name: m, containerPort: 0}]"),
            f"{WHERE}.ports[0].containerPort: '0' (m): expected a port number or a {{parameter}} of type port",
        ),
        (adapter(readyCommand="[x]"), f"{WHERE}: only ambassadors have tlsArgs and readyCommand"),
        (adapter(args="['{x}']"), f"{WHERE}.args[0]: unknown placeholder {{x}}; known here: none (declare params)"),
        (
            adapter(args="['{prt}']", params="{port: {type: port, default: '1'}}"),
            f"{WHERE}.args[0]: unknown placeholder {{prt}} (did you mean 'port'?); known here: {{port}}",
        ),
        (
            adapter(params="{Port: {type: port, default: '1'}}"),
            f"{WHERE}.params.Port: a parameter name is a DNS label (lower-case letters, digits, '-')",
        ),
        (
            adapter(params="{p: {type: port, default: '1', doc: x}}"),
            f"{WHERE}.params.p: unknown key 'doc'; known keys: type, default, description, values",
        ),
        (
            adapter(params="{p: {type: number, default: '1'}}"),
            f"{WHERE}.params.p.type: expected one of port, host, path, name, duration, int, enum, got 'number'",
        ),
        (adapter(params="{p: {type: enum, default: a}}"), f"{WHERE}.params.p.values: an enum parameter lists its allowed values"),
        (adapter(params="{p: {type: enum, values: a, default: a}}"), f"{WHERE}.params.p.values: expected a list of strings"),
        (adapter(params="{p: {type: enum, values: [a]}}"), f"{WHERE}.params.p.default: required (a pod may leave the parameter unset)"),
        (adapter(params="{p: {type: enum, values: [a], default: b}}"), f"{WHERE}.params.p.default: 'b': expected one of a"),
        (adapter(params="{p: [1]}"), f"{WHERE}.params.p: expected a mapping, got list"),
        (adapter(params="[p]"), f"{WHERE}.params: expected a mapping, got list"),
        (adapter(params="{p: {type: enum, values: [a, b], default: c}}"), f"{WHERE}.params.p.default: 'c': expected one of a, b"),
        (adapter(args="x"), f"{WHERE}.args: expected a list of strings"),
        (adapter(tlsArgs="x"), f"{WHERE}.tlsArgs: expected a list of strings"),
        (adapter(readyCommand="x"), f"{WHERE}.readyCommand: expected a list of strings"),
        (
            adapter(image="'a:1'", imag="b"),
            f"{WHERE}: unknown key 'imag' (did you mean 'image'?); known keys: description, image, imagePullPolicy, imagePullSecrets, command, args, tlsArgs, readyCommand, env, ports, resources, securityContext, params, caBundle, volumes",
        ),
        (adapter(resources="[1]"), f"{WHERE}.resources: expected a mapping, got list"),
        (adapter(resources="{requests: 1}"), f"{WHERE}.resources.requests: expected a mapping, got int"),
        (adapter(securityContext="{capabilities: [x]}"), f"{WHERE}.securityContext.capabilities: expected a mapping, got list"),
        (
            "profiles: {logging: {tail: {args: ['{pahts}']}}}",
            "profiles.logging.tail.args[0]: unknown placeholder {pahts} (did you mean 'paths'?); known here: {path-globs}, {path-map}, {paths}",
        ),
        ("profiles: {adapter: [x]}", "profiles.adapter: expected a mapping, got list"),
        ("profiles: {adapter: {x: y}}", "profiles.adapter.x: expected a mapping, got str"),
        ("defaults: [x]", "defaults: expected a mapping, got list"),
        ("limits: 3", "limits: expected a mapping, got int"),
        ("[1, 2]", "configuration: expected a mapping, got list"),
        (
            adapter(resources="{requests: {cpu: 1m, memory: 1Mi, gpu: 1}, limits: {cpu: 1m, memory: 1Mi}}"),
            f"{WHERE}.resources.requests: unknown key 'gpu' (did you mean 'cpu'?); known keys: cpu, memory, ephemeral-storage",
        ),
        (
            adapter(resources="{requests: {cpu: lots, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}"),
            f"{WHERE}.resources.requests.cpu: 'lots' is not a Kubernetes quantity (examples: 100m, 0.5, 64Mi, 1Gi)",
        ),
        (
            adapter(resources="{requests: {cpu: 1m, memory: 1Mi}, limit: {}}"),
            f"{WHERE}.resources: unknown key 'limit' (did you mean 'limits'?); known keys: requests, limits",
        ),
        (adapter(resources=""), f"{WHERE}.resources.requests.cpu: required (injected containers carry requests and limits)"),
        (adapter(securityContext="{runAsGroup: 0}"), f"{WHERE}.securityContext.runAsGroup: expected a non-zero user or group id, got 0"),
        (
            adapter(securityContext="{runAsUser: true}"),
            f"{WHERE}.securityContext.runAsUser: expected a non-zero user or group id, got True",
        ),
        (adapter(securityContext="{runAsUser: '1'}"), f"{WHERE}.securityContext.runAsUser: expected a non-zero user or group id, got '1'"),
        (
            adapter(securityContext="{readOnlyRootFilesystem: 'yes'}"),
            f"{WHERE}.securityContext.readOnlyRootFilesystem: expected true or false",
        ),
        (
            adapter(securityContext="{seccompProfile: {type: Unconfined}}"),
            f"{WHERE}.securityContext.seccompProfile.type: expected RuntimeDefault or Localhost",
        ),
        (adapter(securityContext="{seccompProfile: Localhost}"), f"{WHERE}.securityContext.seccompProfile: expected a mapping, got str"),
        (
            adapter(securityContext="{capabilities: {drop: [NET_RAW]}}"),
            f"{WHERE}.securityContext.capabilities: unknown key 'drop'; known keys: add",
        ),
        (
            adapter(securityContext="{capabilities: {add: NET_BIND_SERVICE}}"),
            f"{WHERE}.securityContext.capabilities.add: expected a list of strings",
        ),
        (
            adapter(securityContext="{privileged: true}"),
            f"{WHERE}.securityContext: 'privileged' cannot be set (injected containers stay Pod Security 'restricted'); settable: capabilities, readOnlyRootFilesystem, runAsGroup, runAsUser, seccompProfile",
        ),
        (adapter(securityContext="[x]"), f"{WHERE}.securityContext: expected a mapping, got list"),
        (
            "profiles: {logging: {x: {image: 'a:1', command: [/a], ports: [{name: m, containerPort: 1}], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}}}}",
            "profiles.logging.x.ports: only adapters declare ports",
        ),
        (
            "profiles: {ambassador: {x: {image: 'a:1', command: [/a], tlsArgs: [t], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}}}}",
            "profiles.ambassador.x.readyCommand: required for an ambassador (the app starts once it passes)",
        ),
        (
            "profiles: {logging: {x: {image: 'a:1', command: [sh], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}}}}",
            "profiles.logging.x.command[0]: 'sh': expected an absolute path such as /bin/sh (a bare name is looked up in the container's PATH)",
        ),
    ],
)
def test_profile_errors_name_the_setting_and_the_value_word_for_word(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    assert str(error.value) == f"configuration: {message}"


@pytest.mark.parametrize(
    ("key", "value", "where"),
    [
        ("args", "['--dirs={paths}']", "args[0]: '--dirs={paths}'"),
        ("args", "['-v', '{paths}x']", "args[1]: '{paths}x'"),
        ("env", "[{name: DIRS, value: '{paths}'}]", "env[0]: '{paths}'"),
        ("args", "['--map={path-map}']", "args[0]: '--map={path-map}'"),
    ],
)
def test_the_list_placeholders_can_only_be_an_argument_of_their_own(key: str, value: str, where: str) -> None:
    """A configuration accepted at load time must not fail every injection afterwards."""
    name = "path-map" if "path-map" in value else "paths"
    with pytest.raises(ConfigError) as error:
        parse_settings(f"profiles: {{logging: {{tail: {{{key}: {value}}}}}}}")
    assert str(error.value) == (
        f"configuration: profiles.logging.tail.{where}: {{{name}}} expands into one argument per directory, so it must be a whole item of args"
    )
    settings = parse_settings("profiles: {logging: {tail: {args: ['<paths>', '{paths}', '{path-map}', '--globs={path-globs}']}}}")
    injection = inject_pod(reference_pod({"entourage.dev/logging": "true", "entourage.dev/logging-paths": "/a,/b"}), settings)
    (agent,) = (c for c in injection.pod["spec"]["containers"] if c["name"] == "entourage-logging")
    root = AGENT_LOG_ROOT
    assert agent["args"] == ["<paths>", f"{root}/a", f"{root}/b", f"{root}/a=/a", f"{root}/b=/b", f"--globs={root}/a/*,{root}/b/*"]


@pytest.mark.parametrize("policy", ["IfNotPresent", "Always", "Never"])
def test_the_image_pull_policy_may_be_any_of_kubernetes_three(policy: str) -> None:
    assert parse_settings(adapter(imagePullPolicy=policy)).profiles["adapter"]["x"].image_pull_policy == policy
    plain = parse_settings(adapter()).profiles["adapter"]["x"]
    assert (plain.image_pull_policy, plain.description, plain.env, plain.ports, plain.params) == ("IfNotPresent", "", (), (), {})


def test_env_names_may_use_either_case_and_seccomp_may_stay_runtime_default() -> None:
    profile = parse_settings(
        adapter(env="[{name: lower_Case9, value: v}]", securityContext="{seccompProfile: {type: RuntimeDefault}}")
    ).profiles["adapter"]["x"]
    assert profile.env == (("lower_Case9", "v"),) and profile.security_context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_annotation_prefix_may_be_200_characters() -> None:
    prefix = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 8])
    assert len(prefix) == 200 and parse_settings(f"annotationPrefix: {prefix}").annotation_prefix == prefix
    with pytest.raises(ConfigError, match="annotationPrefix: expected a DNS subdomain"):
        parse_settings(f"annotationPrefix: {prefix}d")


def test_a_profile_name_may_be_40_characters() -> None:
    name = "a" * 40
    assert name in parse_settings(adapter().replace("{x:", f"{{{name}:")).profiles["adapter"]


def test_a_file_is_read_as_utf_8_and_its_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# Entourage — réglages\nonError: allow\n", encoding="utf-8")
    assert load_settings(str(path)).on_error == "allow"
    path.write_text("onError: maybe\n")
    with pytest.raises(ConfigError) as error:
        load_settings(str(path))
    assert str(error.value) == f"{path}: onError: expected deny or allow, got 'maybe'"


VOLUMES = (
    ADAPTER
    + """      volumes:
        - {name: config, configMap: exporter-config, mountPath: /etc/exporter}
"""
)


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        (
            "[{name: config, configMap: exporter-config, secret: x, mountPath: /etc/exporter}]",
            "expected exactly one of configMap or secret",
        ),
        ("[{name: config, hostPath: /etc, mountPath: /etc/exporter}]", "unknown key 'hostPath'"),
        (
            "[{name: config, configMap: 'kube-system/x', mountPath: /etc/exporter}]",
            "'kube-system/x': expected the name of a configMap in the pod's namespace, or {param}",
        ),
        ("[{name: config, secret: '{port}', mountPath: /etc/exporter}]", "a placeholder here names a parameter of type name"),
        ("[{name: config, secret: '{nothing}', mountPath: /etc/exporter}]", "a placeholder here names a parameter of type name"),
        ("[{name: config, configMap: c, mountPath: etc/exporter}]", "mountPath: expected an absolute, normalised path"),
        ("[{name: config, configMap: c, mountPath: /etc/../root}]", "mountPath: expected an absolute, normalised path"),
        (
            "[{name: config, configMap: c, mountPath: /var/run/entourage/logs}]",
            "/var/run/entourage/logs: /var/run/entourage, /etc/entourage, /proc, /sys, /dev are reserved",
        ),
        ("[{name: a, configMap: c, mountPath: /etc/x}, {name: a, configMap: d, mountPath: /etc/y}]", "volumes[1].name: 'a' is used twice"),
        (
            "[{name: a, configMap: c, mountPath: /etc/x}, {name: b, configMap: d, mountPath: /etc/x/y}]",
            "volumes[1].mountPath: /etc/x/y overlaps /etc/x",
        ),
        ("[{name: Config, configMap: c, mountPath: /etc/x}]", "name: expected a DNS label of at most 20 characters"),
        ("[{name: a, configMap: c, mountPath: /etc/x, optional: maybe}]", "optional: expected true or false"),
        ("{name: a}", "volumes: expected a list of volumes"),
    ],
)
def test_profile_volumes_come_only_from_the_pods_own_namespace_and_are_checked_at_load(volumes: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(ADAPTER + f"      volumes: {volumes}\n", source="config.yaml")
    assert message in str(error.value), str(error.value)
    assert str(error.value).startswith("config.yaml: profiles.adapter.my-exporter.volumes")


def test_a_profile_volume_is_mounted_read_only_and_shared_by_the_components_that_mount_it() -> None:
    from tests.conftest import reference_pod
    from webhook.engine.inject import inject_pod

    settings = parse_settings(VOLUMES)
    pod = reference_pod({"entourage.dev/adapter": "my-exporter"})
    injected = inject_pod(pod, settings).pod
    [exporter] = [c for c in injected["spec"]["containers"] if c["name"] == "entourage-adapter-my-exporter"]
    assert exporter["volumeMounts"] == [{"name": "entourage-my-exporter-config", "mountPath": "/etc/exporter", "readOnly": True}]
    assert {
        "name": "entourage-my-exporter-config",
        "configMap": {"name": "exporter-config", "defaultMode": 0o444, "optional": False},
    } in injected["spec"]["volumes"]


@pytest.mark.parametrize(
    ("text", "mode"), [("{}", "deny"), ("validation: warn", "warn"), ("validation: 'off'", "off"), ("validation: off", "off")]
)
def test_validation_defaults_to_deny_and_an_unquoted_off_means_off(text: str, mode: str) -> None:
    assert parse_settings(text).validation == mode  # YAML 1.1 reads a bare off as false


def test_each_sized_list_names_the_limit_and_the_config_key_that_set_it() -> None:
    """``LIST_LIMITS`` (the engine's denials and the decoder's caps read it) names real Limits
    fields and the configuration keys that set them."""
    from webhook.engine.settings import LIST_LIMITS, build_settings

    for field_name, (attribute, key) in LIST_LIMITS.items():
        settings = build_settings({"limits": {key: 7}})
        assert getattr(settings.limits, attribute) == 7, field_name
