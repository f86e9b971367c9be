"""Charts as inline SVG made on the server: no script, no CDN, readable by a screen reader
(a title and a description, and the same numbers in the table beside each chart)."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 160
BAR_MAX = 40  # a bar is never wider than this, so one period is not a block
FILL = "#0b4f8a"  # the console's accent; an attribute, as the CSP allows no inline style


def bars(values: list[tuple[str, int]], title: str) -> Markup:
    """A bar per (label, value), scaled to the largest."""
    top = max((v for _, v in values), default=0) or 1
    step = min(WIDTH / max(1, len(values)), BAR_MAX + 4)
    rects = [
        f'<line x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}" '
        f'stroke="#4a4a4a" stroke-width="1"/>'
    ]
    for i, (label, value) in enumerate(values):
        h = round(value / top * (HEIGHT - 20))
        rects.append(
            f'<rect x="{i * step + 2:.1f}" y="{HEIGHT - h}" width="{max(1.0, step - 4):.1f}" '
            f'height="{h}" fill="{FILL}"><title>{escape(label)}: {value}</title></rect>'
        )
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(rects)}</svg>'
    )
