"""The built-in profiles, written in the configuration file's own shape so users can extend them.

Images are pinned by tag; a configuration file may override any key of a built-in profile (an
internal registry mirror, other resources) or add profiles of its own.
"""

from __future__ import annotations

from typing import Any

from webhook.engine.scripts import compact

BUSYBOX_IMAGE = "busybox:1.36.1"
CURL_IMAGE = "curlimages/curl:8.11.1"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu_request, "memory": memory_request}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


BUILTIN_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "logging": {
        "tail": {
            "description": "Streams every file in the shared log directories to its own stdout "
            "(kubectl logs POD -c entourage-logging), following new and rotated files.",
            "image": BUSYBOX_IMAGE,
            "command": ["/bin/sh", "-c", compact("tail_logs.sh"), "entourage-logging"],
            # One AGENT_DIR=APP_DIR per directory: lines name files by their path in the app.
            "args": ["{path-map}"],
            "resources": _resources("10m", "16Mi", "100m", "64Mi"),
        },
        "fluent-bit": {
            "description": "fluent-bit's tail input over the shared directories, forwarded to a "
            "Fluentd/Fluent Bit aggregator; set host and port per pod or in the configuration. Each "
            "record carries file (the agent's path: /var/run/entourage/logs followed by the app's), "
            "namespace_name, pod_name and container_name.",
            "image": "fluent/fluent-bit:3.2.10",
            "command": ["/fluent-bit/bin/fluent-bit"],
            "args": [
                "-i",
                "tail",
                "-p",
                "path={path-globs}",
                "-p",
                "path_key=file",
                "-p",
                "refresh_interval=5",
                "-p",
                "rotate_wait=5",
                "-p",
                "skip_long_lines=on",
                "-p",
                "tag=entourage.*",
                # The pod's identity, from the agent's downward-API environment ($(VAR) is
                # expanded by the kubelet), so that records can be told apart downstream.
                "-F",
                "record_modifier",
                "-p",
                "match=entourage.*",
                "-p",
                "record=namespace_name $(ENTOURAGE_POD_NAMESPACE)",
                "-p",
                "record=pod_name $(ENTOURAGE_POD_NAME)",
                "-p",
                "record=container_name $(ENTOURAGE_CONTAINER_NAME)",
                "-o",
                "forward",
                "-p",
                "match=*",
                "-p",
                "host={host}",
                "-p",
                "port={port}",
                "-f",
                "5",
            ],
            "params": {
                "host": {"type": "host", "default": "fluentd.logging.svc.cluster.local", "description": "aggregator host"},
                "port": {"type": "port", "default": "24224", "description": "aggregator forward port"},
            },
            "resources": _resources("20m", "32Mi", "500m", "128Mi"),
        },
    },
    "ambassador": {
        "socat": {
            "description": "socat listening on 127.0.0.1:LOCAL_PORT, forwarding to the upstream; "
            "tls:// upstreams get TLS with certificate and host name verification.",
            "image": "alpine/socat:1.8.0.1",
            "command": ["/usr/bin/socat"],
            "args": ["-d", "TCP-LISTEN:{local-port},bind=127.0.0.1,reuseaddr,fork", "TCP:{upstream}"],
            "tlsArgs": [
                "-d",
                "TCP-LISTEN:{local-port},bind=127.0.0.1,reuseaddr,fork",
                "OPENSSL:{upstream},verify=1,cafile={ca-file},commonname={upstream-host}",
            ],
            # socat's own connect retry: no shell needed in the image to wait for the port.
            "readyCommand": ["/usr/bin/socat", "-u", "OPEN:/dev/null", "TCP:127.0.0.1:{local-port},retry=150,interval=0.1"],
            "params": {
                "ca-file": {
                    "type": "path",
                    "default": SYSTEM_CA_BUNDLE,
                    "description": "CA bundle inside the image that verifies tls:// upstreams",
                },
            },
            "resources": _resources("10m", "16Mi", "200m", "64Mi"),
        },
    },
    "adapter": {
        "nginx-prometheus": {
            "description": "Translates nginx stub_status into Prometheus metrics on :PORT/metrics.",
            "image": "nginx/nginx-prometheus-exporter:1.4.2",
            "command": ["/usr/bin/nginx-prometheus-exporter"],
            "args": ["--nginx.scrape-uri=http://127.0.0.1:{status-port}{status-path}", "--web.listen-address=:{port}"],
            "ports": [{"name": "metrics", "containerPort": "{port}"}],
            "params": {
                "status-port": {"type": "port", "default": "8080", "description": "the app's port serving stub_status"},
                "status-path": {"type": "path", "default": "/stub_status", "description": "the stub_status path"},
                "port": {"type": "port", "default": "9113", "description": "port of the exporter's /metrics"},
            },
            "resources": _resources("10m", "16Mi", "100m", "64Mi"),
        },
        "statsd-prometheus": {
            "description": "Receives StatsD on 127.0.0.1:STATSD_PORT (UDP and TCP) and serves them as Prometheus metrics on :PORT/metrics.",
            "image": "prom/statsd-exporter:v0.28.0",
            "command": ["/bin/statsd_exporter"],
            "args": [
                "--statsd.listen-udp=127.0.0.1:{statsd-port}",
                "--statsd.listen-tcp=127.0.0.1:{statsd-port}",
                "--web.listen-address=:{port}",
            ],
            "ports": [{"name": "metrics", "containerPort": "{port}"}, {"name": "statsd", "containerPort": "{statsd-port}"}],
            "params": {
                "statsd-port": {"type": "port", "default": "9125", "description": "where the app sends StatsD"},
                "port": {"type": "port", "default": "9102", "description": "port of the exporter's /metrics"},
            },
            "resources": _resources("10m", "32Mi", "200m", "128Mi"),
        },
    },
    "waitFor": {
        "curl": {
            "description": "A POSIX sh script that waits for a tcp, http(s) or dns target with a bounded back-off; "
            "https targets must present a certificate that verifies for their host name (curl with OpenSSL, "
            "TLS 1.2 and 1.3, SNI), against the image's roots or the profile's caBundle.",
            # Alpine's busybox (sh, nc, nslookup, timeout) plus curl built with OpenSSL.
            "image": CURL_IMAGE,
            "command": ["/bin/sh", "-c", compact("wait_for.sh"), "entourage-wait-for"],
            "args": ["{kind}", "{target}", "{timeout-seconds}", "{ca-file}", "{insecure}"],
            "params": {
                "insecure": {
                    "type": "enum",
                    "values": ["false", "true"],
                    "default": "false",
                    "description": "true: https targets are NOT verified (any certificate passes, so the wait may pass for "
                    "the wrong server); for the rare service whose certificate cannot verify",
                },
            },
            "resources": _resources("10m", "16Mi", "100m", "32Mi"),
        },
        "busybox": {
            "description": "The same script in the busybox image: tcp, http and dns only (busybox's TLS client "
            "cannot verify certificates, so https targets fail with exit code 2; use curl).",
            "image": BUSYBOX_IMAGE,
            "command": ["/bin/sh", "-c", compact("wait_for.sh"), "entourage-wait-for"],
            "args": ["{kind}", "{target}", "{timeout-seconds}"],
            "resources": _resources("10m", "16Mi", "100m", "32Mi"),
        },
    },
}
