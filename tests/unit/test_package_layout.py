"""The package's shape (DESIGN.md): imports only go down the layers (import-linter's contracts in pyproject.toml,
in-function imports included), no file over 400 lines, no function over 60 lines without its reason beside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tuner"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
LONG_OK = "# long:"  # on a function's def line: why it may be longer


def test_imports_only_go_down_the_layers():
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 kept, 0 broken" in r.stdout


def test_no_file_over_400_lines():
    long = {str(f.relative_to(PACKAGE)): n for f in PACKAGE.rglob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long


def test_no_function_over_60_lines_without_a_reason():
    long = []
    for f in PACKAGE.rglob("*.py"):
        lines = f.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > MAX_FUNCTION_LINES and LONG_OK not in lines[node.lineno - 1]:
                    long.append(f"{f.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n} lines)")
    assert not long
