r"""The audit on Apache Spark: the same report as the in-memory engine, on a cluster.

The pipeline mirrors :mod:`identity.audit.engines.duckdb`, on DataFrames:

1. **Read.** Files are read by Spark itself (``spark.read.text`` split on ``\\n`` only, as
   identity's :class:`~identity.io.sources.Reader` splits them; gzip by its ``.gz`` name),
   each line's raw bytes kept, and parsed on the executors by identity's own parser
   (:func:`identity.io.formats.parser`, the format sniffed per input on the driver as the
   Reader sniffs it), so there is one definition of the validation rules. Line numbers are
   the Reader's (1-based, blank lines counted): each split's lines are counted first and
   numbered from the lines of the splits before it. A byte order mark on line 1, carriage
   returns, bad UTF-8 and over-long lines are treated on the executors exactly as the Reader
   treats them. Inputs Spark cannot read as they are (stdin, gzip without ``.gz``, a name
   with a compression suffix that is not compressed, names Spark would take for a pattern)
   are read by identity's Reader on the driver and their rows handed to Spark.
2. **Store.** The calls are folded as the store folds them (SPEC §8): events by identity,
   case-insensitive name, dedupe time and properties; property records; alias links by
   unordered pair (earliest time and its source); quarantined calls by raw text, reason and
   receive time.
3. **People.** Identities are numbered with ``monotonically_increasing_id`` (unique: no hash
   collisions) and their components found by randomized contraction (:func:`components`);
   a person's id is its representative, its name its smallest identity.
4. **Report.** The counts are DataFrame aggregates; bridges are found per person on the
   executors by the in-memory engine's low-link pass (:func:`identity.audit.bridges.bridges_of`;
   only counts and the evenest candidates, ties kept, come back); the riskiest merges'
   explain chains and drawings come from an in-memory engine on the driver holding only
   those people's accepted calls.

Connected components are the randomized contraction of
:func:`identity.audit.engines.components.duckdb_components`, on DataFrames: each round is one
aggregate (every node moves to the first of itself and its neighbours under a fresh hash),
a few pointer-jumping joins, and one relabelling of the edges; the plan is cut with
``localCheckpoint`` after every round, so its size does not grow with the rounds. GraphFrames
is not needed.

pyspark is imported here only, and only when this module is; ``import identity`` never does.
On a cluster, identity must be installed on the executors too (they parse the lines).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ...calls import DEFAULT_RULES, Call
from ...errors import IdentityError
from ...io.formats import Context, FormatOrAuto, Layout, parser
from ...io.sources import _PREVIEW, MAX_LINE, Input, Reader, expand, line_text, parse_line
from ..bridges import Split, bridges_of, evenest
from ..model import (
    EXAMPLES,
    KINDS,
    RETRY_WINDOW,
    TOP,
    Audit,
    Junk,
    KindCount,
    Largest,
    Merge,
    Reason,
    Retry,
)
from .memory import HUB_LINKS, MIN_PART, merge_of
from .report import Queries, Scanned, report

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pyspark.sql import Column, DataFrame, SparkSession

    from ...engine import Engine

__all__ = [
    "SparkUnavailableError",
    "audit",
    "components",
    "local_session",
]

_DAY = 86_400
_quote = json.encoder.encode_basestring
_BATCH = 50_000
#: Rows of one call, as the ``calls`` DataFrame holds them.
_CALLS = (
    "input int, line long, kind string, tenant string, identity string, name string, t long, "
    "td long, received long, raw string, source string, reason string, "
    "props array<struct<k: string, n: string, v: string>>, nkey string, shown string"
)
#: A path Spark reads as it is named: no pattern characters, no hidden or ``_`` file name.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+@=,~-]+").fullmatch
#: Names Hadoop would decompress by their suffix.
_CODECS = (".gz", ".bz2", ".deflate", ".zst", ".lz4", ".snappy", ".br", ".xz", ".lzo", ".z")


class SparkUnavailableError(IdentityError):
    """pyspark or a Java runtime is missing."""


def local_session(master: str | None = None, *, partitions: int = 4) -> SparkSession:
    """Return a Spark session (``local[*]`` unless `master` says otherwise), UI off.

    In local mode the Python workers run this interpreter (``PYSPARK_PYTHON`` unless it is
    set), so they import the same identity, and adaptive execution and broadcast joins are
    off (each would be one more job on the same cores). A session already running is
    returned as it is (``getOrCreate``).

    Raises
    ------
    SparkUnavailableError
        pyspark is not installed, or no Java runtime is found.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise SparkUnavailableError(
            "the spark engine needs pyspark and Java: pip install 'identity[spark]'"
        ) from None
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise SparkUnavailableError("the spark engine needs Java 17 or later (no java on PATH)")
    master = master or "local[*]"
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    local = master.startswith("local")
    builder: Any = SparkSession.builder
    session: SparkSession = (
        builder.master(master)
        .appName("identity-audit")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        # on one machine every query stage and every broadcast is a job of its own on the
        # same few cores: without them the audit of 100k links took 79 s, not 145 s
        .config("spark.sql.adaptive.enabled", str(not local).lower())
        .config("spark.sql.autoBroadcastJoinThreshold", "-1" if local else "10MB")
        .getOrCreate()
    )
    return session


def _cut(frame: DataFrame, *, eager: bool = True) -> DataFrame:
    """Materialise `frame` (``localCheckpoint``) and forget how it was made.

    Not `eager`: at the first action on it (one job fewer when an action follows at once).

    A checkpoint keeps its plan's size estimate, and the estimate of a join is the product
    of its sides': across rounds of self-joins it squares each time, until Spark runs out of
    memory computing it. Rebuilding the DataFrame from the checkpoint's rows (in the JVM,
    nothing passes through Python) starts the estimate afresh. Without a JVM behind the
    session (Spark Connect) the checkpoint is returned as it is.
    """
    frame = frame.localCheckpoint(eager=eager)
    jdf = getattr(frame, "_jdf", None)
    if jdf is None:  # pragma: no cover - Spark Connect
        return frame
    from pyspark.sql.classic.dataframe import DataFrame as Classic

    fresh = jdf.sparkSession().createDataFrame(jdf.rdd(), jdf.schema())
    return Classic(fresh, frame.sparkSession)


def components(
    edges: DataFrame,
    *,
    progress: Callable[[str], None] | None = None,
    max_rounds: int = 200,
    local_below: int = 4096,
) -> tuple[DataFrame, int]:
    """Map every node of an edge list to its component's representative, on Spark.

    Once at most `local_below` links are left (the contracted graph shrinks by a constant
    factor a round), the last round joins them on the driver with a union-find instead of
    the rounds of jobs that a handful of links would still cost.

    Parameters
    ----------
    edges : pyspark.sql.DataFrame
        Columns ``a`` and ``b`` (long), undirected; duplicates and self-loops allowed.
    progress : callable, optional
        Called with a line after each round.
    max_rounds : int
        A guard; never reached on real graphs (rounds are ``O(log n)``).
    local_below : int
        Finish on the driver once this many links or fewer are left (0: never).

    Returns
    -------
    (DataFrame, int)
        ``(node, root)`` for every node that is not its component's representative (nodes
        absent represent themselves), and the rounds run.
    """
    from pyspark.sql import functions as F

    e = (
        edges.where(F.col("a") != F.col("b"))
        .select(F.least("a", "b").alias("u"), F.greatest("a", "b").alias("v"))
        .distinct()
    )
    e = _cut(e, eager=False)  # counted at once
    moves: list[DataFrame] = []
    rounds = 0
    while True:
        left = e.count()
        if not left:
            break
        rounds += 1
        if rounds > max_rounds:  # pragma: no cover - a guard
            raise RuntimeError("connected components did not converge")
        if left <= local_below:
            moves.append(_joined(e))
            if progress is not None:
                progress(f"components: round {rounds}, {left:,} links in (on the driver)")
            break
        seed = F.lit(rounds * 0x9E3779B1)
        d = e.select(F.col("u").alias("x"), F.col("v").alias("y")).unionAll(
            e.select(F.col("v").alias("x"), F.col("u").alias("y"))
        )
        best = d.groupBy("x").agg(F.min(F.struct(F.xxhash64(F.col("y"), seed), "y")).alias("b"))
        r = best.where(best["b"] < F.struct(F.xxhash64(F.col("x"), seed), F.col("x"))).select(
            "x", F.col("b.y").alias("rep")
        )
        r = _cut(r, eager=False)
        while True:  # pointer jumping
            s = r.select(F.col("x").alias("sx"), F.col("rep").alias("srep"))
            j = r.join(s, r["rep"] == s["sx"], "left").select(
                "x", F.coalesce("srep", "rep").alias("rep"), F.col("srep").isNotNull().alias("m")
            )
            j = _cut(j, eager=False)  # counted at once
            moved = j.where(F.col("m")).limit(1).count()
            r = j.select("x", "rep")
            if not moved:
                break
        moves.append(r)
        ra = r.select(F.col("x").alias("ax"), F.col("rep").alias("arep"))
        rb = r.select(F.col("x").alias("bx"), F.col("rep").alias("brep"))
        p = (
            e.join(ra, e["u"] == ra["ax"], "left")
            .join(rb, e["v"] == rb["bx"], "left")
            .select(F.coalesce("arep", "u").alias("p"), F.coalesce("brep", "v").alias("q"))
            .where(F.col("p") != F.col("q"))
        )
        e = p.select(F.least("p", "q").alias("u"), F.greatest("p", "q").alias("v"))
        e = _cut(e.distinct(), eager=False)  # counted at once
        if progress is not None:
            progress(f"components: round {rounds}, {left:,} links in")
    spark = edges.sparkSession
    out = spark.createDataFrame([], "node long, root long")
    for r in reversed(moves):
        o = out.select(F.col("node").alias("on"), F.col("root").alias("oroot"))
        step = r.join(o, r["rep"] == o["on"], "left").select(
            F.col("x").alias("node"), F.coalesce("oroot", "rep").alias("root")
        )
        out = _cut(out.unionAll(step), eager=False)
    return out, rounds


# -- reading ---------------------------------------------------------------------------------


def _joined(edges: DataFrame) -> DataFrame:
    """Return ``(x, rep)`` joining the components of the few links `edges` (``u``, ``v``).

    On the driver, by union-find; every node that is not its component's smallest maps to it.
    """
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:
            parent[x], x = root, parent[x]
        return root

    for u, v in edges.collect():
        a, b = find(int(u)), find(int(v))
        if a != b:
            parent[max(a, b)] = min(a, b)
    rows = [(x, find(x)) for x in parent]
    return edges.sparkSession.createDataFrame(rows, "x long, rep long")


@dataclass(frozen=True, slots=True)
class _Plan:
    """How the executors parse one input's lines (what its Reader found on the driver)."""

    name: str
    fmt: str
    tenant: str | None
    received: int
    layout: Layout | None
    header: int


def _row(index: int, line: int, call: Call) -> tuple[object, ...]:
    """Return `call` as a row of the ``calls`` DataFrame (as the DuckDB engine's table)."""
    props = list(call.properties) if call.ok else []
    event = call.ok and call.kind == "e"
    nkey = (call.name or "").casefold() if event else None
    text = None
    if event:
        pairs = [f"{_quote(n)}:{_quote(v)}" for _, n, v in call.properties]
        text = "{" + ",".join(pairs) + "}"
    return (
        index, line, call.kind, call.tenant, call.identity, call.name, call.t, call.td,
        call.received, call.raw, call.source, call.reason, props, nkey, text,
    )  # fmt: skip


def _parse_lines(
    plans: dict[int, _Plan], bases: dict[tuple[int, int], int], rows: Iterable[Any]
) -> Iterator[tuple[object, ...]]:
    """Parse one partition of ``(input, split start, raw line)`` rows as the Reader would.

    A split's lines arrive in order and whole; `bases` holds the lines before each split.
    """
    parsers: dict[int, Any] = {}
    contexts: dict[int, Context] = {}
    seen: dict[tuple[int, int], int] = defaultdict(int)
    for index, start, value in rows:
        key = (index, start)
        number = bases[key] + seen[key] + 1
        seen[key] += 1
        plan = plans[index]
        parse = parsers.get(index)
        if parse is None:
            ctx = contexts[index] = Context(plan.tenant, plan.received, DEFAULT_RULES)
            parse = parsers[index] = parser(plan.fmt, ctx, plan.layout)  # type: ignore[arg-type]
        data = bytes(value)
        overlong = len(data) >= MAX_LINE  # what the Reader cannot read whole
        if overlong:
            data = data[:_PREVIEW]
        text = line_text(data, number, plan.header)
        if text is None:
            continue
        source = f"{plan.name}:{number}"
        result = parse_line(text, source, parse, contexts[index], overlong=overlong)
        if result is None:
            continue
        for call in (result,) if isinstance(result, Call) else result:
            yield _row(index, number, call)


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _spark_reads(path: str) -> bool:
    """Tell whether Spark's text reader sees the bytes identity's Reader reads in `path`."""
    if path == "-":
        return False
    real = os.path.abspath(path)
    base = os.path.basename(real)
    if not _PLAIN_PATH(real) or base.startswith(("_", ".")):
        return False
    named = base.lower().endswith(_CODECS)
    if _is_gzip(path):
        return base.endswith(".gz")
    return not named


def _read(
    spark: SparkSession,
    inputs: Sequence[Input],
    *,
    fmt: FormatOrAuto,
    default_tenant: str | None,
    received: int | None,
    progress: Callable[[str], None] | None,
) -> tuple[DataFrame, list[tuple[str, int]]]:
    """Read `inputs` into one DataFrame of calls; return it and ``(input key, calls)``."""
    from pyspark.sql import functions as F

    plans: dict[int, _Plan] = {}
    keys: dict[int, str] = {}
    scans: list[DataFrame] = []
    frames: list[DataFrame] = []
    seen: set[str] = set()
    for index, item in enumerate(inputs):
        # named as `identity ingest` records inputs (the real path; stdin is not recorded),
        # and a file given twice is read once, as ingest skips an input already read
        key = "-" if item.path == "-" else os.path.realpath(item.path)
        if key != "-" and key in seen:
            continue
        seen.add(key)
        reader = Reader(item, fmt=fmt, tenant=default_tenant, received=received)
        if _spark_reads(item.path):
            reader.close()
            plans[index] = _Plan(
                item.name, reader.format, default_tenant, reader.received,
                reader._layout_found, reader._header,
            )  # fmt: skip
            text = spark.read.option("lineSep", "\n").text(os.path.abspath(item.path))
            scans.append(
                text.select(
                    F.lit(index).alias("input"),
                    F.input_file_block_start().alias("start"),
                    F.col("value").cast("binary").alias("value"),
                )
            )
            if progress is not None:
                progress(f"{item.name}: read by Spark ({reader.format})")
        else:
            with reader:  # the reader that sniffed it (stdin cannot be read twice)
                batch: list[tuple[object, ...]] = []
                for call in reader:
                    batch.append(_row(index, int(call.source.rsplit(":", 1)[1]), call))
                    if len(batch) >= _BATCH:
                        frames.append(
                            _cut(spark.createDataFrame(batch, _CALLS, verifySchema=False))
                        )
                        batch = []
                frames.append(spark.createDataFrame(batch, _CALLS, verifySchema=False))
            if key == "-" and reader.content is not None:
                key = f"<stdin {reader.content}>"  # as ingest remembers a whole small stdin
            if progress is not None:
                progress(f"{item.name}: read on the driver ({reader.format})")
        keys[index] = key
    if scans:
        lines = _union(scans)
        counts = lines.groupBy("input", "start").count().collect()
        bases: dict[tuple[int, int], int] = {}
        before: dict[int, int] = defaultdict(int)
        for index, start, n in sorted((int(i), int(s), int(n)) for i, s, n in counts):
            bases[index, start] = before[index]
            before[index] += n
        parse = partial(_parse_lines, plans, bases)
        frames.append(
            spark.createDataFrame(lines.rdd.mapPartitions(parse), _CALLS, verifySchema=False)
        )
    calls = _union(frames).cache() if frames else spark.createDataFrame([], _CALLS)
    found: dict[int, int] = dict(calls.groupBy("input").count().collect())
    read = [(keys[i], int(found.get(i, 0))) for i in sorted(keys)]
    if progress is not None:
        progress(f"calls read: {sum(n for _, n in read):,}")
    return calls, read


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


# -- the store's tables ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Store:
    """The store's tables as DataFrames (SPEC §8), materialised."""

    calls: DataFrame
    identities: DataFrame  # id, tenant, identity, first_seen, customer_since
    links: DataFrame  # a, b, t, sent, source
    events: DataFrame  # identity, name_key, td, name, t, properties, sent
    properties: DataFrame  # identity, t, sent
    quarantine: DataFrame  # tenant, reason, raw, received, source, sent
    okid: DataFrame  # the accepted calls with their identities' ids (iid, jid)

    def frames(self) -> tuple[DataFrame, ...]:
        """Return every table (to unpersist them)."""
        return (self.calls, self.links, self.events, self.properties, self.quarantine,
                self.okid)  # fmt: skip


def _store(calls: DataFrame) -> _Store:
    """Fold the calls into the store's tables, as identity's write path does (SPEC §8)."""
    from pyspark.sql import functions as F

    col = F.col
    ok = calls.where(col("reason").isNull())
    named = ok.select(
        "tenant", "identity", "t", F.when(col("kind") != "a", col("t")).alias("c")
    ).unionByName(
        ok.where(col("kind") == "a").select(
            "tenant", col("name").alias("identity"), "t", F.lit(None).cast("long").alias("c")
        )
    )
    identities = _cut(
        named.groupBy("tenant", "identity")
        .agg(F.min("t").alias("first_seen"), F.min("c").alias("customer_since"))
        .withColumn("id", F.monotonically_increasing_id())
    )
    i = identities.select(
        col("tenant").alias("it"), col("identity").alias("ii"), col("id").alias("iid")
    )
    j = identities.select(
        col("tenant").alias("jt"), col("identity").alias("ji"), col("id").alias("jid")
    )
    okid = ok.join(i, (ok["tenant"] == i["it"]) & (ok["identity"] == i["ii"])).join(
        j, (ok["kind"] == "a") & (ok["tenant"] == j["jt"]) & (ok["name"] == j["ji"]), "left"
    )
    okid = okid.drop("it", "ii", "jt", "ji", "raw").cache()
    links = (
        okid.where((col("kind") == "a") & (col("iid") != col("jid")))
        .groupBy(F.least("iid", "jid").alias("a"), F.greatest("iid", "jid").alias("b"))
        .agg(
            F.min("t").alias("t"),
            F.count(F.lit(1)).alias("sent"),
            F.min(F.struct("t", "source"))["source"].alias("source"),
        )
        .cache()
    )
    events = (
        okid.where(col("kind") == "e")
        .withColumn("pk", F.transform("props", lambda x: F.array(x["k"], x["v"])))
        .groupBy(col("iid").alias("identity"), col("nkey").alias("name_key"), "td", "pk")
        .agg(F.min(F.struct("t", "name", "shown")).alias("m"), F.count(F.lit(1)).alias("sent"))
        .select(
            "identity",
            "name_key",
            "td",
            col("m.name").alias("name"),
            col("m.t").alias("t"),
            col("m.shown").alias("properties"),
            "sent",
        )
        .cache()
    )
    properties = (
        okid.where(col("kind") != "a")
        .select("iid", "td", "t", F.explode("props").alias("p"))
        .groupBy(col("iid").alias("identity"), col("p.k"), col("p.v"), "td")
        .agg(F.min("t").alias("t"), F.count(F.lit(1)).alias("sent"))
        .select("identity", "t", "sent")
    )
    quarantine = (
        calls.where(col("reason").isNotNull())
        .groupBy("raw", "reason", "received")
        .agg(
            F.min("tenant").alias("tenant"),
            F.min("source").alias("source"),
            F.count(F.lit(1)).alias("sent"),
        )
        .cache()
    )
    return _Store(calls, identities, links, events, properties, quarantine, okid)


@dataclass(frozen=True, slots=True)
class _People:
    """The partition as of the bound.

    ``member(mid, root)`` maps identities to people, ``person(pid, tenant, person, size)``.
    """

    member: DataFrame
    person: DataFrame


def _partition(
    store: _Store, bound: int, progress: Callable[[str], None] | None
) -> tuple[_People, int]:
    """Find the people as of `bound` (components of the links up to it)."""
    from pyspark.sql import functions as F

    col = F.col
    edges = store.links.where(col("t") <= bound).select("a", "b")
    roots, rounds = components(edges, progress=progress)
    ids = store.identities.where(col("first_seen") <= bound)
    member = (
        ids.join(roots, ids["id"] == roots["node"], "left").select(
            col("id").alias("mid"), F.coalesce("root", "id").alias("root")
        )
    ).cache()
    person = (
        member.join(store.identities, member["mid"] == store.identities["id"])
        .groupBy(col("root").alias("pid"))
        .agg(
            F.min("tenant").alias("tenant"),
            F.min("identity").alias("person"),
            F.count(F.lit(1)).alias("size"),
        )
        .cache()
    )
    return _People(member, person), rounds


# -- the report ------------------------------------------------------------------------------


class _Q:
    """The report's queries: a tenant filter and an ``as_of`` bound, as in the memory engine."""

    def __init__(self, store: _Store, people: _People, tenant: str | None, bound: int) -> None:
        self.s = store
        self.p = people
        self.tenant = tenant
        self.bound = bound

    def within(self, column: Column) -> Column:
        """Return the tenant filter on `column` (everything when no tenant is asked for)."""
        from pyspark.sql import functions as F

        return F.lit(True) if self.tenant is None else column == F.lit(self.tenant)

    def named(self, frame: DataFrame, on: str) -> DataFrame:
        """Join `frame` to the tenant and name (``itenant``, ``iname``) of its column `on`."""
        i = self.s.identities.select(
            self.s.identities["id"].alias("_id"),
            self.s.identities["tenant"].alias("itenant"),
            self.s.identities["identity"].alias("iname"),
            self.s.identities["customer_since"].alias("icustomer"),
        )
        return frame.join(i, frame[on] == i["_id"]).drop("_id")


def _counts(q: _Q) -> tuple[dict[str, int], int, dict[str, int], tuple[tuple[int, int], ...]]:
    from pyspark.sql import functions as F

    col, bound, none = F.col, q.bound, F.lit(None).cast("long")
    never = col("customer_since").isNull() | (col("customer_since") > bound)
    ids = (
        q.s.identities.where(q.within(col("tenant")) & (col("first_seen") <= bound))
        .groupBy("tenant")
        .agg(F.count(F.lit(1)).alias("n"), F.count(F.when(never, 1)).alias("never"))
        .select(F.lit(0).alias("part"), "tenant", none.alias("size"), "n", "never")
    )
    people = (
        q.p.person.where(q.within(col("tenant")))
        .groupBy("tenant", "size")
        .agg(F.count(F.lit(1)).alias("n"))
        .select(F.lit(1).alias("part"), "tenant", "size", "n", none.alias("never"))
    )
    identities: dict[str, int] = {}
    nevers = 0
    persons: dict[str, int] = defaultdict(int)
    sizes: dict[int, int] = defaultdict(int)
    for part, tenant, size, n, nev in ids.unionByName(people).collect():
        if part == 0:
            identities[tenant] = int(n)
            nevers += int(nev)
        else:
            persons[tenant] += int(n)
            sizes[int(size)] += int(n)
    return identities, nevers, persons, tuple(sorted(sizes.items()))


def _largest(q: _Q) -> tuple[Largest, ...]:
    from pyspark.sql import functions as F

    col, bound = F.col, q.bound
    top = (
        q.p.person.where(q.within(col("tenant")))
        .orderBy(col("size").desc(), "tenant", "person")
        .limit(TOP)
        .collect()
    )
    if not top:
        return ()
    roots = [int(r["pid"]) for r in top]
    member = q.p.member.where(col("root").isin(roots))
    customers = (
        q.named(member, "mid")
        .where(col("icustomer") <= bound)
        .groupBy("root")
        .count()
        .select(F.lit(0).alias("part"), "root", "count")
    )
    events = q.s.events.where(col("t") <= bound)
    counts = (
        events.join(member, events["identity"] == member["mid"])
        .groupBy("root")
        .count()
        .select(F.lit(1).alias("part"), "root", "count")
    )
    found: dict[tuple[int, int], int] = {
        (int(part), int(root)): int(n) for part, root, n in customers.unionByName(counts).collect()
    }
    return tuple(
        Largest(
            r["tenant"],
            r["person"],
            int(r["size"]),
            found.get((0, r["pid"]), 0),
            found.get((1, r["pid"]), 0),
        )
        for r in top
    )


def _bridges_in(rows: Iterable[Any]) -> Iterator[tuple[int, int, list[tuple[Any, ...]]]]:
    """On an executor: count a partition's risky bridges and hubs, keep the evenest bridges.

    Every link of an identity is in its person, so its degree is counted there. Yields one
    ``(bridges, hubs, [(person, a, b, sizes, customers), ...])``.
    """
    bridges = hubs = 0
    best: list[tuple[int, Split]] = []
    limit = 8 * TOP
    for person, edges in rows:
        pairs = [(int(e[0]), int(e[1])) for e in edges]
        customer: dict[int, bool] = {}
        degree: dict[int, int] = defaultdict(int)
        for a, b, ca, cb in edges:
            customer[a] = bool(ca)
            customer[b] = bool(cb)
            degree[a] += 1
            degree[b] += 1
        hubs += sum(1 for d in degree.values() if d >= HUB_LINKS)
        for split in bridges_of(pairs, customer):
            if min(split.customers) > 0 or min(split.sizes) >= MIN_PART:
                bridges += 1
                best.append((int(person), split))
        if len(best) > limit:
            best = evenest(best, TOP)
            limit = 2 * len(best) + 8 * TOP
    best = evenest(best, TOP)
    yield bridges, hubs, [(p, s.a, s.b, s.sizes, s.customers) for p, s in best]


def _risks(q: _Q) -> tuple[int, int, list[tuple[int, Split]]]:
    """Count risky bridges and hubs; return the riskiest splits (person row, split).

    The links are grouped by person and searched on the executors; only the counts and the
    evenest candidates (every tie at the cut kept) come back.
    """
    from pyspark.sql import functions as F

    col, bound = F.col, q.bound
    links = q.s.links.where(col("t") <= bound).select("a", "b")
    ca = q.s.identities.select(col("id").alias("ia"), col("tenant").alias("ta"),
                               col("customer_since").alias("sa"))  # fmt: skip
    cb = q.s.identities.select(col("id").alias("ib"), col("customer_since").alias("sb"))
    m = q.p.member
    linked = (
        links.join(ca, links["a"] == ca["ia"])
        .join(cb, links["b"] == cb["ib"])
        .join(m, links["a"] == m["mid"])
        .where(q.within(col("ta")))
        .select(
            "root",
            "a",
            "b",
            F.coalesce(col("sa") <= bound, F.lit(False)).alias("ca"),
            F.coalesce(col("sb") <= bound, F.lit(False)).alias("cb"),
        )
    )
    grouped = linked.groupBy("root").agg(F.collect_list(F.struct("a", "b", "ca", "cb")))
    bridges = hubs = 0
    best: list[tuple[int, Split]] = []
    for n, h, found in grouped.rdd.mapPartitions(_bridges_in).collect():
        bridges += n
        hubs += h
        best += [(p, Split(a, b, tuple(s), tuple(c))) for p, a, b, s, c in found]
    return bridges, hubs, evenest(best, TOP)


def _retries(q: _Q) -> tuple[int, tuple[Retry, ...]]:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col = F.col
    w = Window.partitionBy("identity", "name_key", "properties").orderBy("td")
    events = q.named(q.s.events, "identity").where(q.within(col("itenant")) & (col("t") <= q.bound))
    found = events.select(
        "itenant", "iname", "name", "td", F.lag("td").over(w).alias("previous")
    ).where(col("td") - col("previous") <= RETRY_WINDOW)
    count = found.count()
    rows = found.orderBy("itenant", "iname", "td").limit(EXAMPLES).collect() if count else []
    return int(count), tuple(Retry(t, i, n, int(p), int(td)) for t, i, n, td, p in rows)


def _junk(q: _Q) -> tuple[int, tuple[Junk, ...]]:
    """Count the junk identities and pick the examples (the identities come to the driver)."""
    from pyspark.sql import functions as F

    col, bound = F.col, q.bound
    blocked = F.udf(DEFAULT_RULES.is_blocked, "boolean", useArrow=False)
    ids = q.s.identities.where(q.within(col("tenant")) & (col("first_seen") <= bound))
    junk = ids.where(blocked(col("identity")))
    junk = junk.join(q.p.member, junk["id"] == q.p.member["mid"])
    junk = junk.join(q.p.person, junk["root"] == q.p.person["pid"]).select(
        junk["id"], junk["tenant"], junk["identity"], q.p.person["person"]
    )
    events = q.s.events.where(col("t") <= bound).groupBy(col("identity").alias("eid")).count()
    rows = (
        junk.join(events, junk["id"] == events["eid"], "left")
        .select("tenant", "identity", "person", F.coalesce("count", F.lit(0)))
        .collect()
    )
    examples = sorted(
        (Junk(t, i, p, int(e)) for t, i, p, e in rows),
        key=lambda j: (-j.events, j.tenant, j.identity),
    )
    return len(examples), tuple(examples[:EXAMPLES])


def _scan(q: _Q) -> Scanned:
    """Count calls by kind, tenant and day, and quarantined calls by reason (one job)."""
    from pyspark.sql import functions as F

    col, bound, none = F.col, q.bound, F.lit(None).cast("string")
    tables = [("event", q.s.events, "identity"), ("property", q.s.properties, "identity"),
              ("alias", q.s.links, "a")]  # fmt: skip
    parts = [
        q.named(table, identity)
        .where(q.within(col("itenant")) & (col("t") <= bound))
        .groupBy("itenant", F.expr(f"t div {_DAY}").alias("day"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum("sent").alias("sent"))
        .select(
            F.lit(kind).alias("kind"),
            col("itenant").alias("tenant"),
            none.alias("reason"),
            "day",
            "n",
            "sent",
        )
        for kind, table, identity in tables
    ]
    parts.append(
        q.s.quarantine.where(q.within(col("tenant")) & (col("received") <= bound))
        .groupBy("tenant", "reason", F.expr(f"received div {_DAY}").alias("day"))
        .agg(F.sum("sent").alias("sent"))
        .select(
            F.lit("quarantined").alias("kind"),
            "tenant",
            "reason",
            "day",
            F.lit(0).cast("long").alias("n"),
            "sent",
        )
    )
    received: dict[str, int] = defaultdict(int)
    stored: dict[str, int] = defaultdict(int)
    days: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    events: dict[str, int] = defaultdict(int)
    quarantined: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for kind, tenant, reason, day, n, sent in _union(parts).collect():
        days[int(day)][kind] += int(sent)
        if kind == "quarantined":
            reasons[reason] += int(sent)
            if tenant is not None:
                quarantined[tenant] += int(sent)
            continue
        stored[kind] += int(n)
        received[kind] += int(sent)
        if kind == "event":
            events[tenant] += int(n)
    kinds = tuple(KindCount(k, received[k], stored[k]) for k in KINDS)
    return kinds, reasons, events, quarantined, days


def _quarantine(q: _Q, reasons: dict[str, int]) -> tuple[Reason, ...]:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col = F.col
    first = Window.partitionBy("reason").orderBy("raw")
    rows = (
        q.s.quarantine.where(q.within(col("tenant")) & (col("received") <= q.bound))
        .select("reason", "raw")
        .distinct()
        .withColumn("n", F.row_number().over(first))
        .where(col("n") <= EXAMPLES)
        .collect()
    )
    examples: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for reason, raw, n in rows:
        examples[reason].append((int(n), raw))
    found = [
        Reason(reason, calls, tuple(raw for _, raw in sorted(examples[reason])))
        for reason, calls in reasons.items()
    ]
    found.sort(key=lambda r: (-r.calls, r.reason))
    return tuple(found)


def _people_engine(q: _Q, persons: Sequence[int]) -> Engine:
    """Return an in-memory engine holding the accepted calls of `persons`' members only."""
    from pyspark.sql import functions as F

    from ...engine import Engine

    col = F.col
    members = q.named(q.p.member.where(col("root").isin(list(persons))), "mid").select(
        col("itenant"), col("iname")
    )
    calls = q.s.calls.where(col("reason").isNull())
    rows = (
        calls.join(
            members,
            (calls["tenant"] == members["itenant"]) & (calls["identity"] == members["iname"]),
            "left_semi",
        )
        .select(
            "kind", "tenant", "identity", "name", "props", "t", "td", "received", "raw", "source"
        )
        .orderBy("input", "line")
        .collect()
    )
    engine = Engine()
    batch: list[Call] = []
    for kind, tenant, identity, name, props, t, td, received, raw, source in rows:
        batch.append(
            Call(
                kind,
                tenant,
                identity,
                name,
                tuple((p[0], p[1], p[2]) for p in props),
                t,
                td,
                received,
                raw,
                source,
            )
        )
        if len(batch) >= _BATCH:
            engine.apply_batch(batch)
            batch = []
    if batch:
        engine.apply_batch(batch)
    return engine


def _merges(q: _Q, best: list[tuple[int, Split]], as_of: int | None) -> tuple[Merge, ...]:
    from pyspark.sql import functions as F

    if not best:
        return ()
    col = F.col
    ids = sorted({x for _, s in best for x in (s.a, s.b)})
    pids = sorted({p for p, _ in best})
    who = q.s.identities.where(col("id").isin(ids)).select(
        F.lit(0).alias("part"), "id", "identity", F.lit(None).cast("string").alias("tenant"),
        F.lit(None).cast("long").alias("size"),
    )  # fmt: skip
    rows = who.unionByName(
        q.p.person.where(col("pid").isin(pids)).select(
            F.lit(1).alias("part"),
            col("pid").alias("id"),
            col("person").alias("identity"),
            "tenant",
            "size",
        )
    ).collect()
    names = {int(r[1]): r[2] for r in rows if r[0] == 0}
    persons = {int(r[1]): (r[3], r[2], int(r[4])) for r in rows if r[0] == 1}
    found = []
    for row, split in best:
        tenant, person, size = persons[row]
        if names[split.a] > names[split.b]:  # the model's link runs from the smaller name
            split = split.flipped()
        found.append((tenant, person, int(size), names[split.a], names[split.b], split, row))
    # (tenant, person, a) can tie (one identity, two bridges): b breaks the tie
    found.sort(key=lambda f: (-min(f[5].sizes), -min(f[5].customers), f[0], f[1], f[3], f[4]))
    top = found[:TOP]
    engine = _people_engine(q, sorted({f[6] for f in top}))
    try:
        return tuple(
            merge_of(engine, tenant, person, size, split, (a, b), as_of)
            for tenant, person, size, a, b, split, _ in top
        )
    finally:
        engine.close()


def audit(
    paths: Sequence[str],
    *,
    fmt: FormatOrAuto = "auto",
    tenant: str | None = None,
    as_of: int | None = None,
    default_tenant: str | None = None,
    received: int | None = None,
    master: str | None = None,
    session: SparkSession | None = None,
    progress: Callable[[str], None] | None = None,
) -> Audit:
    """Audit files on Spark: the same :class:`~identity.audit.model.Audit` as the memory engine.

    Parameters
    ----------
    paths : sequence of str
        Files (plain or gzip) and Data Export folders, as ``identity ingest`` takes them
        (local paths, as the driver and the executors see them).
    fmt : str
        ``"auto"`` (sniffed per input) or one of the line formats.
    tenant : str, optional
        Report on this tenant only.
    as_of : int, optional
        Only calls with ``t <= as_of`` (quarantined calls: received by then).
    default_tenant : str, optional
        The tenant of calls that carry no ``_k`` (``identity ingest --tenant``).
    received : int, optional
        Receive time of calls that carry none (default: each file's modification time).
    master : str, optional
        The master URL of the session made when `session` is not given (default
        ``local[*]``); a session made here is stopped afterwards.
    session : pyspark.sql.SparkSession, optional
        Run on this session (never stopped here).
    progress : callable, optional
        Called with a line at each step.

    Returns
    -------
    Audit

    Raises
    ------
    InputError
        A path that does not exist or cannot be read (as ``identity ingest``).
    SparkUnavailableError
        pyspark is not installed, or no Java runtime is found (no `session` given).
    """
    inputs = expand(paths)
    owned = False
    if session is None:
        try:
            from pyspark.sql import SparkSession
        except ImportError:  # pragma: no cover - the extra is installed in tests
            raise SparkUnavailableError(
                "the spark engine needs pyspark and Java: pip install 'identity[spark]'"
            ) from None
        from pyspark import SparkContext

        # a session made here is stopped afterwards; one already running is not
        owned = (
            SparkSession.getActiveSession() is None and SparkContext._active_spark_context is None
        )
        session = local_session(master)
    try:
        return _audit(
            session, inputs, fmt=fmt, tenant=tenant, as_of=as_of,
            default_tenant=default_tenant, received=received, progress=progress,
        )  # fmt: skip
    finally:
        if owned:
            session.stop()


def _audit(
    spark: SparkSession,
    inputs: Sequence[Input],
    *,
    fmt: FormatOrAuto,
    tenant: str | None,
    as_of: int | None,
    default_tenant: str | None,
    received: int | None,
    progress: Callable[[str], None] | None,
) -> Audit:
    say = progress or (lambda _: None)
    calls, read = _read(
        spark, inputs, fmt=fmt, default_tenant=default_tenant, received=received,
        progress=progress,
    )  # fmt: skip
    store = _store(calls)
    say("calls folded (duplicates, links, identities)")
    bound = (1 << 63) - 1 if as_of is None else as_of
    people, rounds = _partition(store, bound, progress)
    say(f"people: components in {rounds} rounds")
    try:
        q = _Q(store, people, tenant, bound)
        return report(_QUERIES, q, tenant=tenant, as_of=as_of, read=read, say=say)
    finally:  # a session that outlives the audit keeps none of its tables
        for frame in (*store.frames(), people.member, people.person):
            frame.unpersist()


_QUERIES = Queries(
    counts=_counts, risks=_risks, retries=_retries, junk=_junk, scan=_scan,
    largest=_largest, merges=_merges, quarantine=_quarantine,
)  # fmt: skip
