#!/usr/bin/env python3
"""The documentation check of `make test`: the docs say what the code reads and answers, and
point only at things inside the repository.

1. Every relative link of every Markdown file resolves: the file exists inside the repository
   and, for a `#fragment` into a Markdown file, a heading of that file has that anchor (GitHub's
   rule: lower case, punctuation dropped, spaces as hyphens, `-1`, `-2` for repeats).
2. Every environment variable the Rust code reads (the functions, the model crate, the tools, the
   test kit and the test suites; unit-test modules aside) is named in docs/configuration.md. A variable read as
   a prefix (`CRM_WEBHOOK_SECRET` read with its `_<mid>` forms) must appear with `_<mid>`.
3. Every error code of shared/src/error.rs (`ApiError::code`) appears in docs/endpoints.md and in
   docs/openapi.yaml.
4. No committed text names a path outside the repository: the team's shared directory beside the
   clone, or an absolute path of the machine the repository was written on.

Prints each problem and exits 1 if there is any; `--root` checks another tree (the check's own
test breaks a copy).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

SKIPPED_DIRS = {".git", "target", ".venv", ".local", ".aws-sam", "node_modules", "__pycache__"}

# What reads an environment variable, by its name as a string literal.
READ_CALLS = re.compile(
    r"(?:\.get|env::var|env::var_os|\brequired|\.number|\.parsed|\.secret_location)\(\s*\"([A-Z][A-Z0-9_]+)\""
)
# Clap arguments filled from a variable.
CLAP_ENV = re.compile(r"\benv\s*=\s*\"([A-Z][A-Z0-9_]+)\"")
# A variable read with its per-tenant forms (`NAME`, `NAME_<mid>`).
PREFIX_READS = re.compile(r"(?:\.secrets|from_vars)\(\s*\"([A-Z][A-Z0-9_]+)\"")
# A constant that names a variable (config.rs only: `pub const X: &str = "NAME";`).
NAME_CONSTANT = re.compile(r"const [A-Z][A-Z0-9_]*: &str = \"([A-Z][A-Z0-9_]*_[A-Z0-9_]+)\"")

# Paths that leave the repository, written so that this file does not match itself.
OUTSIDE = [".." + "/shared/", "/" + "work" + "/"]


def repository_files(root: Path) -> list[Path]:
    """Committed and new (not ignored) files; every file under `root` when it is no git tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            check=True,
            capture_output=True,
        ).stdout.decode()
        return [root / name for name in listed.split("\0") if name and (root / name).is_file()]
    except (subprocess.CalledProcessError, FileNotFoundError):
        return [
            path
            for path in root.rglob("*")
            if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(root).parts)
        ]


def without_code(markdown: str) -> str:
    """The Markdown text without fenced blocks and inline code spans (links there are examples)."""
    text = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        slug = heading.strip().lower()
        slug = re.sub(r"[^\w\- ]", "", slug)
        slug = slug.replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    for explicit in re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", markdown):
        found.add(explicit)
    return found


def link_problems(root: Path, files: list[Path]) -> list[str]:
    problems = []
    markdown_files = [path for path in files if path.suffix == ".md"]
    for path in markdown_files:
        text = path.read_text(encoding="utf-8")
        body = without_code(text)
        targets = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", body)
        targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", body, flags=re.M)
        where = path.relative_to(root)
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):
                continue  # a URL (https:, mailto:)
            file_part, _, fragment = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
            try:
                resolved.relative_to(root.resolve())
            except ValueError:
                problems.append(f"{where}: link `{target}` leaves the repository")
                continue
            if not resolved.exists():
                problems.append(f"{where}: link `{target}`: no such file")
                continue
            if fragment and resolved.suffix == ".md":
                if fragment not in anchors(resolved.read_text(encoding="utf-8")):
                    problems.append(f"{where}: link `{target}`: no heading with anchor `#{fragment}`")
    return problems


def strip_test_modules(source: str) -> str:
    """Rust source without its `#[cfg(test)]` module (by convention the last item of a file)."""
    marker = re.search(r"^#\[cfg\(test\)\]\s*\nmod \w+\s*\{", source, flags=re.M)
    return source[: marker.start()] if marker else source


def variables_read(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Variables read by name, and variables read as a prefix, each with the files reading them."""
    names: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}
    dirs = [root / crate / part for crate in ("shared", "tools", "tests") for part in ("src", "tests")]
    dirs += sorted((root / "functions").glob("*/src"))
    for directory in dirs:
        for path in sorted(directory.rglob("*.rs")):
            source = strip_test_modules(path.read_text(encoding="utf-8"))
            where = str(path.relative_to(root))
            found = set(READ_CALLS.findall(source)) | set(CLAP_ENV.findall(source))
            if "try_from_default_env" in source or "EnvFilter::from_default_env" in source:
                found.add("RUST_LOG")
            if path.name == "config.rs":
                found |= set(NAME_CONSTANT.findall(source))
            for name in found:
                names.setdefault(name, set()).add(where)
            for name in PREFIX_READS.findall(source):
                prefixes.setdefault(name, set()).add(where)
    return names, prefixes


def variable_problems(root: Path) -> list[str]:
    configuration = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?:_<mid>)?", configuration))
    names, prefixes = variables_read(root)
    problems = []
    if not names:
        problems.append("found no environment variable read in the code: the check is broken")
    for name, readers in sorted(names.items()):
        per_tenant = re.match(r"^(.*)_[0-9]+$", name)
        if name in documented or (per_tenant and f"{per_tenant.group(1)}_<mid>" in documented):
            continue
        problems.append(f"docs/configuration.md: `{name}` (read by {', '.join(sorted(readers))}) is not listed")
    for name, readers in sorted(prefixes.items()):
        for form in (name, f"{name}_<mid>"):
            if form not in documented:
                problems.append(
                    f"docs/configuration.md: `{form}` (read by {', '.join(sorted(readers))}) is not listed"
                )
    return problems


def error_codes(root: Path) -> set[str]:
    source = strip_test_modules((root / "shared" / "src" / "error.rs").read_text(encoding="utf-8"))
    body = re.search(r"pub fn code\(&self\)[^{]*\{(.*?)\n    \}\n", source, flags=re.S)
    return set(re.findall(r"\"([a-z]+(?:_[a-z]+)+)\"", body.group(1))) if body else set()


def error_code_problems(root: Path) -> list[str]:
    codes = error_codes(root)
    if len(codes) < 2:
        return ["shared/src/error.rs: found no error codes in `ApiError::code`: the check is broken"]
    problems = []
    for doc in ("docs/endpoints.md", "docs/openapi.yaml"):
        text = (root / doc).read_text(encoding="utf-8")
        for code in sorted(codes):
            if not re.search(rf"(?<![a-z_]){code}(?![a-z_])", text):
                problems.append(f"{doc}: error code `{code}` (shared/src/error.rs) is not described")
    return problems


def outside_path_problems(root: Path, files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern in OUTSIDE:
                if pattern in line:
                    problems.append(
                        f"{path.relative_to(root)}:{number}: `{pattern}` names a path outside the repository"
                    )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    root = parser.parse_args().root.resolve()
    files = repository_files(root)
    problems = (
        link_problems(root, files)
        + variable_problems(root)
        + error_code_problems(root)
        + outside_path_problems(root, files)
    )
    for problem in problems:
        print(problem)
    checked = sum(1 for path in files if path.suffix == ".md")
    if problems:
        print(f"check_docs: {len(problems)} problem(s)")
        return 1
    print(f"check_docs: {checked} Markdown files, variables, error codes and paths: all good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
