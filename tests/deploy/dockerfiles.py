"""Dockerfiles as data (dockerfile-parse), and checks over them. No container engine runs here: images are parsed
and checked, never built."""

from __future__ import annotations

import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

BUILD_TOOLS = {"build-essential", "gcc", "g++", "cmake", "make", "clang", "gfortran", "cargo", "rustc", "cc"}
ROOT_USERS = {"root", "0"}


@dataclass
class Stage:
    name: str
    base: str  # an image reference, or the name of an earlier stage
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def parse(source: Path | str) -> list[Stage]:
    """The stages of a Dockerfile (a path, or the text itself), with FROM's ARG defaults substituted."""
    text = source.read_text() if isinstance(source, Path) else source
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in parser.structure:
        kind, value = item["instruction"], item["value"].strip()
        if kind == "COMMENT":
            continue
        if kind == "FROM":
            words = [w for w in value.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else str(len(stages))
            stages.append(Stage(name, _substitute(words[0], global_args)))
        elif not stages and kind == "ARG":
            key, _, default = value.partition("=")
            global_args[key] = default.strip('"')
        elif stages:
            stages[-1].instructions.append((kind, value))
    return stages


def arg_default(stage: Stage, name: str) -> str | None:
    for value in stage.values("ARG"):
        key, _, default = value.partition("=")
        if key == name:
            return default.strip('"')
    return None


def check_pinned_bases(stages: list[Stage]) -> list[str]:
    """Every base image carries an exact tag or a digest; no `latest`, no untagged image."""
    problems = []
    names: set[str] = set()
    for stage in stages:
        ref = stage.base
        if ref not in names and ref != "scratch":
            repository, _, digest = ref.partition("@")
            last = repository.rsplit("/", 1)[-1]
            tag = last.partition(":")[2]
            if "$" in ref:
                problems.append(f"FROM {ref}: unresolved variable")
            elif not digest and not tag:
                problems.append(f"FROM {ref}: no tag, no digest")
            elif not digest and tag == "latest":
                problems.append(f"FROM {ref}: the moving tag 'latest'")
        names.add(stage.name)
    return problems


def check_non_root(stages: list[Stage]) -> list[str]:
    users = stages[-1].values("USER")
    if not users:
        return ["final stage has no USER: it runs as root"]
    user = users[-1].split(":")[0]
    return [f"final stage runs as {user}"] if user in ROOT_USERS else []


def check_healthcheck(stages: list[Stage]) -> list[str]:
    checks = stages[-1].values("HEALTHCHECK")
    if not checks or checks[-1].upper().startswith("NONE"):
        return ["final stage has no HEALTHCHECK"]
    return []


def _installed_packages(run: str) -> set[str]:
    """Package names an apt-get/apk/yum/dnf install names in one RUN."""
    packages: set[str] = set()
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command.replace("\\\n", " "), posix=True) if command.strip() else []
        for i, word in enumerate(words):
            if word in {"install", "add"} and i and words[i - 1] in {"apt-get", "apt", "apk", "yum", "dnf"}:
                packages |= {w for w in words[i + 1 :] if not w.startswith("-")}
    return packages


def check_no_build_tools_in_final(stages: list[Stage]) -> list[str]:
    """The final stage installs no compiler and is not based on a stage that did."""
    final = stages[-1]
    problems = []
    for run in final.values("RUN"):
        if tools := _installed_packages(run) & BUILD_TOOLS:
            problems.append(f"final stage installs {sorted(tools)}")
    by_name = {s.name: s for s in stages[:-1]}
    base = by_name.get(final.base)
    while base is not None:
        if any(_installed_packages(run) & BUILD_TOOLS for run in base.values("RUN")):
            problems.append(f"final stage is built on stage {base.name}, which installs build tools")
        base = by_name.get(base.base)
    return problems


ALL_CHECKS = (check_pinned_bases, check_non_root, check_healthcheck, check_no_build_tools_in_final)
