"""The package's layout: no import circle (function-level imports included), and no presentation in the
library (printing, click, isatty) outside the command line's modules."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "asrgguf"
PRESENTATION = {"cli", "cli_listen", "cli_options", "console"}   # the command line and what it shows on a terminal
MAX_LINES = 450   # "modules under ~400 lines": a module past this is split by what it does


def _imports(path: Path) -> set[str]:
    """asrgguf modules a module imports, at any depth of its code."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asrgguf"):
            parts = node.module.split(".")
            out.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("asrgguf."))
    return out


def graph() -> dict[str, set[str]]:
    mods = {p.stem: p for p in PKG.glob("*.py") if p.stem != "__init__"}
    return {m: {d for d in _imports(p) if d in mods and d != m} for m, p in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                c = visit(d)
                if c:
                    return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state:
            c = visit(m)
            if c:
                return c
    return None


def test_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    g = graph()
    assert {"transcribe", "scheduler", "serve", "cli", "align", "writers"} <= set(g)
    assert find_cycle(g) is None, " -> ".join(find_cycle(g))
    # data flows one way: nothing below the engine imports it
    for low in ("audio", "pieces", "features", "encoder", "prompt", "decoder", "generate", "parse", "results",
                "scheduler", "writers", "units", "options"):
        assert "transcribe" not in g[low], low


def test_no_presentation_in_the_library():
    offenders = []
    for p in sorted(PKG.glob("*.py")):
        if p.stem in PRESENTATION:
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{p.name}:{node.lineno} print")
            if isinstance(node, ast.Attribute) and node.attr == "isatty":
                offenders.append(f"{p.name}:{node.lineno} isatty")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n == "click" or n.startswith("click.") for n in names):
                    offenders.append(f"{p.name}:{node.lineno} click")
    assert offenders == []


def test_modules_stay_small():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PKG.glob("*.py")}
    assert len(sizes) >= 40 and sizes["scheduler.py"] > 100     # the walk found the package
    assert {n: k for n, k in sizes.items() if k > MAX_LINES} == {}


def test_help_and_languages_import_neither_torch_nor_llama_cpp():
    """`asrgguf --help`, `run --help` and `languages` answer without importing torch or llama.cpp (seconds)."""
    import subprocess
    import sys

    for args in (["--help"], ["run", "--help"], ["languages"]):
        code = ("import sys\nfrom asrgguf.cli import main\ntry:\n    main(%r, standalone_mode=False)\n"
                "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'llama_cpp') if m in sys.modules))"
                % (args,))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           cwd=PKG.parent)
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == "[]", (args, r.stdout[-300:], r.stderr)
