"""What the studies' reports share: number formats, figure links, and a Markdown page written with
the same page as standalone HTML (figures embedded)."""

from __future__ import annotations

import base64
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from aflqueue.io import atomic_write_text
from aflqueue.stats import Estimate

__all__ = ["fixed", "signed_pct", "unsigned_pct", "significant", "interval", "figure_md", "write_pages", "to_html"]


def fixed(x: float | None, d: int = 3) -> str:
    """Fixed-point number, "-" when undefined (None, NaN, inf)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{d}f}"


def signed_pct(x: float | None, d: int = 1) -> str:
    """Signed percentage of a fraction (0.021 -> "+2.1%"), "-" when undefined."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.{d}f}%"


def unsigned_pct(x: float | None, d: int = 1) -> str:
    """Unsigned percentage of a fraction (0.021 -> "2.1%"), "-" when undefined."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{d}f}%"


def significant(x: float | None, d: int = 4) -> str:
    """``d`` significant digits, "-" when undefined."""
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.{d}g}"


def interval(e: Estimate | tuple, fmt: Callable[[float], str], show_n: bool = False) -> str:
    """``mean [lo, hi]`` with ``fmt`` applied to each number; the mean alone when the interval is
    undefined, "-" when the mean is; ``show_n`` appends how many values it rests on."""
    m, lo, hi, n = (e.mean, e.lo, e.hi, e.n) if isinstance(e, Estimate) else e
    if not math.isfinite(m):
        return "-"
    text = f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else fmt(m)
    return f"{text} (n={n})" if show_n else text


def figure_md(path: str | Path, rel_to: str | Path, caption: str) -> str:
    """A Markdown image with its caption below, linked relative to ``rel_to`` (the report's folder),
    so that the report renders in any clone (and on a forge), wherever it was written from."""
    rel = Path(os.path.relpath(Path(path).resolve(), Path(rel_to).resolve()))
    return f"![{caption}]({rel.as_posix()})\n\n*{caption}*\n"


def write_pages(path: Path, lines: Sequence[str], title: str,
                figures: Sequence[tuple[Path, str]] = ()) -> tuple[Path, Path]:
    """Write the Markdown ``lines`` (plus a Figures section) to ``path`` and the same page as
    standalone HTML next to it (``.html``, figures embedded); returns both paths."""
    lines = list(lines)
    if figures:
        lines += ["## Figures", ""]
        for f, cap in figures:
            lines.append(figure_md(f, path.parent, cap))
    text = "\n".join(lines) + "\n"
    atomic_write_text(path, text)
    html = atomic_write_text(path.with_suffix(".html"), to_html(text, path.parent, title))
    return path, html


def to_html(md_text: str, base: Path, title: str) -> str:
    """Markdown to a standalone HTML page; images are embedded as base64 data URIs."""
    import markdown

    body = markdown.markdown(md_text, extensions=["tables"])

    def embed(m: re.Match) -> str:
        src = m.group(1)
        p = (base / src).resolve()
        if p.is_file() and p.suffix == ".png":
            return f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"'
        return m.group(0)

    body = re.sub(r'src="([^"]+)"', embed, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:1px 3px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>" \
           f"<body>{body}</body></html>\n"
