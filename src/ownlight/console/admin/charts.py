"""Charts as inline SVG made on the server: no script, no CDN, readable by a screen reader
(a title and a description, and the same numbers in the table beside each chart)."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 160


def bars(values: list[tuple[str, int]], title: str) -> Markup:
    """A bar per (label, value), scaled to the largest."""
    top = max((v for _, v in values), default=0) or 1
    step = WIDTH / max(1, len(values))
    rects = []
    for i, (label, value) in enumerate(values):
        h = round(value / top * (HEIGHT - 20))
        rects.append(
            f'<rect x="{i * step + 1:.1f}" y="{HEIGHT - h}" width="{max(1.0, step - 2):.1f}" '
            f'height="{h}"><title>{escape(label)}: {value}</title></rect>'
        )
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(rects)}</svg>'
    )
