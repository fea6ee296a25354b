"""The code each DVC stage runs, derived from imports: what dvc.yaml's code deps must list.

`shortrun stage <name>` runs shortrun/cli.py (its module-level imports; its function-level imports
serve other commands, except the two `_stage` uses: shortrun.params and tasks.<name>), then
tasks/<name>.py and everything it imports, transitively, within shortrun/ and tasks/ (a package's
__init__.py runs with it). `python -m tests.stage_code` prints each stage's list;
`python -m tests.stage_code --write` rewrites dvc.yaml's code deps to match.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shortrun", "tasks")
ENTRY = ROOT / "shortrun" / "cli.py"


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    """Dotted names a module imports (for `from a import b` both a and a.b, since b may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    nodes = tree.body if top_level_only else ast.walk(tree)
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def stage_code(stage: str) -> set[str]:
    """Repository-relative paths of the Python files `shortrun stage <stage>` runs."""
    seen = {ENTRY}
    todo = [*_imports(ENTRY, top_level_only=True), "shortrun.params", f"tasks.{stage}"]
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):
            found = _module_file(".".join(parts[:depth]))
            if found is not None and found not in seen:
                seen.add(found)
                todo.extend(_imports(found))
    return {str(path.relative_to(ROOT)) for path in seen}


def rewrite_code_deps(text: str) -> str:
    """dvc.yaml's text with each stage's block of code deps (`- shortrun/...`, `- tasks/...` lines) replaced
    by `stage_code`'s list; everything else is kept as written."""
    code_line = re.compile(r"^(\s+)- (?:shortrun|tasks)/\S+$")
    out: list[str] = []
    stage, in_block = None, False
    for line in text.splitlines():
        header = re.match(r"^  (\w+):\s*$", line)
        stage = header.group(1) if header else stage
        match = code_line.match(line)
        if match and stage and not in_block:
            out.extend(f"{match.group(1)}- {path}" for path in sorted(stage_code(stage)))
        if not match:
            out.append(line)
        in_block = bool(match)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        dvc_yaml = ROOT / "dvc.yaml"
        dvc_yaml.write_text(rewrite_code_deps(dvc_yaml.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        for name in sys.argv[1:] or sorted(p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__"):
            print(f"{name}:")
            print("\n".join(f"  - {path}" for path in sorted(stage_code(name))))
