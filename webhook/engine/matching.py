"""What the apiserver decides before it calls a webhook: rules, label selectors, matchConditions.

Pure functions over the webhook configuration's own fields, for ``entourage explain``: each
returns what did not match, so the answer can name the missing label and the command that adds
it. matchConditions are CEL; only the simple forms are evaluated here (the chart's
``has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('P/'))``,
``has()``, label and annotation lookups, ``&&``, ``||``, ``!``); anything else is reported as
"cannot be evaluated offline" rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``key operator values``."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{self.key} {self.operator}"
        return f"{self.key} {self.operator} [{', '.join(self.values)}]"

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        return False  # an operator Kubernetes would have refused when the configuration was created


def requirements(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """A LabelSelector's terms; an absent or empty selector has none (it matches everything)."""
    if not isinstance(selector, Mapping):
        return []
    terms = [Requirement(str(key), "In", (str(value),)) for key, value in (selector.get("matchLabels") or {}).items()]
    terms += (
        Requirement(str(expression.get("key")), str(expression.get("operator")), tuple(map(str, expression.get("values") or ())))
        for expression in selector.get("matchExpressions") or ()
    )
    return terms


def unmet(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> list[Requirement]:
    """The selector's terms these labels do not satisfy; empty when the selector matches."""
    return [term for term in requirements(selector) if not term.holds(labels)]


def label_fix(term: Requirement, kind: str, set_label: str) -> str:
    """What to do about one unmet term: ``set_label`` is a command template with ``{label}`` for
    ``key=value`` (or ``key-`` to remove), e.g. ``kubectl label namespace shop {label}``."""
    if term.operator == "In":
        return set_label.format(label=f"{term.key}={term.values[0]}") + (" --overwrite" if kind == "namespace" else "")
    if term.operator == "Exists":
        return set_label.format(label=f"{term.key}=<value>")
    return set_label.format(label=f"{term.key}-")  # NotIn, DoesNotExist: take the label off


def rule_matches(rules: Any, *, group: str, version: str, resource: str, operation: str) -> bool:
    """Whether a webhook's rules cover this operation on this resource (``*`` wildcards included;
    matchPolicy Equivalent is not modelled: our kinds are asked for by their own group)."""
    for rule in rules or ():
        if (
            _covers(rule.get("operations"), operation)
            and _covers(rule.get("apiGroups"), group)
            and _covers(rule.get("apiVersions"), version)
            and (_covers(rule.get("resources"), resource) or "*/*" in (rule.get("resources") or ()))
        ):
            return True
    return False


def _covers(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


# -- matchConditions -------------------------------------------------------------------------------

UNKNOWN = None
"""What ``condition`` returns for an expression it cannot evaluate."""

_HAS = re.compile(r"has\(object\.metadata\.(labels|annotations)\)")
_EXISTS_PREFIX = re.compile(r"object\.metadata\.(labels|annotations)\.exists\((\w+),\s*\2\.startsWith\((['\"])([^'\"]*)\3\)\)")
_IN = re.compile(r"(['\"])([^'\"]+)\1\s+in\s+object\.metadata\.(labels|annotations)")
_EQUALS = re.compile(r"object\.metadata\.(labels|annotations)\[(['\"])([^'\"]+)\2\]\s*(==|!=)\s*(['\"])([^'\"]*)\5")
_LITERAL = {"true": True, "false": False}


def condition(expression: str, obj: Mapping[str, Any]) -> bool | None:
    """Evaluate a matchCondition over ``object`` (the pod the apiserver would send), or None."""
    text = expression.strip()
    for operator, combine in (("||", any), ("&&", all)):
        parts = _split_top_level(text, operator)
        if len(parts) > 1:
            values = [condition(part, obj) for part in parts]
            if UNKNOWN in values:
                return UNKNOWN
            return combine(values)
    if text.startswith("!"):
        inner = condition(text[1:], obj)
        return UNKNOWN if inner is UNKNOWN else not inner
    if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        return condition(text[1:-1], obj)
    return _term(text, obj)


def _term(text: str, obj: Mapping[str, Any]) -> bool | None:
    found = obj.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    if text in _LITERAL:
        return _LITERAL[text]
    if match := _HAS.fullmatch(text):
        return metadata.get(match[1]) is not None
    if match := _EXISTS_PREFIX.fullmatch(text):
        return any(str(key).startswith(match[4]) for key in _map(metadata, match[1]))
    if match := _IN.fullmatch(text):
        return match[2] in _map(metadata, match[3])
    if match := _EQUALS.fullmatch(text):
        values = _map(metadata, match[1])
        if match[3] not in values:
            return UNKNOWN  # CEL raises "no such key" here; the apiserver then applies failurePolicy
        return bool((values[match[3]] == match[6]) == (match[4] == "=="))
    return UNKNOWN


def _map(metadata: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = metadata.get(key)
    return value if isinstance(value, Mapping) else {}


def _balanced(text: str) -> bool:
    depth = 0
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0


def _split_top_level(text: str, operator: str) -> list[str]:
    """Split at ``operator`` outside parentheses and quotes."""
    parts, depth, quote, start, index = [], 0, "", 0, 0
    while index < len(text):
        character = text[index]
        if quote:
            quote = "" if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character in "([":
            depth += 1
        elif character in ")]":
            depth -= 1
        elif depth == 0 and text.startswith(operator, index):
            parts.append(text[start:index].strip())
            start = index = index + len(operator)
            continue
        index += 1
    parts.append(text[start:].strip())
    return parts
