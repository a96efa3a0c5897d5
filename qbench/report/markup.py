"""The report's markup: each section written once, rendered as Markdown and as HTML side by side."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45;color:#222}table{border-collapse:collapse;margin:1rem 0;font-size:.88rem}"
    "th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left}th{background:#eee}"
    "img{max-width:100%}figcaption{font-style:italic;margin-bottom:1.5rem}"
)


class Doc:
    """The report as Markdown and HTML at once, so the two never disagree."""

    def __init__(self) -> None:
        self.title = ""
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self.title = self.title or text
        self.md.append(f"{'#' * level} {text}")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md.append(text)
        self.html.append(f"<p>{html.escape(text)}</p>")

    def bullets(self, items: Sequence[str]) -> None:
        self.md.append("\n".join(f"- {item}" for item in items))
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def table(self, rows: Sequence[dict[str, str]], empty: str) -> None:
        if not rows:
            return self.para(empty)
        headers, cells = list(rows[0]), [list(r.values()) for r in rows]
        self.md.append("\n".join([_md_row(headers), "|" + " --- |" * len(headers), *map(_md_row, cells)]))
        body = "".join(f"<tr>{_html_cells('td', c)}</tr>" for c in cells)
        head = f"<thead><tr>{_html_cells('th', headers)}</tr></thead>"
        self.html.append(f"<table>{head}<tbody>{body}</tbody></table>")

    def image(self, name: str, caption: str, png: bytes) -> None:
        alt = name.removeprefix("plot_").removesuffix(".png").replace("_", " ") + " plot"
        self.md.append(f"![{alt}]({name})\n\n*{caption}*")
        data = base64.b64encode(png).decode("ascii")
        self.html.append(
            f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def markdown(self) -> str:
        return "\n\n".join(self.md) + "\n"

    def page(self) -> str:
        head = f'<meta charset="utf-8"><title>{html.escape(self.title)}</title><style>{_CSS}</style>'
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>\n'
            + "\n".join(self.html)
            + "\n</body></html>\n"
        )


def _md_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"


def _html_cells(tag: str, values: Sequence[str]) -> str:
    return "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in values)
