"""Horizontal bar charts as inline SVG markup (server-rendered; labels escaped)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

ROW, LABEL_WIDTH, BAR_WIDTH = 22, 330, 300


def bar_chart(title: str, rows: Sequence[tuple[str, int]]) -> Markup:
    """One bar per (label, count); an empty chart says so."""
    if not rows:
        return Markup('<p class="empty">{}: nothing in this selection.</p>').format(title)
    top = max(n for _, n in rows) or 1
    height = ROW * len(rows) + 30
    width = LABEL_WIDTH + BAR_WIDTH + 60
    parts = [
        Markup(
            '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" '
            'height="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>'
        ).format(title, width, height, width, height, title),
        Markup('<text x="0" y="16" class="chart-title">{}</text>').format(title),
    ]
    for i, (label, n) in enumerate(rows):
        y = 26 + i * ROW
        bar = max(2, round(BAR_WIDTH * n / top))
        parts.append(
            Markup(
                '<text x="{}" y="{}" text-anchor="end" class="chart-label">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" class="chart-bar"></rect>'
                '<text x="{}" y="{}" class="chart-value">{}</text>'
            ).format(
                LABEL_WIDTH - 8,
                y + 14,
                label,
                LABEL_WIDTH,
                y + 2,
                bar,
                ROW - 6,
                LABEL_WIDTH + bar + 6,
                y + 14,
                n,
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
