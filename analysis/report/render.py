"""The renderer: sections of text, tables and figures written to both report.html (self-contained,
offline, charts as inline SVG) and report.md (with PNGs beside it)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd


def _table_md(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")  # concept lists are '|'-separated

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in r) + " |\n" for r in df.itertuples(index=False))


def _points(v: float) -> str:
    """An accuracy margin in points: '1 point', '0.5 points'."""
    return f"{100 * v:g} point" + ("" if round(100 * v, 9) == 1 else "s")


def _ci(m: float, lo: float, hi: float, scale: float = 100.0, digits: int = 1) -> str:
    if not np.isfinite(m):
        return "n/a"
    if not np.isfinite(lo):
        return f"{m * scale:.{digits}f}"
    return f"{m * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


class Report:
    """Sections of text, tables and charts, rendered to both HTML and Markdown."""

    def __init__(self, out: Path) -> None:
        self.out, self.html, self.md = out, [], []

    def heading(self, text: str, level: int = 2) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(text + "\n")

    def bullets(self, items: list[str]) -> None:
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        self.md.append("".join(f"- {i}\n" for i in items))

    def table(self, df: pd.DataFrame) -> None:
        self.html.append(df.to_html(index=False, escape=True, border=0, classes="t"))
        self.md.append(_table_md(df))

    def chart(self, chart: alt.TopLevelMixin, name: str, alt_text: str) -> None:
        import vl_convert as vlc

        chart.save(self.out / f"{name}.png", scale_factor=2)
        svg = vlc.vegalite_to_svg(chart.to_dict())
        self.html.append(f'<figure aria-label="{html.escape(alt_text)}">{svg}</figure>')
        self.md.append(f"![{alt_text}]({name}.png)\n")

    def image(self, path: Path, alt_text: str) -> None:
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f'<figure><img alt="{html.escape(alt_text)}" src="data:image/png;base64,{data}" '
                         'style="max-width:100%"></figure>')
        self.md.append(f"![{alt_text}]({path.name})\n")

    def write(self, title: str) -> None:
        css = ("body{font-family:sans-serif;max-width:1350px;margin:auto;padding:0 16px;color:#222}"
               "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;"
               "border-bottom:1px solid #ddd;text-align:left}figure{margin:8px 0;overflow-x:auto}")
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>{''.join(self.html)}</body></html>")
        (self.out / "report.html").write_text(page)
        (self.out / "report.md").write_text(f"# {title}\n\n" + "\n".join(self.md))
