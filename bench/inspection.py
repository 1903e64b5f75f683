"""Inspection at size: explain, risky and what-if on the largest person of a big database.

``python -m bench inspect --calls 1M`` generates the `issue2`-shaped workload (or uses
``--db``), ingests it, finds the largest person of its first tenant, and times, round-robin in
the same run: ``identity check`` of the whole database (the reference), the person's graph,
``explain`` between its smallest and largest identity, ``risky`` over the tenant, and
``what-if`` dropping the person's busiest identity.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workloads
from bench.measure import RoundRobin, Timing
from identity import Engine
from identity.cli import main as identity_main
from identity.inspection import explain, person_graph, risky, what_if


@dataclass(frozen=True)
class InspectResult:
    """Timings of the inspection of one database."""

    db: str
    identities: int
    tenant: str
    person: str
    person_size: int
    timings: dict[str, Timing]

    def as_dict(self) -> dict[str, Any]:
        """Return plain data (``--json``)."""
        return {
            "db": self.db,
            "identities": self.identities,
            "tenant": self.tenant,
            "person": self.person,
            "person_size": self.person_size,
            "timings": {name: t.as_dict() for name, t in self.timings.items()},
        }

    def text(self) -> str:
        """Return the result as a Markdown table, each figure beside the check's."""
        reference = self.timings["identity check (reference)"].cpu_median
        lines = [
            f"{self.identities:,} identities; largest person {self.person!r} of "
            f"{self.person_size:,} identities (tenant {self.tenant!r})",
            "",
            "| measurement | CPU median | wall median | / check |",
            "| --- | --- | --- | --- |",
        ]
        for name, timing in self.timings.items():
            ratio = timing.cpu_median / reference if reference else float("nan")
            lines.append(
                f"| {name} | {timing.cpu_median * 1000:,.1f} ms | "
                f"{timing.wall_median * 1000:,.1f} ms | {ratio:.3f}x |"
            )
        return "\n".join(lines)


def _build(calls: int, folder: str) -> str:
    lines = os.path.join(folder, "calls.url")
    workloads.write(workloads.generate("issue2", calls, 0, None), lines, fmt="url")
    db = os.path.join(folder, "inspect.db")
    if identity_main(["ingest", lines, "--db", db, "-q", "--received", "1700000000"]) != 0:
        raise RuntimeError("identity ingest failed")
    return db


def run(calls: int = 1_000_000, *, db: str | None = None, repeat: int = 3) -> InspectResult:
    """Time the inspection of the largest person of `db` (built from `calls` when None)."""
    with tempfile.TemporaryDirectory() as folder:
        path = db or _build(calls, folder)
        with Engine(path) as engine:
            tenant = engine.tenants()[0]
            person, size = engine.store.conn.execute(
                "SELECT person, size FROM persons WHERE tenant = ? ORDER BY size DESC, person "
                "LIMIT 1",
                (tenant,),
            ).fetchone()
            graph = person_graph(engine, tenant, person)
            busiest = max(graph.degree(), key=lambda item: (item[1], item[0]))[0]
            last = max(graph.nodes)
            identities = engine.counts()["identities"]
            subjects = {
                "identity check (reference)": engine.check,
                "person_graph, largest person": lambda: person_graph(engine, tenant, person),
                "explain, its smallest and largest identity": lambda: explain(
                    engine, tenant, person, last
                ),
                "risky, the whole tenant": lambda: risky(engine, tenant),
                "what-if, drop its busiest identity": lambda: what_if(
                    engine, tenant, drop_identities=[busiest]
                ),
            }
            timings = RoundRobin(repeat=repeat).run(subjects)
    return InspectResult(
        db=str(Path(path).name),
        identities=identities,
        tenant=tenant,
        person=person,
        person_size=size,
        timings=timings,
    )
