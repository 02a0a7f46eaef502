"""What a pod asked for, validated: the value types the annotation parsers produce and inject reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from webhook.engine import grammar

WaitKind = Literal["tcp", "http", "https", "dns"]


@dataclass(frozen=True)
class Route:
    """One ambassador route: 127.0.0.1:local_port → host:port, in TLS when ``tls``."""

    local_port: int
    host: str
    port: int
    tls: bool

    @property
    def upstream(self) -> str:
        return grammar.format_host_port(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.local_port}={'tls://' if self.tls else ''}{self.upstream}"


@dataclass(frozen=True)
class WaitTarget:
    """One wait-for target; ``target`` is exactly what the script receives as its argument."""

    kind: WaitKind
    target: str
    host: str


@dataclass(frozen=True)
class InjectionRequest:
    """What a pod asked for, validated; the engine turns it into containers and volumes."""

    logging: str | None = None
    logging_paths: tuple[str, ...] = ()
    logging_container: str | None = None
    routes: tuple[Route, ...] = ()
    wait_for: tuple[WaitTarget, ...] = ()
    wait_for_timeout: int = 300
    adapters: tuple[str, ...] = ()
    native_sidecars: bool | None = None
    ambassadors_first: bool = True
    """Native mode: ambassadors start before the pod's own init containers (which may use them)."""
    resources: Mapping[str, Mapping[tuple[str, str], str]] = field(default_factory=dict)
    """Annotation kind (``wait-for``) → {(section, resource): quantity}."""
    params: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    """(config kind, profile) → {param: validated value}."""
    warnings: tuple[str, ...] = ()

    @property
    def wants_anything(self) -> bool:
        return bool(self.logging or self.routes or self.wait_for or self.adapters)
