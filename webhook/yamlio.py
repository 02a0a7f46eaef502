"""YAML in and out for manifests: multi-document, key order kept, scripts as readable blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from webhook.engine.caches import FrozenDict, FrozenList


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the wait-for and tail scripts) as literal ``|`` blocks, and
    never anchors: injected containers are shared objects (profiles/common.shared), and a
    manifest must spell each one out rather than say ``*id001``."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(FrozenDict, yaml.SafeDumper.represent_dict)  # shared injected containers
_Dumper.add_representer(FrozenList, yaml.SafeDumper.represent_list)


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases: a 552-byte file of nested aliases ("billion laughs") expanded
    to 88.6 MB in 105 s. Kubernetes manifests have no use for them (kubectl's output has none)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML's stubs leave it unannotated
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not accepted in manifests: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream (empty documents dropped); raises yaml.YAMLError, also
    for any alias."""
    return [document for document in yaml.load_all(text, Loader=_Loader) if document is not None]


def dump_all(documents: Iterable[Any]) -> str:
    return yaml.dump_all(list(documents), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
