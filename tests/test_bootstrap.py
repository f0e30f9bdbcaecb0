"""A fresh machine gets every program the project runs: each program that a script, the
Makefile or the code starts is either listed in scripts/system-commands.txt (which
scripts/bootstrap.sh installs and checks) or comes with every Debian machine."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS_FILE = ROOT / "scripts" / "system-commands.txt"
SHELL_SOURCES = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]
PYTHON_PACKAGES = ["bench", "demo", "devstack", "gpu", "listener", "relay"]
SUBPROCESS_CALLS = {"run", "Popen", "check_call", "check_output", "create_subprocess_exec"}
# Words that start a command without being a program of their own.
SHELL_PREFIXES = {"!", "if", "then", "else", "elif", "while", "until", "do", "time", "exec"}


@dataclass(frozen=True)
class Listed:
    package: str
    where: str

    def path(self, program: str) -> Path | None:
        if self.where == "PATH":
            found = shutil.which(program)
            return Path(found) if found else None
        candidate = Path(self.where) / program
        return candidate if candidate.exists() else None


@dataclass(frozen=True)
class Use:
    program: str
    place: str


def _shown(source: Path) -> str:
    return str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else source.name


def listed_programs() -> dict[str, Listed]:
    listed: dict[str, Listed] = {}
    for line in COMMANDS_FILE.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        assert len(fields) == 3, f"{COMMANDS_FILE.name}: 'program package where' expected: {line!r}"
        listed[fields[0]] = Listed(package=fields[1], where=fields[2])
    return listed


@cache
def shell_builtins() -> frozenset[str]:
    names = subprocess.run(
        ["bash", "-c", "compgen -b; compgen -k"], capture_output=True, text=True, check=True
    )
    return frozenset(names.stdout.split())


def _shell_logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with continuations joined and here-document bodies left out (they are
    another program's input)."""
    lines: list[tuple[int, str]] = []
    heredoc_end: str | None = None
    pending = ""
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", whole)
        if marker:
            heredoc_end = marker.group(1)
        lines.append((start, whole))
    return lines


def shell_commands(source: Path, recipe_lines_only: bool = False) -> list[Use]:
    uses: list[Use] = []
    text = source.read_text()
    functions = set(re.findall(r"^\s*(?:function\s+)?([\w-]+)\s*\(\)", text, flags=re.M))
    for number, line in _shell_logical_lines(text):
        if recipe_lines_only:
            if not line.startswith("\t"):
                continue
            line = line.lstrip("\t@-")
        code = re.sub(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"", "_quoted_", line)
        code = re.sub(r"(^|\s)#.*$", "", code)
        # Arithmetic ((...)) and array assignments name=(...) hold no commands.
        code = re.sub(r"\$?\(\([^)]*\)\)|\w+\+?=\([^)]*\)", " ", code)
        for segment in re.split(r"\$\(|&&|\|\||[;|&(){}`]", code):
            words = [w for w in segment.split() if not re.fullmatch(r"\w+=\S*", w)]
            while words and words[0] in SHELL_PREFIXES:
                words.pop(0)
            if not words:
                continue
            word = words[0]
            if not re.fullmatch(r"[A-Za-z][\w.+-]*", word):
                continue  # a path, a variable, a test bracket, an option
            if word in shell_builtins() or word in functions:
                continue
            uses.append(Use(word, f"{_shown(source)}:{number}"))
    return uses


def _first_argument(call: ast.Call) -> ast.expr | None:
    if not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.List | ast.Tuple) and first.elts:
        return first.elts[0]
    return first


def _program_in(node: ast.expr | None) -> str | None:
    """ "ffmpeg", or the file name in `PG_BIN / "pg_ctl"`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        node = node.right
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def python_commands(source: Path) -> list[Use]:
    uses: list[Use] = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        program: str | None = None
        if isinstance(node, ast.BinOp) and getattr(node.left, "id", "") == "PG_BIN":
            program = _program_in(node)  # PostgreSQL's programs, run by full path
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name == "which":
                program = _program_in(node.args[0] if node.args else None)
            elif name in SUBPROCESS_CALLS:
                program = _program_in(_first_argument(node))
        if program is not None and "/" not in program:
            uses.append(Use(program, f"{_shown(source)}:{getattr(node, 'lineno', 0)}"))
    return uses


def every_use() -> list[Use]:
    uses: list[Use] = []
    for source in SHELL_SOURCES:
        uses += shell_commands(source)
    uses += shell_commands(ROOT / "Makefile", recipe_lines_only=True)
    for package in PYTHON_PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            uses += python_commands(source)
    return uses


@cache
def providing_package(path: Path) -> str | None:
    # Debian 12 merged /bin into /usr/bin, but dpkg still records many files under /bin.
    unmerged = [Path(str(p).removeprefix("/usr")) for p in (path, path.resolve())]
    for candidate in dict.fromkeys([path, path.resolve(), *unmerged]):
        result = subprocess.run(
            ["dpkg-query", "--search", str(candidate)], capture_output=True, text=True
        )
        if result.returncode == 0:
            return result.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


@cache
def comes_with_debian(package: str) -> bool:
    """Essential and required packages are on every Debian machine."""
    fields = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Essential} ${Priority}", package],
        capture_output=True,
        text=True,
    ).stdout.split()
    return "yes" in fields or "required" in fields


def unlisted(uses: list[Use], listed: dict[str, Listed]) -> list[str]:
    problems = []
    for use in uses:
        if use.program in listed:
            continue
        found = shutil.which(use.program)
        package = providing_package(Path(found)) if found else None
        if package is not None and comes_with_debian(package):
            continue
        where = f"from {package}" if package else (found or "not installed")
        problems.append(f"{use.place}: runs {use.program} ({where})")
    return problems


def test_every_program_the_project_runs_is_installed_or_checked_by_the_bootstrap() -> None:
    uses = every_use()
    # The scan itself must see the programs we know are there, or it proves nothing.
    seen = {use.program for use in uses}
    assert {"pg_prove", "pg_ctl", "initdb", "ffmpeg", "espeak-ng", "runuser"} <= seen
    assert unlisted(uses, listed_programs()) == []


def test_the_scan_notices_a_program_nobody_installs(tmp_path: Path) -> None:
    script = tmp_path / "extra.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "set -e\n"
        'echo "pgbouncer is started below"  # a mention is not a use\n'
        "if ! command -v psql >/dev/null; then exit 1; fi\n"
        "FOO=1 pgbouncer -d pgbouncer.ini && utter-made-up-tool --version\n"
    )
    programs = [use.program for use in shell_commands(script)]
    assert "pgbouncer" in programs and "utter-made-up-tool" in programs
    found = unlisted(shell_commands(script), listed_programs())
    assert any("utter-made-up-tool (not installed)" in line for line in found)


def test_the_scan_reads_programs_started_from_python(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "import shutil, subprocess\n"
        "from pathlib import Path\n"
        "PG_BIN = Path('/usr/lib/postgresql/15/bin')\n"
        "subprocess.run(['espeak-ng', '--stdout', 'hi'])\n"
        "subprocess.run([str(PG_BIN / 'pg_ctl'), 'status'])\n"
        "shutil.which('ffmpeg')\n"
    )
    assert sorted(use.program for use in python_commands(source)) == [
        "espeak-ng",
        "ffmpeg",
        "pg_ctl",
    ]


@pytest.mark.parametrize("program", sorted(listed_programs()))
def test_each_listed_program_is_there_and_comes_from_its_package(program: str) -> None:
    listed = listed_programs()[program]
    path = listed.path(program)
    assert path is not None, f"{program}: bootstrap should have installed {listed.package}"
    provider = providing_package(path)
    status, _, depends = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Status}\\n${Depends}", listed.package],
        capture_output=True,
        text=True,
    ).stdout.partition("\n")
    dependencies = {d.split()[0] for d in re.split(r"[,|]", depends) if d.strip()}
    # The listed package may bring the program through a dependency (psql's wrapper is
    # in postgresql-client-common). Another provider is fine only where the listed
    # package is absent (NodeSource's nodejs carries npm; pyenv's python3 has none).
    assert (
        provider in (listed.package, None)
        or provider in dependencies
        or status != "install ok installed"
    ), f"{program} at {path} comes from {provider}, not {listed.package}"
