"""Measurements that run in a child process of their own: ``python -m bench.child WHAT JSON``.

Each prints one JSON object on its last line of stdout: the figures, the child's own CPU and
wall seconds for the measured work (interpreter start-up and imports excluded), its peak RSS
(`bench.measure.max_rss`), which is the measurement's own because the child is a new process,
and ``baseline_rss``, the peak before the measurement (the interpreter and the harness).
`bench.measure.run_child` runs them; `MEASUREMENTS` lists them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from bench import subjects
from bench.measure import clock, deep_size, max_rss, rss_now


def floor(params: Mapping[str, Any]) -> dict[str, Any]:
    """The floor on a lines file: parse_qsl + one executemany (see `subjects.floor_ingest`)."""
    cpu, wall = clock()
    rows = subjects.floor_ingest(subjects.read_lines(params["lines"]), params["db"])
    cpu_end, wall_end = clock()
    return {"rows": rows, "cpu_s": cpu_end - cpu, "wall_s": wall_end - wall}


def ingest(params: Mapping[str, Any]) -> dict[str, Any]:
    """``identity ingest LINES --db DB`` in this process; with ``memory``, size the cache after.

    The cache figures: `deep_size` of ``engine._cache`` (identity strings not counted), and of
    a networkx and an `identity.core` UnionFind holding the same identities joined by the
    same alias calls (same method, same strings).
    """
    from identity import engine as engine_module

    engines: list[Any] = []
    original = engine_module.Engine.__init__

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        engines.append(self)

    if params.get("memory"):  # keep a hold of the CLI's engine, to size its cache afterwards
        engine_module.Engine.__init__ = keep  # type: ignore[method-assign]
    cpu, wall = clock()
    calls, output = subjects.cli_ingest(params["lines"], params["db"])
    cpu_end, wall_end = clock()
    engine_module.Engine.__init__ = original  # type: ignore[method-assign]
    result: dict[str, Any] = {
        "calls": calls,
        "output": output,
        "cpu_s": cpu_end - cpu,
        "wall_s": wall_end - wall,
        "max_rss": max_rss(),
        "rss_end": rss_now(),
    }
    if engines:
        result.update(_cache_memory(engines[-1], params["lines"]))
    return result


def _cache_memory(engine: Any, lines: str) -> dict[str, Any]:
    """Size ``engine._cache`` and union-finds of the same identities, laid out like it.

    The cache keeps one dict per tenant keyed by the identity string; so do the union-finds
    here (one per tenant, keyed by the cache's own string objects, unioned by the alias calls
    of `lines`): dicts with only string keys are smaller in CPython, so keying the
    union-finds by ``(tenant, identity)`` tuples would not compare like with like.
    """
    from networkx.utils import UnionFind as NxUnionFind

    from identity.core import UnionFind

    cache = engine._cache
    pairs: dict[str, list[tuple[str, str]]] = {}
    for line in subjects.read_lines(lines):
        if line.startswith("/a?"):
            params = dict(parse_qsl(line[3:], keep_blank_values=True))
            pairs.setdefault(params["_k"], []).append((params["_p"], params["_n"]))
    sizes: dict[str, int] = {"cache": deep_size(cache, skip=(str,)), "networkx": 0, "core": 0}
    n_ids = 0
    for tenant, ids in cache.ids.items():
        n_ids += len(ids)
        own = {name: name for name in ids}  # the cache's string objects, not equal copies
        for label, cls in (("networkx", NxUnionFind), ("core", UnionFind)):
            uf = cls(ids)
            for a, b in pairs.get(tenant, ()):
                uf.union(own.get(a, a), own.get(b, b))
            same = sum(1 for _ in uf) == len(ids)
            sizes[label] += deep_size(uf, skip=(str,)) if same else -(1 << 60)
            del uf
    return {"identities": n_ids, "bytes": {k: max(v, -1) for k, v in sizes.items()}}


def reopen(params: Mapping[str, Any]) -> dict[str, Any]:
    """Import, then time ``Engine(path, create=False).person_of(...)``; then time lookups."""
    cpu, wall = clock()
    from identity.engine import Engine

    imported_cpu, imported_wall = clock()
    tenant, identity = params["first"]
    with Engine(params["db"], create=False) as engine:
        opened_cpu, opened_wall = clock()
        person = engine.person_of(tenant, identity)
        looked_cpu, looked_wall = clock()
        lookups: dict[str, dict[str, float]] = {}
        sample = [tuple(x) for x in params.get("sample", [])]
        for name, fn in _lookups(engine).items():
            start_cpu, start_wall = clock()
            for pair in sample:
                fn(*pair)
            end_cpu, end_wall = clock()
            lookups[name] = {"cpu_s": end_cpu - start_cpu, "wall_s": end_wall - start_wall}
    return {
        "person": person,
        "import_cpu_s": imported_cpu - cpu,
        "import_wall_s": imported_wall - wall,
        "open_cpu_s": opened_cpu - imported_cpu,
        "open_wall_s": opened_wall - imported_wall,
        "cpu_s": looked_cpu - imported_cpu,
        "wall_s": looked_wall - imported_wall,
        "lookups": lookups,
        "n_lookups": len(params.get("sample", [])),
        "max_rss": max_rss(),
    }


def _lookups(engine: Any) -> dict[str, Callable[[str, str], object]]:
    anchor: list[str] = []

    def same_person(tenant: str, identity: str) -> bool:
        other = anchor[0] if anchor else identity
        anchor[:] = [identity]
        return bool(engine.same_person(tenant, identity, other))

    return {
        "person_of": engine.person_of,
        "person": engine.person,
        "same_person": same_person,
    }


MEASUREMENTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "floor": floor,
    "ingest": ingest,
    "reopen": reopen,
}


def main(argv: list[str]) -> int:
    """Run ``WHAT JSON`` and print the result as one JSON line."""
    what, params = argv[0], json.loads(argv[1])
    started = time.perf_counter()
    baseline = max_rss()
    result = MEASUREMENTS[what](params)
    result["baseline_rss"] = baseline
    result.setdefault("max_rss", max_rss())
    result["process_s"] = time.perf_counter() - started
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
