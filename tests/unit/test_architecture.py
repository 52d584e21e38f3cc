"""The domain is pure: import-linter contracts hold, it imports only the standard library, and it never
reads the clock (ARCHITECTURE.md "Layers and who may import whom")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "monitor" / "domain"
DOMAIN_FILES = sorted(DOMAIN.glob("*.py"))

LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_the_import_linter_contracts_in_pyproject_are_kept() -> None:
    # --no-cache: do not write .import_linter_cache into the repository
    done = subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The domain is pure: standard library only KEPT" in done.stdout
    assert "Layers: entry points over services over adapters over domain KEPT" in done.stdout
    assert "0 broken" in done.stdout


def imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
def test_the_domain_imports_only_the_standard_library_and_itself(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for module in imported_modules(tree):
        top = module.split(".")[0]
        assert top in sys.stdlib_module_names or module.startswith("monitor.domain"), f"{path.name}: {module}"


#: Clock reads: (object, attribute). `datetime.datetime.now` is caught through its last two names.
CLOCK = {
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "perf_counter"),
    ("time", "localtime"), ("time", "gmtime"),
}


def clock_reads(source: str) -> list[str]:
    """Every reference to a clock-reading function, called or not (`default_factory=date.today`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if (name, node.attr) in CLOCK:
                found.append(f"{name}.{node.attr} on line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            found.append(f"from time import ... on line {node.lineno}")
        elif isinstance(node, ast.Import) and any(a.name == "time" for a in node.names):
            found.append(f"import time on line {node.lineno}")
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import date\nx = date.today()",
        "import datetime\nx = datetime.datetime.now()",
        "from datetime import datetime, UTC\nx = datetime.now(UTC)",
        "import time\nx = time.time()",
        "from dataclasses import field\nfrom datetime import date\nf = field(default_factory=date.today)",
    ],
)
def test_the_clock_detector_finds_clock_reads(source: str) -> None:
    assert clock_reads(source)


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
def test_no_domain_module_reads_the_clock(path: Path) -> None:
    assert clock_reads(path.read_text(encoding="utf-8")) == [], path.name


def test_the_domain_modules_are_all_checked() -> None:
    names = {p.stem for p in DOMAIN_FILES}
    assert {"analytes", "protocol", "snapshot", "items", "plan", "schedule", "dosing", "thresholds"} <= names

