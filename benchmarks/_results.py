"""Shared helpers for benchmark scripts: data location and the RESULTS.md writer.

Each benchmark script owns one section of ``benchmarks/RESULTS.md`` delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->`` and rewrites only that section, so scripts can
be re-run independently.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SHARED_DATA = Path(os.environ.get("METAL_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))

HEADER = """# Benchmark results

Every table below is printed and written here by the script named in its section; re-run the
script to refresh it. Timings are from a shared 2-core machine, one thread per model, measured
side by side in one run: read them as ratios.
"""


def machine_line() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``markdown``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def fmt(x: object) -> str:
        return f"{x:.3f}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
