"""The audit as one self-contained HTML page: no scripts, fonts, images or network.

A summary of headline numbers first, then one section per question, each with its chart (inline
SVG from :mod:`identity.audit.charts`, when matplotlib is installed) and its table, so the page
reads the same without charts. Styles are inline and print well (sections do not break across
pages, the navigation is not printed). Every value from the data is escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterable, Sequence

from . import charts
from .model import RETRY_WINDOW, SCHEMA, Audit, Merge, size_bins
from .text import when

__all__ = ["page"]

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9dee3; --accent: #3b6ea5; --bad: #cc0000; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0 auto; max-width: 1040px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 6px; }
h3 { font-size: 14px; margin: 12px 0 4px; }
p.lead, p.note, .muted { color: var(--muted); margin: 4px 0 10px; }
nav { margin: 14px 0 20px; font-size: 13px; }
nav a { color: var(--accent); margin-right: 12px; text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; }
.card.bad b { color: var(--bad); }
section { border-top: 1px solid var(--line); padding: 18px 0 8px; break-inside: avoid; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left;
  vertical-align: top; }
th { font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
figure { margin: 6px 0; }
figure svg { max-width: 100%; height: auto; }
.merge { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px;
  border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; margin: 10px 0;
  break-inside: avoid; }
.merge ol { padding-left: 20px; margin: 4px 0; }
.risky { color: var(--bad); font-weight: 600; }
footer { color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
  padding-top: 10px; }
@media print { nav { display: none; } body { max-width: none; padding: 0; }
  section { break-inside: auto; } h2, h3, p.lead { break-after: avoid; }
  figure, tr, .card { break-inside: avoid; }
  a { color: inherit; text-decoration: none; } }
@media (max-width: 700px) { .merge { grid-template-columns: 1fr; } }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n:,} times"


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()
) -> str:
    head = "".join(
        f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if i in numeric and isinstance(cell, int):
                cells.append(f'<td class="n">{_n(cell)}</td>')
            else:
                cells.append(f"<td>{cell if isinstance(cell, _Raw) else _e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return '<p class="muted">None.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Markup made here (already escaped)."""


def _code(text: str) -> _Raw:
    return _Raw(f"<code>{_e(text)}</code>")


def _chart(draw: Callable[[], str], alt: str) -> str:
    if not charts.available():
        return ""
    return f'<figure role="img" aria-label="{_e(alt)}">{draw()}</figure>'


def _section(anchor: str, title: str, lead: str, *parts: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{_e(title)}</h2><p class="lead">{lead}</p>'
        + "".join(parts)
        + "</section>"
    )


def _merge(merge: Merge) -> str:
    link = merge.link
    steps = "".join(
        f"<li{' class=risky' if {x.a, x.b} == {link.a, link.b} else ''}>"
        f"{_code(x.a)} — {_code(x.b)} <span class=muted>at {_e(when(x.t))}, sent {_times(x.sent)}, "
        f"{_e(x.source or 'source unknown')}</span></li>"
        for x in merge.chain
    )
    drawing = ""
    if merge.drawing is not None and charts.available():
        drawing = _chart(lambda: charts.graph(merge), f"graph of person {merge.person}")
    elif merge.drawing is None:
        drawing = f'<p class="muted">Too large to draw ({_n(merge.size)} identities).</p>'
    return (
        '<div class="merge"><div>'
        f"<h3>{_e(merge.tenant)} / {_code(merge.person)}: {_n(merge.size)} identities</h3>"
        f'<p>Risky link <span class="risky">{_code(link.a)} — {_code(link.b)}</span>, '
        f"first sent {_e(when(link.t))} from {_e(link.source or 'an unknown source')}, "
        f"{_times(link.sent)} in all. Without it the person splits into {_n(merge.sizes[0])} + "
        f"{_n(merge.sizes[1])} identities with {merge.customers[0]} + {merge.customers[1]} "
        "Customer IDs.</p>"
        f"<p>Why {_code(merge.ends[0])} and {_code(merge.ends[1])} are one person "
        f"(since {_e(when(merge.joined_at))}):</p><ol>{steps}</ol></div>"
        f"<div>{drawing}</div></div>"
    )


def page(audit: Audit, *, title: str = "identity audit") -> str:
    """Return the audit as one self-contained HTML page.

    Examples
    --------
    >>> from identity import Engine
    >>> from identity.audit.engines.memory import audit_database
    >>> engine = Engine()
    >>> _ = engine.alias("K", "anon-1", "<b>ann</b>", t=1)
    >>> text = page(audit_database(engine))
    >>> "<b>ann</b>" in text, "&lt;b&gt;ann&lt;/b&gt;" in text, "<script" in text
    (False, True, False)
    """
    s = audit.summary()
    scope = "all tenants" if audit.tenant is None else f"tenant {audit.tenant}"
    as_of = "" if audit.as_of is None else f", as of {when(audit.as_of)} UTC"
    cards = [
        ("records", s["records"], False),
        ("quarantined", s["quarantined"], s["quarantined"] > 0),
        ("exact duplicates", s["duplicates"], False),
        ("likely retries", s["retries"], s["retries"] > 0),
        ("identities", s["identities"], False),
        ("people", s["people"], False),
        ("largest person", s["largest_person"], False),
        ("risky links", s["risky_links"], s["risky_links"] > 0),
        ("junk identities", s["junk_identities"], s["junk_identities"] > 0),
        ("tenants", s["tenants"], False),
    ]
    summary = "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{_n(v)}</b><span>{_e(k)}</span></div>'
        for k, v, bad in cards
    )
    note = (
        ""
        if charts.available()
        else f'<p class="note">Charts need matplotlib: <code>{_e(charts.GET_CHARTS)}</code>.</p>'
    )
    sources = (
        _table(
            ["input", "calls"],
            [
                (_Raw(f'<code title="{_e(n)}">{_e(os.path.basename(n))}</code>'), c)
                for n, c in audit.sources
            ],
            numeric=(1,),
        )
        if audit.sources
        else ""
    )
    sections = [
        _section(
            "kinds",
            "What do the calls hold?",
            "Accepted records by kind: an <code>/e</code> call is one event, and <code>/e</code> "
            "and <code>/s</code> calls set one property record per property they carry. "
            "Exact duplicates (SPEC §8) are counted, not stored twice.",
            _table(
                ["kind", "received", "stored", "exact duplicates"],
                [(k.kind, k.received, k.stored, k.duplicates) for k in audit.kinds],
                numeric=(1, 2, 3),
            ),
            sources,
        ),
        _section(
            "quarantine",
            "What was refused, and why?",
            f"{_count(audit.quarantined, 'call')} quarantined, whole, with a reason; nothing was "
            "dropped (see <code>identity quarantine</code>).",
            _chart(lambda: charts.reasons(audit.quarantine), "quarantined calls by reason")
            if audit.quarantine
            else "",
            _table(
                ["reason", "calls", "examples"],
                [
                    (r.reason, r.calls, _Raw("<br>".join(_code(x) for x in r.examples)))
                    for r in audit.quarantine
                ],
                numeric=(1,),
            ),
        ),
        _section(
            "retries",
            "Did clients send events twice?",
            f"{_count(audit.retries, 'likely client retry', 'likely client retries')}: "
            "the same identity, event name and "
            f"properties again within {RETRY_WINDOW} s under a different <code>_t</code> "
            f"(stored, unlike the {_n(sum(k.duplicates for k in audit.kinds[:1]))} exact "
            "duplicate events).",
            _table(
                ["tenant", "identity", "event", "first", "again"],
                [
                    (r.tenant, _code(r.identity), r.event, when(r.previous), when(r.t))
                    for r in audit.retry_examples
                ],
            ),
        ),
        _section(
            "people",
            "How big are the people?",
            f"{_n(audit.identities)} identities in {_n(audit.people)} people; the largest has "
            f"{_n(audit.largest_size)}. Both axes are logarithmic.",
            _chart(lambda: charts.sizes(audit.sizes), "people by size, log-log")
            if audit.sizes
            else "",
            "<h3>Largest people</h3>",
            _table(
                ["tenant", "person", "identities", "Customer IDs", "events"],
                [
                    (p.tenant, _code(p.person), p.identities, p.customer_ids, p.events)
                    for p in audit.largest
                ],
                numeric=(2, 3, 4),
            ),
            "<h3>People by size</h3>",
            _table(
                ["identities", "people", "their identities"],
                size_bins(audit.sizes),
                numeric=(0, 1, 2),
            ),
        ),
        _section(
            "risky",
            "Which merges look wrong?",
            f"{_count(audit.bridges, 'risky link')}: bridges whose removal would split a "
            "person into "
            f"two parts that both have a Customer ID or at least two identities; "
            f"{_n(audit.hubs)} hub identities (10 or more links). The riskiest, most even "
            "split first, with the chain that joined the two sides (the risky link in red):",
            "".join(_merge(m) for m in audit.riskiest) or '<p class="muted">No risky links.</p>',
        ),
        _section(
            "junk",
            "Which IDs are junk?",
            f"{_n(audit.junk)} stored identities match the block list (their events were "
            f"accepted, as sent); {_n(audit.blocked_aliases)} aliases to junk were quarantined "
            f"instead of merging. {_n(audit.never_customer)} of {_n(audit.identities)} "
            "identities never became Customer IDs (seen only in aliases).",
            _table(
                ["identity", "tenant", "person", "events"],
                [
                    (_code(j.identity), j.tenant, _code(j.person), j.events)
                    for j in audit.junk_examples
                ],
                numeric=(3,),
            ),
        ),
        _section(
            "tenants",
            "Whose calls are they?",
            f"{_n(len(audit.tenants))} tenants (API keys).",
            _table(
                ["tenant", "identities", "people", "events", "quarantined"],
                [
                    (t.tenant, t.identities, t.people, t.events, t.quarantined)
                    for t in audit.tenants
                ],
                numeric=(1, 2, 3, 4),
            ),
        ),
        _section(
            "timeline",
            "When were the calls made?",
            f"Records per {audit.span} (UTC): accepted by their <code>_t</code>, quarantined "
            "by when they were received.",
            _chart(lambda: charts.timeline(audit.span, audit.timeline), "records over time")
            if audit.timeline
            else "",
            _table(
                [audit.span, "events", "properties", "aliases", "quarantined"],
                [
                    (when(b.start, audit.span), b.event, b.property, b.alias, b.quarantined)
                    for b in audit.timeline
                ],
                numeric=(1, 2, 3, 4),
            ),
        ),
    ]
    nav = "".join(
        f'<a href="#{a}">{_e(t)}</a>'
        for a, t in [
            ("kinds", "Records"),
            ("quarantine", "Quarantine"),
            ("retries", "Retries"),
            ("people", "People"),
            ("risky", "Risky merges"),
            ("junk", "Junk"),
            ("tenants", "Tenants"),
            ("timeline", "Over time"),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="muted">{_e(scope)}{_e(as_of)} · report schema {SCHEMA}</p>'
        f'</header><div class="cards">{summary}</div>{note}<nav>{nav}</nav>'
        + "".join(sections)
        + "<footer>Made by identity audit. Every number here is in "
        "<code>identity audit --json</code>.</footer></body></html>\n"
    )
