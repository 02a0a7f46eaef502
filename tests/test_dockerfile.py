"""The Dockerfile and the locks it installs from: a reproducible, non-root image the chart can run.

No container engine here, so the Dockerfile is parsed (instructions, `\\` continuations, the
shell commands of RUN) and checked statically; the locks are checked against pyproject.toml and,
through the installed distributions' metadata, against the dependency graph itself. Whether each
pinned file is really on PyPI for linux/x86_64 and linux/aarch64 is `make lock-check` (network).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.test_chart import CHART, render
from webhook import cli

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements" / "image.lock"
BUILD_LOCK = REPO / "requirements" / "build.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The base images, by stage, as tags; a FROM line may add `@sha256:<digest>` to its tag.
BASE_TAGS = ["python:3.11-bookworm", "gcr.io/distroless/python3-debian12:nonroot"]
ENTRYPOINT = ["python3", "-m", "webhook"]
NONROOT_UID = 65532
# The image's platforms: CPython 3.11 on glibc Linux (markers are evaluated for x86_64; `make lock`
# fails unless aarch64 resolves to the same lock).
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
}
SHA256 = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------
# parsers


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their stage (0 = first FROM); `\\` joins lines, comments inside a continuation are dropped as Docker does."""
    instructions: list[Instruction] = []
    stage = -1
    start, parts = 0, list[str]()
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped.removesuffix("\\").strip())
        if continued:
            continue
        keyword, _, arguments = " ".join(part for part in parts if part).partition(" ")
        parts = []
        if keyword.upper() == "FROM":
            stage += 1
        assert stage >= 0, f"Dockerfile line {start}: {keyword} before the first FROM"
        instructions.append(Instruction(stage, keyword.upper(), arguments.strip(), start))
    assert not parts, "the Dockerfile ends inside a `\\` continuation"
    return instructions


def shell_commands(run: Instruction) -> list[list[str]]:
    """The commands of a shell-form RUN, split on `&&`."""
    assert not run.arguments.startswith("["), f"line {run.line}: exec-form RUN"
    return [shlex.split(command) for command in run.arguments.split("&&")]


def pip_installs(instructions: list[Instruction]) -> list[list[str]]:
    """Every `pip install` in a RUN, as the arguments after `install`."""
    installs = []
    for run in (i for i in instructions if i.keyword == "RUN"):
        for words in shell_commands(run):
            if "pip" in words and words[words.index("pip") + 1 : words.index("pip") + 2] == ["install"]:
                installs.append(words[words.index("pip") + 2 :])
    return installs


@dataclass
class Pin:
    requirement: Requirement
    hashes: list[str]
    via: list[str] = field(default_factory=list)

    @property
    def version(self) -> Version:
        (specifier,) = self.requirement.specifier
        return Version(specifier.version)


def parse_lock(path: Path) -> dict[str, Pin]:
    """A `uv pip compile --generate-hashes` file: `name==version \\ --hash=... ` then `# via` comments."""
    pins: dict[str, Pin] = {}
    last: Pin | None = None
    in_via = False
    for logical in path.read_text().replace("\\\n", " ").splitlines():
        stripped = logical.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if comment.startswith("via"):
                assert last is not None, f"{path.name}: a `# via` before any requirement"
                in_via = True
                if comment != "via":
                    last.via.append(comment.removeprefix("via").strip())
            elif in_via and last is not None and stripped.startswith("#   "):
                last.via.append(comment)
            continue
        in_via = False
        words = stripped.split()
        requirement = Requirement(words[0])
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path.name}: {name} is pinned twice"
        options = words[1:]
        assert all(SHA256.match(option) for option in options), f"{path.name}: {words[0]} has options other than --hash=sha256: {options}"
        last = pins[name] = Pin(requirement, [option.split(":", 1)[1] for option in options])
    return pins


def project_requirements() -> dict[str, Requirement]:
    requirements = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in requirements}


# ---------------------------------------------------------------------------------------------
# the locks


@pytest.mark.parametrize("lock", [LOCK, BUILD_LOCK], ids=lambda path: path.name)
def test_every_locked_package_is_pinned_to_one_version_with_its_sha256_hashes(lock: Path) -> None:
    pins = parse_lock(lock)
    assert pins, f"{lock} pins nothing"
    for name, pin in pins.items():
        specifiers = list(pin.requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==" and "*" not in specifiers[0].version, (
            f"{lock.name}: {pin.requirement} is not pinned to one version with =="
        )
        assert pin.hashes, f"{lock.name}: {name} has no --hash=sha256"
        assert not pin.requirement.url, f"{lock.name}: {name} comes from a URL"
    assert "make lock" in lock.read_text().splitlines()[1], f"{lock.name}'s header should name `make lock` as the way to regenerate it"


def test_the_image_lock_holds_exactly_pyprojects_dependencies_at_versions_they_allow() -> None:
    pins = parse_lock(LOCK)
    wanted = project_requirements()
    top_level = {name for name, pin in pins.items() if "entourage (pyproject.toml)" in pin.via}
    assert top_level == set(wanted), (
        f"the lock's top-level requirements {sorted(top_level)} are not pyproject.toml's dependencies {sorted(wanted)}: run `make lock`"
    )
    for name, requirement in wanted.items():
        assert pins[name].hashes, f"{name} has no hash in the lock"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"the lock pins {name}=={pins[name].version}, outside pyproject.toml's {requirement}: run `make lock`"
        )


def _dependency_graph(pins: dict[str, Pin], roots: list[Requirement], lock: str) -> set[str]:
    """The names reached from ``roots`` through each locked version's metadata, each checked to be
    pinned at a version its requirer allows.

    The metadata is the test environment's: it must run the locked versions (`make venv` installs
    both locks first), so the image runs (and is compiled by) what the tests ran.
    """
    seen: set[tuple[str, frozenset[str]]] = set()
    queue: list[tuple[Requirement, str]] = [(r, "pyproject.toml") for r in roots]
    while queue:
        requirement, wanted_by = queue.pop()
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{wanted_by} requires {requirement}, which {lock} does not pin: run `make lock`"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{wanted_by} requires {requirement}, {lock} pins {pins[name].version}: run `make lock`"
        )
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        installed = importlib.metadata.version(requirement.name)
        assert Version(installed) == pins[name].version, (
            f"the tests ran {requirement.name} {installed}, the image gets {pins[name].version}: run `make lock` or reinstall the venv from the lock"
        )
        extras = requirement.extras or {""}
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(dependency.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": extra}) for extra in extras):
                queue.append((dependency, f"{requirement.name} {installed}"))
    return {name for name, _ in seen}


def test_the_image_lock_is_the_whole_dependency_graph_and_nothing_more() -> None:
    """Walked from pyproject's requirements (with their extras) through each locked version's metadata."""
    pins = parse_lock(LOCK)
    reached = _dependency_graph(pins, list(project_requirements().values()), LOCK.name)
    assert reached == set(pins), f"the lock pins packages nothing requires: {sorted(set(pins) - reached)}"


def test_the_build_lock_is_the_build_backend_and_the_compiler_with_their_dependencies() -> None:
    """[build-system] requires and the ``compile`` extra (mypyc, for scripts/compile.py), and nothing more."""
    pins = parse_lock(BUILD_LOCK)
    wanted = [
        Requirement(text) for text in (*PYPROJECT["build-system"]["requires"], *PYPROJECT["project"]["optional-dependencies"]["compile"])
    ]
    top_level = {name for name, pin in pins.items() if not pin.via}  # uv names no requirer for what was asked for
    assert top_level == {canonicalize_name(r.name) for r in wanted}, (
        f"build.lock's top-level requirements {sorted(top_level)} are not {[str(r) for r in wanted]}: run `make lock`"
    )
    reached = _dependency_graph(pins, wanted, BUILD_LOCK.name)
    assert reached == set(pins), f"build.lock pins packages nothing requires: {sorted(set(pins) - reached)}"


# ---------------------------------------------------------------------------------------------
# the Dockerfile


def test_the_dockerfile_parser_joins_continuations_and_splits_stages() -> None:
    parsed = parse_dockerfile("# c\nFROM a AS b\nRUN x \\\n  # inside\n  && y \\\n\n  z\nFROM c\nUSER 1\n")
    assert parsed == [
        Instruction(0, "FROM", "a AS b", 2),
        Instruction(0, "RUN", "x && y z", 3),
        Instruction(1, "FROM", "c", 8),
        Instruction(1, "USER", "1", 9),
    ]
    assert shell_commands(parsed[1]) == [["x"], ["y", "z"]]
    with pytest.raises(AssertionError, match="continuation"):
        parse_dockerfile("FROM a\nRUN x \\\n")


def test_the_build_installs_the_locks_with_hashes_and_then_the_package_without_fetching_anything() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    installs = pip_installs(instructions)
    assert installs, "the Dockerfile has no pip install"
    locked = [words for words in installs if "-r" in words]
    packages = [words for words in installs if "-r" not in words]
    assert {lock for words in locked for lock in _locks(words)} == {"requirements/image.lock", "requirements/build.lock"}
    for words in locked:
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(words), (
            f"a lock is installed without hashes or with resolution: {words}"
        )
    (image,) = (words for words in locked if "--target" in words)
    assert _locks(image) == ["requirements/image.lock"] and image[image.index("--target") + 1] == "/opt/entourage"
    (package,) = packages
    assert package[-1] == ".", f"the one unlocked install should be the package itself: {package}"
    assert {"--no-deps", "--no-index", "--no-build-isolation"} <= set(package), f"installing the package may fetch something: {package}"
    assert package[package.index("--target") + 1] == "/opt/entourage"
    copied = " ".join(i.arguments for i in instructions if i.keyword == "COPY")
    assert "requirements/image.lock" in copied and "requirements/build.lock" in copied


def _locks(words: list[str]) -> list[str]:
    return [words[index + 1] for index, word in enumerate(words) if word == "-r"]


def test_the_build_compiles_the_hot_path_and_ships_the_build_beside_the_package() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    commands = [words for run in instructions if run.keyword == "RUN" and run.stage == 0 for words in shell_commands(run)]
    compile_step = commands.index(["python", "scripts/compile.py"])
    shipped = commands.index(["cp", "-r", "webhook/_compiled", "/opt/entourage/webhook/_compiled"])
    assert compile_step < shipped, "the build is copied after it is made"
    copied = [i.arguments for i in instructions if i.keyword == "COPY" and i.stage == 0]
    assert "scripts/compile.py ./scripts/compile.py" in copied and "webhook ./webhook" in copied


def test_the_build_context_sends_the_locks_and_leaves_out_local_state() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]

    def sent(path: str) -> bool:
        included = True
        for pattern in patterns:  # the last matching pattern wins, as in Docker
            negated = pattern.startswith("!")
            glob = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, glob) or path.startswith(glob + "/"):
                included = negated
        return included

    for path in [
        "pyproject.toml",
        "README.md",
        "webhook/cli.py",
        "requirements/image.lock",
        "requirements/build.lock",
        "scripts/compile.py",
    ]:
        assert sent(path), f".dockerignore leaves out {path}, which the build needs"
    for path in [
        ".venv",
        ".git",
        ".tools",
        "certs",
        "webhook/__pycache__",
        "webhook/_compiled/manifest.json",
        "scripts/mutation_report.py",
    ]:
        assert not sent(path), f".dockerignore sends {path}"


def test_the_base_images_are_pinned_by_digest_or_carry_the_documented_tag() -> None:
    text = DOCKERFILE.read_text()
    bases = [i.arguments.split()[0] for i in parse_dockerfile(text) if i.keyword == "FROM"]
    assert len(bases) == len(BASE_TAGS)
    for base, tag in zip(bases, BASE_TAGS, strict=True):
        name, _, digest = base.partition("@")
        assert name == tag, f"FROM {base}: expected the tag {tag} (optionally @sha256:...)"
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"FROM {base}: not a sha256 digest"
        else:
            assert f"crane digest {tag}" in text, f"FROM {base} has no digest and the Dockerfile does not say how to pin it"
    readme = (REPO / "README.md").read_text()
    assert "crane digest" in readme and "make image" in readme and "make lock" in readme


def test_the_image_runs_as_nonroot_from_distroless_with_no_shell_needed() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    final = [i for i in instructions if i.stage == max(i.stage for i in instructions)]
    keywords = {i.keyword: i.arguments for i in final}
    user, _, group = keywords["USER"].partition(":")
    assert user == str(NONROOT_UID) and group in ("", str(NONROOT_UID)), f"USER {keywords['USER']}: expected the numeric nonroot uid"
    assert "RUN" not in keywords, "distroless has no shell for RUN"
    assert "PYTHONPATH=/opt/entourage" in keywords["ENV"]
    assert json.loads(keywords["ENTRYPOINT"]) == ENTRYPOINT
    assert json.loads(keywords["CMD"]) == ["serve"]
    assert (REPO / "webhook" / "__main__.py").exists(), "ENTRYPOINT runs `python3 -m webhook`"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == NONROOT_UID


def test_every_chart_container_of_the_image_sets_only_arguments_the_entrypoint_accepts() -> None:
    repository = "registry.example/entourage-under-test"
    docs = render({"image": {"repository": repository}, "selfTest": {"enabled": True}, "configValidation": {"enabled": True}})
    containers: list[tuple[str, dict[str, Any]]] = []
    for doc in docs:
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec) if doc["kind"] != "Pod" else spec
        pod = pod.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", pod)
        for item in pod.get("containers", []) + pod.get("initContainers", []):
            if str(item.get("image", "")).startswith(repository):
                containers.append((f"{doc['kind']}/{doc['metadata']['name']}", item))
    assert len(containers) >= 2, f"expected the Deployment and the validation Job to run the image: {[c for c, _ in containers]}"
    for where, item in containers:
        assert "command" not in item, f"{where} overrides the image's ENTRYPOINT {ENTRYPOINT}"
        try:
            cli._parser().parse_args(item["args"])
        except SystemExit:
            pytest.fail(f"{where}: `python3 -m webhook {' '.join(item['args'])}` is not a valid command line")
