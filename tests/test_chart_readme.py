"""charts/entourage/README.md lists every value of values.yaml, with its default and its comment.

The table between `<!-- values:begin -->` and `<!-- values:end -->` is generated from values.yaml
(the `# --` comment above each key); REFRESH_README=1 rewrites it, otherwise a stale table fails.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "entourage"
README = CHART / "README.md"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
# Maps whose keys are data, not settings: listed as one value each.
OPAQUE = {"webhook.annotations", "grafanaDashboard.labels"}


def _links(text: str) -> str:
    return re.sub(r"https?://\S+", lambda url: f"[docs]({url.group(0).rstrip('.,)')})", text).replace("|", "/")


def keys_with_comments() -> list[tuple[str, str]]:
    """(dotted key path, its comment) for every key of values.yaml, in file order."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if stripped.startswith("#   "):
                continue  # an indented example (the profile under config.profiles), not prose
            body = stripped.lstrip("#").strip()
            comment = [body[3:]] if body.startswith("-- ") else [*comment, body] if comment else []
            continue
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match[2]])
        stack.append((indent, match[2]))
        found.append((path, " ".join(comment).strip()))
        comment = []
    return found


def table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| key | default | description |", "| --- | --- | --- |"]
    for path, comment in keys_with_comments():
        if any(path.startswith(f"{opaque}.") for opaque in OPAQUE):
            continue
        value: Any = values
        for part in path.split("."):
            value = value[part]
        if not comment and "." in path:
            comment = f"see `{path.rsplit('.', 1)[0]}`"
        if isinstance(value, dict) and value and path not in OPAQUE:
            rows.append(f"| `{path}` | | {_links(comment)} |")
        else:
            rows.append(f"| `{path}` | `{json.dumps(value)}` | {_links(comment)} |")
    return "\n".join(rows)


def test_the_chart_readme_lists_every_value_with_its_default_and_comment() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    fresh = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if os.environ.get("REFRESH_README") == "1":
        README.write_text(fresh)
    assert text == fresh, "charts/entourage/README.md's values table is stale: run REFRESH_README=1 pytest tests/test_chart_readme.py"


def test_every_key_of_values_yaml_is_in_the_table() -> None:
    listed = set(re.findall(r"^\| `([^`]+)` \|", README.read_text(), flags=re.MULTILINE))
    paths = {path for path, _ in keys_with_comments() if not any(path.startswith(f"{opaque}.") for opaque in OPAQUE)}
    assert paths <= listed, sorted(paths - listed)
