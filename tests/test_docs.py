"""The docs name only what exists: every script, tool, test helper and test file a doc names is in the tree,
and every measurement script in bench/ says which doc its figures are in (its docstring and bench/README.md)."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PATH = re.compile(r"(?<![\w./-])((?:bench|tools|tests|native|asrgguf)/[\w./-]*\w)")
# named on purpose as no longer in the tree (with the commit that still has them)
GONE = {"tools/bench_torch_prefill.py", "tests/test_longform.py"}
BUILT = ("asrgguf/_native/",)   # build outputs (tools/build_native.sh), not in git


def test_paths_named_in_docs_exist():
    missing = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in PATH.finditer(line):
                path = m.group(1).rstrip(".")
                if path not in GONE and not path.startswith(BUILT) and not (REPO / path).exists():
                    missing.append(f"{doc.relative_to(REPO)}:{n}: {path}")
    assert missing == []


def test_every_bench_script_names_the_doc_of_its_figures():
    listing = (REPO / "bench" / "README.md").read_text()
    unlisted, undocumented = [], []
    for script in sorted((REPO / "bench").glob("*.py")):
        if f"`{script.name}`" not in listing:
            unlisted.append(script.name)
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        feeds = re.search(r"^Figures: (.*)", doc, re.M | re.S)
        named = re.findall(r"docs/[\w*.]+\.(?:md|json)", feeds.group(1)) if feeds else []
        if not feeds or not (named or "none of its own" in feeds.group(1)):
            undocumented.append(script.name)
        for d in named:
            assert list(REPO.glob(d)), f"{script.name} names {d}, which does not exist"
    assert unlisted == [] and undocumented == []
