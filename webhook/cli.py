"""The `entourage` command: serve, certs, inject. Argument parsing and YAML in/out only."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from webhook import __version__, certs, yamlio
from webhook.config import load_settings
from webhook.errors import ConfigError, PodDenied
from webhook.workloads import inject_document


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entourage", description="Kubernetes mutating webhook that injects companion containers.")
    parser.add_argument("--version", action="version", version=f"entourage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve POST /mutate over HTTPS")
    serve.add_argument("--tls-cert-file", required=True, help="PEM serving certificate (chain)")
    serve.add_argument("--tls-private-key-file", required=True, help="PEM private key of the certificate")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8443, help="port to listen on (default 8443)")
    serve.add_argument("--config", help="YAML configuration file (profiles, defaults, limits)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    certificates = commands.add_parser("certs", help="write a CA and a serving certificate for the webhook Service")
    certificates.add_argument("--service", required=True, help="the webhook's Service name")
    certificates.add_argument("--namespace", required=True, help="the Service's namespace")
    certificates.add_argument("--out-dir", required=True, help="directory for ca.crt, tls.crt and tls.key")
    certificates.add_argument("--days", type=int, default=certs.SERVING_DAYS, help=f"serving certificate validity (default {certs.SERVING_DAYS})")
    certificates.add_argument("--force", action="store_true", help="overwrite existing files")

    inject = commands.add_parser("inject", help="inject manifests offline (Pods and workload templates)")
    inject.add_argument("-f", "--filename", required=True, help="YAML file with one or more documents, or - for stdin")
    inject.add_argument("--config", help="YAML configuration file (profiles, defaults, limits)")
    inject.add_argument("--native-sidecars", choices=["true", "false"], help="as the cluster would resolve nativeSidecars: auto")
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "certs":
            return _certs(args, stdout)
        if args.command == "inject":
            return _inject(args, stdin, stdout, stderr)
        return _serve(args)
    except ConfigError as error:
        print(f"entourage: configuration error: {error}", file=stderr)
        return 2
    except (OSError, FileExistsError) as error:
        print(f"entourage: {error}", file=stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    from webhook.server import ServerState, serve

    state = ServerState(settings=load_settings(args.config))
    serve(state, cert_file=args.tls_cert_file, key_file=args.tls_private_key_file, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _certs(args: argparse.Namespace, stdout: TextIO) -> int:
    certificates = certs.generate(args.service, args.namespace, days=args.days)
    paths = certs.write(certificates, args.out_dir, force=args.force)
    print(f"wrote {', '.join(str(path) for path in paths)}", file=sys.stderr)
    print(certificates.ca_bundle, file=stdout)
    return 0


def _inject(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    settings = load_settings(args.config)
    if args.native_sidecars:
        settings = replace(settings, native_sidecars=args.native_sidecars)
    if args.filename == "-":
        text = stdin.read()
    else:
        with open(args.filename, encoding="utf-8") as file:
            text = file.read()
    try:
        documents = yamlio.load_all(text)
    except yaml.YAMLError as error:
        print(f"entourage: {args.filename}: not valid YAML: {error}", file=stderr)
        return 1
    output: list[Any] = []
    failed = 0
    for index, document in enumerate(documents):
        try:
            injected, injection = inject_document(document, settings)
        except PodDenied as denial:
            failed += 1
            name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
            print(f"entourage: document {index} ({document.get('kind')} {name}): {denial}", file=stderr)
            injected, injection = document, None
        if injection is not None:
            for warning in injection.warnings:
                print(f"entourage: warning: document {index}: {warning}", file=stderr)
        output.append(injected)
    stdout.write(yamlio.dump_all(output))
    return 1 if failed else 0
