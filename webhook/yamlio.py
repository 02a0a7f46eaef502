"""YAML in and out for manifests: multi-document, key order kept, scripts as readable blocks."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import yaml

from webhook.engine.frozen import FrozenDict, FrozenList


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


class AliasRefused(yaml.YAMLError):
    """A manifest used a YAML alias (``*name``). Each alias stands for a whole copy of what it
    names, so a few nested ones multiply a small file without bound: a 552-byte file took 105 s
    and wrote 88.6 MB. Manifests have no need for them; refused before anything is built."""


class _Loader(yaml.SafeLoader):
    """safe_load that stops at the first alias, saying on which line."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise AliasRefused(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted: write the value out in full"
            )
        return super().compose_node(parent, index)


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream (empty documents dropped); raises yaml.YAMLError, and
    AliasRefused at the first alias, numbering its document as ``entourage inject`` does."""
    documents = []
    try:
        for document in yaml.load_all(text, Loader=_Loader):
            if document is not None:
                documents.append(document)
    except AliasRefused as error:
        raise AliasRefused(f"document {len(documents)}, {error}") from None
    return documents


def dump_all(documents: Iterable[Any]) -> str:
    return yaml.dump_all(list(documents), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


_MARKER = re.compile(r"^(---|\.\.\.)(?=[ \t\r]|$)", re.MULTILINE)


def document_texts(text: str, documents: list[Any]) -> list[str] | None:
    """The source text of each document ``load_all`` returned, so one that passes through
    unchanged is written back byte for byte (comments, quoting, key order and all); the text
    begins at its ``---`` line, if it has one. None when the stream cannot be cut at its
    markers into exactly those documents (directives, say): then everything is re-dumped."""
    cuts = [0]
    for match in _MARKER.finditer(text):
        if match[1] == "---":
            cuts.append(match.start())
        else:
            cuts.append(text.find("\n", match.end()) + 1 or len(text))
    cuts.append(len(text))
    texts: list[str] = []
    values: list[Any] = []
    for start, end in itertools.pairwise(cuts):
        piece = text[start:end]
        try:
            loaded = load_all(piece)
        except yaml.YAMLError:
            return None
        if len(loaded) > 1:
            return None
        if loaded:
            texts.append(piece)
            values.append(loaded[0])
    return texts if values == documents else None


def join_documents(texts: Iterable[str]) -> str:
    """Documents, each its own text (``---`` line or not), as one stream with a ``---`` between."""
    out: list[str] = []
    for index, piece in enumerate(texts):
        piece = piece if piece.endswith("\n") else piece + "\n"
        starts_marked = _MARKER.match(piece) is not None and piece.startswith("---")
        out.append(piece if index == 0 or starts_marked else "---\n" + piece)
    return "".join(out)


def leading_comments(text: str) -> str:
    """The comment lines a document's text begins with (after its ``---``), such as helm's
    ``# Source:`` line: kept above a document that is injected and so written anew."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("---"):
        lines = lines[1:]
    kept = []
    for line in lines:
        if not line.lstrip().startswith("#"):
            break
        kept.append(line)
    return "".join(kept)
