"""The `entourage` command: serve, certs, inject, audit, explain, config validate. Argument parsing and YAML in/out only."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

import yaml

from webhook import __version__, certs, yamlio
from webhook.admission.reuse import DEFAULT_SIZE
from webhook.cluster import rotation
from webhook.engine.settings import Settings, load_settings
from webhook.engine.workloads import inject_manifest
from webhook.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entourage", description="Kubernetes mutating webhook that injects companion containers.")
    parser.add_argument("--version", action="version", version=f"entourage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve POST /mutate over HTTPS")
    serve.add_argument("--tls-cert-file", help="PEM serving certificate (chain); not with --certificates-secret")
    serve.add_argument("--tls-private-key-file", help="PEM private key of the certificate")
    serve.add_argument(
        "--client-ca-file",
        help="PEM CA bundle: require a client certificate it signed (the apiserver's); default: no client authentication",
    )
    serve.add_argument("--host", default="::", help="address to listen on (default ::, every IPv6 and IPv4 address; 0.0.0.0: IPv4 only)")
    serve.add_argument("--port", type=int, default=8443, help="port to listen on (default 8443)")
    serve.add_argument("--config", help="YAML configuration file (profiles, defaults, limits)")
    serve.add_argument(
        "--last-good-config",
        metavar="PATH",
        help="keep a copy of each valid configuration here, and serve it when --config is invalid at start "
        "(else an invalid file leaves the process up but unready until it is fixed)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--workers", type=_positive_int, default=1, help="server processes; each loads certificates and configuration itself (default 1)"
    )
    serve.add_argument(
        "--drain-seconds",
        type=_seconds,
        default=5.0,
        help="after SIGTERM: unready but still serving, before the listener closes (default 5)",
    )
    serve.add_argument(
        "--shutdown-timeout", type=_seconds, default=10.0, help="after the drain: time for requests in flight to finish (default 10)"
    )
    serve.add_argument(
        "--reload-interval", type=_seconds, default=2.0, help="seconds between looks at the certificate and configuration files (default 2)"
    )
    serve.add_argument(
        "--request-timeout", type=_seconds, default=10.0, help="seconds a client may take to send a request body; then 408 (default 10)"
    )
    serve.add_argument(
        "--head-timeout",
        type=_seconds,
        default=10.0,
        help="seconds from a request's first byte to the end of its headers; then the connection closes (default 10)",
    )
    serve.add_argument(
        "--max-header-bytes",
        type=_positive,
        default=64 * 1024,
        help="bytes a request's line and headers may take; then 431 and close (default 65536)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive,
        default=512,
        help="connections per process, established or in their TLS handshake; past it new ones wait until one closes, those established keep working (default 512)",
    )
    serve.add_argument(
        "--tls-handshake-timeout",
        type=_seconds,
        default=5.0,
        help="seconds for a TLS handshake, opening or closing; then the connection closes (default 5)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=_seconds,
        default=100.0,
        help="seconds an idle keep-alive connection stays open (default 100: above the apiserver's 90 s, so it closes idle connections first)",
    )
    serve.add_argument(
        "--metrics-port",
        type=_port,
        help="a second HTTPS port for /metrics (then served only there), /healthz and /readyz, asking for no client certificate (default: all on --port)",
    )
    serve.add_argument(
        "--answer-cache-size",
        type=_non_negative_int,
        default=DEFAULT_SIZE,
        help=f"answers kept for identical requests, e.g. the pods of one ReplicaSet; 0 turns reuse off (default {DEFAULT_SIZE})",
    )
    cluster = serve.add_argument_group("cluster awareness (in a cluster, or with --kubeconfig)")
    cluster.add_argument("--kubeconfig", help="use this kubeconfig instead of the in-cluster service account")
    cluster.add_argument("--standalone", action="store_true", help="never talk to the Kubernetes API, even in a cluster")
    cluster.add_argument(
        "--sync-timeout",
        type=_seconds,
        default=10.0,
        help="/readyz waits this long for the first namespace list, then serves without namespace defaults (default 10)",
    )
    cluster.add_argument(
        "--version-check-seconds",
        type=_seconds,
        default=600.0,
        help="how often apiserver and kubelet versions are re-checked for nativeSidecars: auto (default 600)",
    )
    cluster.add_argument("--no-events", action="store_true", help="do not create Kubernetes Events for injections and denials")
    cluster.add_argument(
        "--self-test-seconds",
        type=_seconds,
        default=60.0,
        help="seconds between two self-test rounds: a dry-run probe pod per namespace through the apiserver (default 60; 0: off)",
    )
    cluster.add_argument(
        "--self-test-configuration",
        metavar="NAME",
        help="the MutatingWebhookConfiguration whose namespaceSelector chooses the probed namespaces (default: the first --mutating-webhook-configuration, else entourage)",
    )
    cluster.add_argument(
        "--self-test-namespace",
        metavar="NS",
        action="append",
        default=[],
        help="probe this namespace instead of the selected ones (repeatable)",
    )
    cluster.add_argument("--self-test-image", default="registry.k8s.io/pause:3.10", help="the probe pod's image (a dry run pulls nothing)")
    cluster.add_argument(
        "--event-owner-cache-seconds",
        type=_seconds,
        default=60.0,
        help="how long an Event owner's lookup (found or not) is remembered (default 60)",
    )
    cluster.add_argument(
        "--event-lookups-per-second",
        type=_rate,
        default=10.0,
        help="owner lookups the Events worker may make a second; Events needing more are dropped (default 10)",
    )
    managed = serve.add_argument_group("certificates managed by the webhook (webhook/cluster/certificates.py; needs API access)")
    managed.add_argument(
        "--certificates-secret",
        metavar="NAME",
        help="self-managed mode: read or create this Secret with the CA and serving pair, serve from it, renew and rotate it",
    )
    managed.add_argument(
        "--service", default="entourage", help="the webhook's Service: the serving certificate's DNS names (default entourage)"
    )
    managed.add_argument(
        "--namespace", help="namespace of the Secret and the Service (default: $POD_NAMESPACE, else the service account's)"
    )
    managed.add_argument(
        "--mutating-webhook-configuration",
        metavar="NAME",
        action="append",
        default=[],
        help="keep this configuration's caBundle equal to the trusted CAs (repeatable)",
    )
    managed.add_argument(
        "--validating-webhook-configuration",
        metavar="NAME",
        action="append",
        default=[],
        help="likewise for a ValidatingWebhookConfiguration (repeatable)",
    )
    managed.add_argument(
        "--ca-file", help="without --certificates-secret: the caBundle comes from this PEM file (a mounted Secret's ca.crt)"
    )
    managed.add_argument(
        "--ca-lifetime",
        type=_duration,
        default=rotation.Lifetimes.ca,
        help="validity of a self-managed CA, e.g. 365d (default); rotated at two thirds",
    )
    managed.add_argument(
        "--certificate-lifetime",
        type=_duration,
        default=rotation.Lifetimes.serving,
        help="validity of a serving certificate, e.g. 90d (default); renewed at two thirds",
    )
    managed.add_argument(
        "--rotation-overlap",
        type=_duration,
        default=rotation.Lifetimes.overlap,
        help="both CAs are trusted this long before and after a CA switch, e.g. 300s (default)",
    )

    audit = commands.add_parser(
        "audit", help="list pods that missed injection (created while the webhook was down) or, with --outdated, run outdated companions"
    )
    audit.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then ~/.kube/config)")
    audit.add_argument("--namespace", "-n", help="only this namespace (default: all)")
    audit.add_argument("--config", help="the webhook's configuration file (its prefix, and for --outdated its profiles)")
    audit.add_argument("--output", "-o", choices=["text", "json"], default="text")
    audit.add_argument(
        "--outdated", action="store_true", help="list injected pods whose companions the configuration now renders differently, by workload"
    )
    audit.add_argument(
        "--restart",
        action="store_true",
        help="restart the workloads found (Deployments, StatefulSets, DaemonSets), one at a time; a dry run unless --yes",
    )
    audit.add_argument("--yes", action="store_true", help="with --restart: really restart")
    audit.add_argument(
        "--pause", type=float, default=30.0, metavar="SECONDS", help="with --restart --yes: seconds between two restarts (default 30)"
    )

    certificates = commands.add_parser("certs", help="write a CA and a serving certificate for the webhook Service")
    certificates.add_argument("--service", required=True, help="the webhook's Service name")
    certificates.add_argument("--namespace", required=True, help="the Service's namespace")
    certificates.add_argument("--out-dir", required=True, help="directory for ca.crt, tls.crt and tls.key")
    certificates.add_argument(
        "--days", type=int, default=certs.SERVING_DAYS, help=f"serving certificate validity (default {certs.SERVING_DAYS})"
    )
    certificates.add_argument("--force", action="store_true", help="overwrite existing files")

    inject = commands.add_parser("inject", help="inject manifests offline (Pods and workload templates)")
    inject.add_argument("-f", "--filename", required=True, help="YAML file with one or more documents, or - for stdin")
    inject.add_argument("--config", help="YAML configuration file (profiles, defaults, limits)")
    inject.add_argument("--native-sidecars", choices=["true", "false"], help="as the cluster would resolve nativeSidecars: auto")

    config = commands.add_parser("config", help="work with the webhook's configuration file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser(
        "validate",
        help="check configuration files exactly as `serve` loads them; exit 1 naming the key and value of the first problem in each",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML configuration file(s), e.g. the chart's config.yaml")
    _add_explain_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "certs":
            return _certs(args, stdout)
        if args.command == "inject":
            return _inject(args, stdin, stdout, stderr)
        if args.command == "audit":
            return _audit(args, stdout, stderr)
        if args.command == "config":
            return _validate_config(args.files, stdout, stderr)
        if args.command == "explain":
            return _explain(args, stdin, stdout, stderr)
        return _serve(args, stderr)
    except ConfigError as error:
        print(f"entourage: configuration error: {error}", file=stderr)
        return 2
    except (OSError, FileExistsError) as error:
        print(f"entourage: {error}", file=stderr)
        return 1


def _in_cluster() -> bool:
    """Running in a pod with a service account token (what in-cluster API access needs)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError(f"expected a rate above 0 and at most 10000 a second, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 3600, got {text!r}")
    return value


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")


def _duration(text: str) -> datetime.timedelta:
    match = _DURATION.match(text)
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 30s, 10m, 12h or 90d, got {text!r}")
    return datetime.timedelta(seconds=float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]])


def _own_namespace() -> str | None:
    """$POD_NAMESPACE (the chart sets it from the downward API), else the service account's."""
    try:
        return (
            os.environ.get("POD_NAMESPACE")
            or open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8").read().strip()
        )
    except OSError:
        return None


def _certificate_options(args: argparse.Namespace, cluster: bool) -> tuple[rotation.CertificateOptions | None, str | None]:
    """The certificate options, or the reason the flags do not fit together."""
    configurations = args.mutating_webhook_configuration or args.validating_webhook_configuration
    if args.certificates_secret:
        if args.tls_cert_file or args.tls_private_key_file or args.ca_file:
            return (
                None,
                "--certificates-secret manages the certificate itself: leave out --tls-cert-file, --tls-private-key-file and --ca-file",
            )
        namespace = args.namespace or _own_namespace()
        if not (cluster and namespace):
            return (
                None,
                "--certificates-secret needs API access (in a cluster or --kubeconfig) and a namespace (--namespace or $POD_NAMESPACE)",
            )
    elif not (args.tls_cert_file and args.tls_private_key_file):
        return None, "give --tls-cert-file and --tls-private-key-file, or --certificates-secret NAME for self-managed certificates"
    elif configurations and not (args.ca_file and cluster):
        return (
            None,
            "--mutating/--validating-webhook-configuration need --ca-file (or --certificates-secret) and API access (in a cluster or --kubeconfig)",
        )
    if not (args.certificates_secret or configurations):
        return None, None
    lifetimes = rotation.Lifetimes(ca=args.ca_lifetime, serving=args.certificate_lifetime, overlap=args.rotation_overlap)
    if lifetimes.serving > lifetimes.ca:
        return None, f"--certificate-lifetime ({args.certificate_lifetime}) must not exceed --ca-lifetime ({args.ca_lifetime})"
    return rotation.CertificateOptions(
        secret=args.certificates_secret,
        namespace=args.namespace or _own_namespace() or "",
        service=args.service,
        ca_file=args.ca_file,
        mutating=tuple(args.mutating_webhook_configuration),
        validating=tuple(args.validating_webhook_configuration),
        lifetimes=lifetimes,
    ), None


def _serve(args: argparse.Namespace, stderr: TextIO) -> int:
    from webhook.serving.run import ServeOptions, serve
    from webhook.serving.tls import CertificateError

    cluster = not args.standalone and (bool(args.kubeconfig) or _in_cluster())
    certificates, problem = _certificate_options(args, cluster)
    if problem:
        print(f"entourage: {problem}", file=stderr)
        return 2
    if args.metrics_port == args.port:
        print(f"entourage: --metrics-port must differ from --port ({args.port})", file=stderr)
        return 2
    options = ServeOptions(
        cert_file=args.tls_cert_file or "",
        key_file=args.tls_private_key_file or "",
        client_ca_file=args.client_ca_file,
        config_file=args.config,
        last_good_config=args.last_good_config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        drain_seconds=args.drain_seconds,
        shutdown_timeout=args.shutdown_timeout,
        reload_interval=args.reload_interval,
        request_timeout=args.request_timeout,
        head_timeout=args.head_timeout,
        max_header_bytes=args.max_header_bytes,
        max_connections=args.max_connections,
        handshake_timeout=args.tls_handshake_timeout,
        metrics_port=args.metrics_port,
        keep_alive_timeout=args.keep_alive_timeout,
        answer_cache_size=args.answer_cache_size,
        log_level=args.log_level,
        kubeconfig=args.kubeconfig,
        cluster=cluster,
        sync_timeout=args.sync_timeout,
        version_check_seconds=args.version_check_seconds,
        events=not args.no_events,
        event_owner_seconds=args.event_owner_cache_seconds,
        event_lookups_per_second=args.event_lookups_per_second,
        certificates=certificates,
        self_test_seconds=args.self_test_seconds,
        self_test_configuration=args.self_test_configuration or next(iter(args.mutating_webhook_configuration), "entourage"),
        self_test_namespaces=tuple(args.self_test_namespace),
        self_test_image=args.self_test_image,
    )
    try:
        serve(options)
    except CertificateError as error:
        print(f"entourage: certificate error: {error}", file=stderr)
        return 1
    return 0


def _audit(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cluster import kube

    settings = load_settings(args.config)
    try:
        api = kube.Api(args.kubeconfig if args.kubeconfig or _in_cluster() else os.path.expanduser("~/.kube/config"))
    except Exception as error:  # noqa: BLE001 - the kubernetes package raises several kinds
        print(f"entourage: cannot configure API access: {error}", file=stderr)
        return 2
    try:
        pods, namespaces = kube.list_pods_and_namespaces(api, args.namespace)
        if args.outdated:
            return _audit_outdated(args, api, settings, pods, namespaces.get, stdout, stderr)
        return _audit_missed(args, api, settings, pods, namespaces.get, stdout, stderr)
    except kube.ApiError as error:
        print(f"entourage: {error}", file=stderr)
        return 1
    finally:
        api.close()


def _audit_missed(
    args: argparse.Namespace, api: Any, settings: Settings, pods: list[dict[str, Any]], namespaces: Any, stdout: TextIO, stderr: TextIO
) -> int:
    from webhook.cluster import audit, rollout

    findings = audit.missed(pods, settings, namespaces)
    if args.output == "json":
        json.dump([finding.as_dict() for finding in findings], stdout, indent=2)
        print(file=stdout)
    elif findings:
        rows = [("NAMESPACE", "POD", "PHASE", "OWNERS", "REQUESTED")]
        rows += [(f.namespace, f.pod, f.phase, ",".join(f.owners) or "-", ",".join(f.requested)) for f in findings]
        _table(rows, stdout)
    print(
        f"entourage: {len(findings)} of {len(pods)} pods ask for injection but were not injected; restart them through their owners"
        if findings
        else f"entourage: none of {len(pods)} pods missed injection",
        file=stderr,
    )
    if args.restart and findings:
        targets = rollout.workloads(api, [(f.namespace, f.pod, f.controller) for f in findings])
        return _restart(args, api, targets, stderr)
    return 0


def _audit_outdated(
    args: argparse.Namespace, api: Any, settings: Settings, pods: list[dict[str, Any]], namespaces: Any, stdout: TextIO, stderr: TextIO
) -> int:
    from webhook.cluster import audit, rollout

    findings = audit.outdated(pods, settings, namespaces)
    by_pod = {(f.namespace, f.pod): f for f in findings}
    targets = rollout.workloads(api, [(f.namespace, f.pod, f.owner) for f in findings])

    def changes(workload: rollout.Workload) -> list[audit.Change]:
        seen: dict[str, audit.Change] = {}
        for pod in workload.pods:
            for change in by_pod[(workload.namespace, pod)].changes:
                seen.setdefault(str(change), change)
        return list(seen.values())

    if args.output == "json":
        listed = [
            {"namespace": w.namespace, "kind": w.kind, "name": w.name, "pods": w.pods, "changes": [c.as_dict() for c in changes(w)],
             "injectedBy": sorted({by_pod[(w.namespace, pod)].entourage for pod in w.pods})}
            for w in targets
        ]  # fmt: skip
        json.dump(listed, stdout, indent=2)
        print(file=stdout)
    elif targets:
        rows = [("NAMESPACE", "WORKLOAD", "PODS", "CHANGES")]
        rows += [(w.namespace, str(w), str(len(w.pods)), "; ".join(map(str, changes(w)))) for w in targets]
        _table(rows, stdout)
    print(
        f"entourage: {len(findings)} of {len(pods)} pods in {len(targets)} workloads run outdated companions"
        if findings
        else f"entourage: the companions of all {len(pods)} pods are what the configuration injects now",
        file=stderr,
    )
    if args.restart and targets:
        return _restart(args, api, targets, stderr)
    return 0


def _restart(args: argparse.Namespace, api: Any, targets: list[Any], stderr: TextIO) -> int:
    from webhook.cluster import rollout

    def say(line: str) -> None:
        print(f"entourage: {line}", file=stderr)

    failures = rollout.restart(api, targets, apply=args.yes, pause=args.pause, say=say)
    if not args.yes:
        say("dry run: nothing was restarted; add --yes to restart")
    return 1 if failures else 0


def _table(rows: Sequence[tuple[str, ...]], stdout: TextIO) -> None:
    """Columns padded to their widest cell; the last one is left as it is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1], file=stdout)


def _validate_config(paths: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    """`entourage config validate`: every file is checked (not only up to the first bad one), so
    one run lists every broken file; the chart's pre-install/pre-upgrade hook Job runs this."""
    invalid = 0
    for path in paths:
        try:
            settings = load_settings(path)
        except ConfigError as error:
            invalid += 1
            print(f"entourage: invalid configuration: {error}", file=stderr)
            continue
        profiles = sum(len(named) for named in settings.profiles.values())
        print(
            f"{path}: valid (annotationPrefix {settings.annotation_prefix}, onError {settings.on_error}, {profiles} profiles)", file=stdout
        )
    return 1 if invalid else 0


def _certs(args: argparse.Namespace, stdout: TextIO) -> int:
    certificates = certs.generate(args.service, args.namespace, days=args.days)
    paths = certs.write(certificates, args.out_dir, force=args.force)
    print(f"wrote {', '.join(str(path) for path in paths)}", file=sys.stderr)
    print(certificates.ca_bundle, file=stdout)
    return 0


def _inject(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Safe in a pipe: stdout gets the whole stream or nothing. Exit 0 when every document was
    injected or passed through, 1 when any pod asked for something invalid (every problem on
    stderr), 2 when the input cannot be read (usage, missing file, broken YAML, a YAML alias)."""
    settings = load_settings(args.config)
    if args.native_sidecars:
        settings = replace(settings, native_sidecars=args.native_sidecars)
    loaded = _read_manifests(args.filename, stdin, stderr)
    if loaded is None:
        return 2
    documents, texts = loaded
    pieces: list[str] = []
    failed = 0
    for index, document in enumerate(documents):
        result = inject_manifest(document, settings)
        for site, denial in result.denials:
            for problem in denial.problems:
                print(f"entourage: document {index} ({site.where}): {problem}", file=stderr)
        for site, injection in result.injections:
            for warning in injection.warnings:
                print(f"entourage: warning: document {index} ({site.where}): {warning}", file=stderr)
        failed += bool(result.denials)
        if texts is None:
            pieces.append(yamlio.dump_all([result.document]))
        elif result.changed:
            pieces.append(yamlio.leading_comments(texts[index]) + yamlio.dump_all([result.document]))
        else:
            pieces.append(texts[index])
    if failed:
        print(f"entourage: {failed} of {len(documents)} documents failed; nothing was written to stdout", file=stderr)
        return 1
    stdout.write(yamlio.join_documents(pieces))
    return 0


def _read_manifests(filename: str, stdin: TextIO, stderr: TextIO) -> tuple[list[Any], list[str] | None] | None:
    """The documents of ``-f`` and their source texts (see yamlio.document_texts), or None after
    saying on stderr why the input cannot be read."""
    try:
        if filename == "-":
            text = stdin.read()
        else:
            with open(filename, encoding="utf-8") as file:
                text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        print(f"entourage: cannot read {filename}: {error}", file=stderr)
        return None
    try:
        documents = yamlio.load_all(text)
    except yamlio.AliasRefused as error:
        print(f"entourage: {filename}: {error}", file=stderr)
        return None
    except yaml.YAMLError as error:
        print(f"entourage: {filename}: not valid YAML: {error}", file=stderr)
        return None
    return documents, yamlio.document_texts(text, documents)


# -- entourage explain -----------------------------------------------------------------------------


def _add_explain_parser(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="why a pod is (not) injected, and where each setting comes from: offline (-f) or in a cluster (KIND/NAME)",
        description="Offline: entourage explain -f FILE|- . In a cluster: entourage explain -n NS pod/NAME (or deployment/, "
        "statefulset/, daemonset/, replicaset/, job/, cronjob/). Exit 0 when explained (injected or not), 1 when the cluster "
        "cannot be asked or the object is not there, 2 on a usage error or unreadable input.",
    )
    explain.add_argument("object", nargs="?", metavar="KIND/NAME", help="an object in the cluster, e.g. pod/web-7d9f or deployment/web")
    explain.add_argument("-f", "--filename", help="offline: YAML file with one or more documents, or - for stdin")
    explain.add_argument("-n", "--namespace", help="the object's namespace (cluster: default 'default'; offline: used in the fix commands)")
    explain.add_argument(
        "--namespace-annotations", action="append", default=[], metavar="KEY=VALUE|FILE",
        help="offline: the namespace's annotations, as KEY=VALUE (repeatable) or a Namespace manifest file",
    )  # fmt: skip
    explain.add_argument("--kubeconfig", help="cluster: kubeconfig to use (default: in-cluster, then ~/.kube/config)")
    explain.add_argument(
        "--webhook-configuration", action="append", default=[], metavar="NAME",
        help="cluster: the Mutating/ValidatingWebhookConfiguration(s) to evaluate (default: every one whose name or webhook names contain 'entourage')",
    )  # fmt: skip
    explain.add_argument("--config", help="the webhook's configuration file (profiles, defaults, annotationPrefix)")
    explain.add_argument("--native-sidecars", choices=["true", "false"], help="as the cluster would resolve nativeSidecars: auto")
    explain.add_argument("--output", "-o", choices=["text", "json"], default="text")


def _explain(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.engine import explain

    if bool(args.filename) == bool(args.object):
        print("entourage: explain needs either -f FILE|- (offline) or KIND/NAME (in a cluster), not both", file=stderr)
        return 2
    settings = load_settings(args.config)
    if args.native_sidecars:
        settings = replace(settings, native_sidecars=args.native_sidecars)
    if args.filename:
        explanations = _explain_offline(args, settings, stdin, stderr)
    else:
        code, explanations = _explain_in_cluster(args, settings, stderr)
        if code:
            return code
    if explanations is None:
        return 2
    stdout.write(explain.as_json(explanations) if args.output == "json" else explain.render(explanations))
    return 0


def _namespace_annotations(values: list[str], stderr: TextIO) -> dict[str, str] | None:
    """--namespace-annotations: KEY=VALUE pairs and Namespace manifests, merged in order."""
    annotations: dict[str, str] = {}
    for value in values:
        if os.path.exists(value):
            try:
                with open(value, encoding="utf-8") as file:
                    loaded = yamlio.load_all(file.read())
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
                print(f"entourage: --namespace-annotations {value}: {error}", file=stderr)
                return None
            found = loaded[0] if loaded else {}
            if isinstance(found, dict) and found.get("kind") == "Namespace":
                found = (found.get("metadata") or {}).get("annotations") or {}
            if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
                print(
                    f"entourage: --namespace-annotations {value}: expected a Namespace manifest or a map of strings to strings", file=stderr
                )
                return None
            annotations.update({str(k): v for k, v in found.items()})
        elif "=" in value:
            key, _, text = value.partition("=")
            annotations[key] = text
        else:
            print(f"entourage: --namespace-annotations {value!r}: expected KEY=VALUE or an existing file", file=stderr)
            return None
    return annotations


def _explain_offline(args: argparse.Namespace, settings: Any, stdin: TextIO, stderr: TextIO) -> list[Any] | None:
    from webhook.engine import explain
    from webhook.engine.workloads import pod_sites

    namespace_annotations = _namespace_annotations(args.namespace_annotations, stderr) if args.namespace_annotations else None
    if args.namespace_annotations and namespace_annotations is None:
        return None
    loaded = _read_manifests(args.filename, stdin, stderr)
    if loaded is None:
        return None
    explanations = []
    for index, document in enumerate(loaded[0]):
        for site in pod_sites(document):
            target = explain.Target.of(site, namespace=args.namespace or "", document=index)
            explanations.append(explain.explain_pod(site.template, settings, target, namespace_annotations=namespace_annotations))
    return explanations


def _explain_in_cluster(args: argparse.Namespace, settings: Any, stderr: TextIO) -> tuple[int, list[Any] | None]:
    from webhook.cluster import explain as cluster_explain
    from webhook.cluster import kube

    try:
        reference = cluster_explain.parse_reference(args.object)
        cluster_explain.check_name(args.namespace or "default", "namespace")
    except ValueError as error:
        print(f"entourage: {error}", file=stderr)
        return 2, None
    try:
        api = kube.Api(args.kubeconfig or (None if _in_cluster() else os.path.expanduser("~/.kube/config")))
    except Exception as error:  # noqa: BLE001 - the kubernetes package raises several kinds
        print(f"entourage: cannot configure API access: {error}", file=stderr)
        return 1, None
    try:
        return 0, cluster_explain.explain_object(
            api, reference, namespace=args.namespace or "default", settings=settings, configurations=tuple(args.webhook_configuration)
        )
    except kube.ApiError as error:
        print(f"entourage: {error}", file=stderr)
        return 1, None
    finally:
        api.close()
