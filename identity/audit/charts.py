"""The audit's charts as inline SVG, drawn with matplotlib (the ``report`` extra).

Only this module imports matplotlib, and only when a chart is drawn: :func:`available` tells
whether it can. Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend state), text stays text in the SVG (``svg.fonttype: none``: no embedded or
external fonts), and ids are salted with a constant so the same audit gives the same page.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from .model import Bucket, Merge, Reason

__all__ = ["GET_CHARTS", "available", "graph", "reasons", "sizes", "timeline"]

#: What the page says when matplotlib is missing.
GET_CHARTS = "pip install 'identity[report]'"
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "identity-audit",
    "font.family": "DejaVu Sans",  # ships with matplotlib: measured text fits
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_COLOURS = {"event": "#3b6ea5", "property": "#6aa84f", "alias": "#e69138", "quarantined": "#cc0000"}


def available() -> bool:
    """Tell whether matplotlib can be imported (charts can be drawn)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _svg(draw: Any, size: tuple[float, float]) -> str:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        figure = Figure(figsize=size, layout="constrained")
        draw(figure)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    return text[text.index("<svg") :]  # no XML prolog or DOCTYPE inside HTML


def _plain(axis: Any) -> None:
    """Label a log axis with plain numbers (1, 10, 1,000), not powers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
    axis.set_minor_formatter(NullFormatter())


def sizes(rows: Sequence[tuple[int, int]]) -> str:
    """Draw people by size on log-log axes (identities a person has, people of that size)."""

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        ax.scatter([s for s, _ in rows], [n for _, n in rows], s=14, color=_COLOURS["event"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("identities in the person (log)")
        ax.set_ylabel("people (log)")
        _plain(ax.xaxis)
        _plain(ax.yaxis)
        ax.set_xlim(0.7, max(10, max(s for s, _ in rows) * 1.5))
        ax.set_ylim(0.7, max(10, max(n for _, n in rows) * 1.5))

    return _svg(draw, (6.4, 3.2))


def timeline(span: str, buckets: Sequence[Bucket]) -> str:
    """Draw records over time, one line per kind (a log scale when counts span 1,000 times)."""
    from datetime import datetime, timezone

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        x = [datetime.fromtimestamp(b.start, tz=timezone.utc) for b in buckets]
        top, bottom = 0, math.inf
        for kind in ("event", "property", "alias", "quarantined"):
            y = [getattr(b, kind) for b in buckets]
            if any(y):
                top = max(top, *y)
                bottom = min(bottom, *(v for v in y if v))
                marker = "o" if len(x) < 40 else None
                ax.plot(x, y, label=kind, color=_COLOURS[kind], marker=marker, markersize=3)
        if top and bottom and top / bottom >= 1000:
            ax.set_yscale("log")
            _plain(ax.yaxis)
        else:
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        ax.set_ylabel(f"records per {span}")
        ax.legend(loc="upper left", frameon=False, ncols=4)
        figure.autofmt_xdate()

    return _svg(draw, (6.4, 3.0))


def reasons(rows: Sequence[Reason]) -> str:
    """Draw quarantined calls by reason as horizontal bars (a log scale past 100 times)."""

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        ordered = list(reversed(rows))
        ax.barh([r.reason for r in ordered], [r.calls for r in ordered], color="#cc0000")
        calls = [r.calls for r in rows]
        if max(calls) / max(min(calls), 1) >= 100:
            ax.set_xscale("log")
            _plain(ax.xaxis)
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("calls")
        ax.grid(axis="y", visible=False)

    return _svg(draw, (6.4, 0.6 + 0.28 * len(rows)))


def graph(merge: Merge) -> str:
    """Draw the person's graph (networkx spring layout): the risky link red, its sides coloured."""
    import networkx as nx

    assert merge.drawing is not None
    g = nx.Graph()
    g.add_nodes_from(n for n, _ in merge.drawing.nodes)
    g.add_edges_from(merge.drawing.edges)
    risky = (merge.link.a, merge.link.b)
    cut = nx.restricted_view(g, [], [risky])
    side_a = nx.node_connected_component(cut, merge.link.a)
    # a weak spring on the risky link lets its two sides drift apart, so it shows
    nx.set_edge_attributes(g, 1.0, "pull")
    g.edges[risky]["pull"] = 0.05
    position = nx.spring_layout(g, seed=7, weight="pull")
    customer = dict(merge.drawing.nodes)

    def draw(figure: Any) -> None:
        ax = figure.subplots()
        ax.set_axis_off()
        ax.margins(0.18)
        others = [e for e in g.edges if set(e) != set(risky)]
        nx.draw_networkx_edges(g, position, edgelist=others, ax=ax, edge_color="#999999")
        for side, colour in ((side_a, "#3b6ea5"), (set(g) - side_a, "#e69138")):
            nodes = sorted(side)
            nx.draw_networkx_nodes(
                g,
                position,
                nodelist=nodes,
                ax=ax,
                node_color=colour,
                node_size=[90 if customer.get(n) else 40 for n in nodes],
                edgecolors=["black" if customer.get(n) else colour for n in nodes],
            )
        link = nx.draw_networkx_edges(
            g, position, edgelist=[risky], ax=ax, edge_color="#cc0000", width=3.5, style="dashed"
        )
        link.set_zorder(3)  # over the nodes
        if g.number_of_nodes() <= 30:
            above = {n: (x, y + 0.09) for n, (x, y) in position.items()}
            nx.draw_networkx_labels(g, above, ax=ax, font_size=7)

    return _svg(draw, (4.2, 3.4))
