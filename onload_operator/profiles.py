"""``onload-profile-to-configmap``: OpenOnload profiles (``.opf``) as ConfigMaps, by parsing them, never running them.

A profile is a shell fragment that OpenOnload's ``onload`` script sources; the ones worth putting in a cluster use
three constructs only, and only those are accepted:

- ``onload_set VAR VALUE`` and ``onload_set VAR=VALUE`` (split at the first ``=``);
- ``onload_import NAME``: another profile, looked up as ``NAME``, ``NAME.opf`` and ``NAME.opf-fragment`` in the
  importing profile's directory first, then along the search path;
- comments, blank lines, shell quoting (single, double, backslash) and line continuations.

Anything else (variables, command substitution, conditionals, functions, pipes, redirections, globs, other commands)
is an error naming the file and the line, as is an import cycle. Each profile becomes one ConfigMap
``onload-<profile>-profile`` labelled ``app.kubernetes.io/part-of: onload``, whose data pods take with ``envFrom``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILE_SUFFIXES = (".opf", ".opf-fragment")
PART_OF_LABEL = {"app.kubernetes.io/part-of": "onload"}
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
OPERATORS = {
    ";": "command separator ';'",
    "&": "'&'",
    "|": "pipe '|'",
    "<": "redirection '<'",
    ">": "redirection '>'",
    "(": "subshell or function '('",
    ")": "subshell or function ')'",
    "$": "variable or command substitution '$'",
    "`": "command substitution '`'",
}
GLOB_CHARACTERS = "*?["
# The characters a backslash escapes inside double quotes (others keep the backslash).
DOUBLE_QUOTE_ESCAPES = '$`"\\'


class ProfileError(Exception):
    """A profile that is not made of onload_set, onload_import and comments, or that cannot be found."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


@dataclass(frozen=True)
class Command:
    line: int
    words: tuple[str, ...]


@dataclass
class _Lexer:
    """Splits shell text into commands of words, honouring quoting, and refusing every expansion and operator."""

    path: Path
    text: str
    position: int = 0
    line: int = 1
    words: list[str] = field(default_factory=list)

    def error(self, message: str, line: int | None = None) -> ProfileError:
        return ProfileError(self.path, self.line if line is None else line, message)

    def next_char(self) -> str:
        char = self.text[self.position]
        self.position += 1
        if char == "\n":
            self.line += 1
        return char

    def peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def commands(self) -> Iterator[Command]:
        start = self.line
        while self.position < len(self.text):
            char = self.peek()
            if char == "\n":
                self.next_char()
                if self.words:
                    yield Command(start, tuple(self.words))
                self.words = []
                start = self.line
            elif char in " \t":
                self.next_char()
            elif char == "#":
                while self.peek() not in ("", "\n"):
                    self.next_char()
            elif char == "\\" and self.text.startswith("\\\n", self.position):
                self.next_char()
                self.next_char()
            else:
                if not self.words:
                    start = self.line
                self.words.append(self.word())
        if self.words:
            yield Command(start, tuple(self.words))

    def word(self) -> str:
        parts: list[str] = []
        while (char := self.peek()) not in ("", " ", "\t", "\n"):
            if char == "'":
                parts.append(self.single_quoted())
            elif char == '"':
                parts.append(self.double_quoted())
            elif char == "\\":
                self.next_char()
                if self.peek() == "\n":  # a continuation inside a word joins it to the next line
                    self.next_char()
                elif self.peek():
                    parts.append(self.next_char())
            elif char in OPERATORS:
                raise self.error(f"{OPERATORS[char]} is not supported: a profile is parsed, not run")
            elif char in GLOB_CHARACTERS or (char == "~" and not parts):
                raise self.error(f"unquoted {char!r} would be expanded by the shell; quote the value")
            else:
                parts.append(self.next_char())
        return "".join(parts)

    def single_quoted(self) -> str:
        start = self.line
        self.next_char()
        end = self.text.find("'", self.position)
        if end < 0:
            raise self.error("unterminated single quote", start)
        value = self.text[self.position : end]
        while self.position <= end:
            self.next_char()
        return value

    def double_quoted(self) -> str:
        start = self.line
        self.next_char()
        parts: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.error("unterminated double quote", start)
            self.next_char()
            if char == '"':
                return "".join(parts)
            if char in "$`":
                raise self.error(f"{OPERATORS[char]} is not supported: a profile is parsed, not run")
            if char == "\\":
                escaped = self.peek()
                if escaped == "\n":
                    self.next_char()
                    continue
                if escaped in DOUBLE_QUOTE_ESCAPES and escaped:
                    parts.append(self.next_char())
                    continue
            parts.append(char)


def _candidates(name: str, directories: Sequence[Path]) -> list[Path]:
    names = [name] if name.endswith(PROFILE_SUFFIXES) else [name + suffix for suffix in PROFILE_SUFFIXES]
    if Path(name).is_absolute():
        return [Path(candidate) for candidate in names]
    return [directory / candidate for directory in directories for candidate in names]


def _find(name: str, directories: Sequence[Path]) -> Path | None:
    for candidate in _candidates(name, directories):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class ProfileReader:
    """Reads profiles into their variables; ``search_path`` is where imports are looked for after the profile's dir."""

    search_path: tuple[Path, ...] = ()

    def read(self, path: Path) -> dict[str, str]:
        variables: dict[str, str] = {}
        self._read(path, variables, ())
        return variables

    def resolve(self, profile: str) -> Path:
        """A profile given on the command line: a file, else a name along the search path."""
        path = Path(profile)
        if path.is_file():
            return path
        found = _find(profile, self.search_path)
        if found is None:
            searched = ", ".join(str(candidate) for candidate in [path, *_candidates(profile, self.search_path)])
            raise ProfileError(profile, None, f"profile not found (looked for {searched})")
        return found

    def _read(self, path: Path, variables: dict[str, str], importers: tuple[Path, ...]) -> None:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(path, None, f"cannot read the profile: {exc}") from exc
        importers = (*importers, path.resolve())
        for command in _Lexer(path, text).commands():
            verb, arguments = command.words[0], command.words[1:]
            if verb == "onload_set":
                name, value = self._assignment(path, command.line, arguments)
                variables[name] = value
            elif verb == "onload_import":
                self._import(path, command.line, arguments, variables, importers)
            elif "=" in verb and VARIABLE.fullmatch(verb.split("=", 1)[0]):
                raise ProfileError(path, command.line, f"shell variable assignment {verb!r} is not supported")
            else:
                raise ProfileError(
                    path, command.line, f"{verb!r} is not supported: only onload_set, onload_import and comments"
                )

    @staticmethod
    def _assignment(path: Path, line: int, arguments: tuple[str, ...]) -> tuple[str, str]:
        if len(arguments) == 1 and "=" in arguments[0]:
            name, value = arguments[0].split("=", 1)
        elif len(arguments) == 2:
            name, value = arguments
        else:
            raise ProfileError(path, line, "onload_set takes VAR VALUE or VAR=VALUE")
        if not VARIABLE.fullmatch(name):
            raise ProfileError(path, line, f"{name!r} is not an environment variable name")
        return name, value

    def _import(
        self, path: Path, line: int, arguments: tuple[str, ...], variables: dict[str, str], importers: tuple[Path, ...]
    ) -> None:
        if len(arguments) != 1:
            raise ProfileError(path, line, "onload_import takes one profile name")
        directories = (path.parent, *self.search_path)
        imported = _find(arguments[0], directories)
        if imported is None:
            searched = ", ".join(str(candidate) for candidate in _candidates(arguments[0], directories))
            raise ProfileError(path, line, f"imported profile {arguments[0]!r} not found (looked for {searched})")
        if imported.resolve() in importers:
            chain = " -> ".join(p.name for p in (*importers, imported.resolve()))
            raise ProfileError(path, line, f"import cycle: {chain}")
        self._read(imported, variables, importers)


def profile_name(path: Path) -> str:
    stem = path.name
    for suffix in PROFILE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return stem


def configmap(name: str, variables: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
    configmap_name = f"onload-{name}-profile"
    if len(configmap_name) > 253 or not DNS_SUBDOMAIN.fullmatch(configmap_name):
        raise ProfileError(name, None, f"{configmap_name!r} is not a valid ConfigMap name; rename the profile file")
    metadata: dict[str, Any] = {"name": configmap_name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(PART_OF_LABEL)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(variables)}


def render(path: Path, variables: dict[str, str], namespace: str | None = None) -> str:
    document = configmap(profile_name(path), variables, namespace)
    header = f"# Generated by onload-profile-to-configmap from {path.name}: edit the profile, not this file.\n"
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1 << 16)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="onload-profile-to-configmap",
        description="Print OpenOnload profiles (.opf) as ConfigMaps for `envFrom`. The profiles are parsed, never "
        "run: only onload_set, onload_import, comments and shell quoting are accepted.",
        epilog="Example: onload-profile-to-configmap latency.opf | kubectl apply -f -",
    )
    parser.add_argument("profiles", nargs="*", metavar="PROFILE", help="a .opf file, or a name on the search path")
    parser.add_argument(
        "-p",
        "--profile",
        action="append",
        default=[],
        metavar="LIST",
        help="comma-separated profiles (repeatable), as the Go project's script took them",
    )
    parser.add_argument(
        "-I",
        "--search-path",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a directory to look for profiles and imports in, after the importing profile's own (repeatable)",
    )
    parser.add_argument("-n", "--namespace", help="set metadata.namespace")
    parser.add_argument(
        "-o", "--output-dir", type=Path, help="write <profile>-profile.yaml files there instead of printing"
    )
    args = parser.parse_args(argv)
    args.profiles += [name for value in args.profile for name in value.split(",") if name]
    if not args.profiles:
        parser.error("no profile given")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    reader = ProfileReader(tuple(args.search_path))
    try:
        rendered = []
        for profile in args.profiles:
            path = reader.resolve(profile)
            rendered.append((path, render(path, reader.read(path), args.namespace)))
    except ProfileError as exc:
        print(f"onload-profile-to-configmap: {exc}", file=sys.stderr)
        sys.exit(1)
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for path, text in rendered:
            (args.output_dir / f"{profile_name(path)}-profile.yaml").write_text(text)
    else:
        sys.stdout.write("---\n".join(text for _, text in rendered))


if __name__ == "__main__":
    main()
