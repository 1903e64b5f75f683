"""The audit on Apache Spark: the same report as the in-memory engine, on a cluster.

Connected components are the randomized contraction of
:func:`identity.audit.engines.components.duckdb_components`, on DataFrames: each round is one
aggregate (every node moves to the first of itself and its neighbours under a fresh hash),
a few pointer-jumping joins, and one relabelling of the edges; the plan is cut with
``localCheckpoint`` after every round, so its size does not grow with the rounds. GraphFrames
is not needed.

pyspark is imported here only, and only when this module is; ``import identity`` never does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import IdentityError
from ..model import Audit

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "SparkAuditNotReadyError",
    "SparkUnavailableError",
    "audit",
    "components",
    "local_session",
]


class SparkUnavailableError(IdentityError):
    """pyspark or a Java runtime is missing."""


def local_session(master: str | None = None, *, partitions: int = 4) -> SparkSession:
    """Return a Spark session (``local[*]`` unless `master` says otherwise), UI off.

    Raises
    ------
    SparkUnavailableError
        pyspark is not installed.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise SparkUnavailableError(
            "the spark engine needs pyspark and Java: pip install 'identity[spark]'"
        ) from None
    builder: Any = SparkSession.builder
    session: SparkSession = (
        builder.master(master or "local[*]")
        .appName("identity-audit")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.sql.adaptive.enabled", "true")
        .getOrCreate()
    )
    return session


def _cut(frame: DataFrame) -> DataFrame:
    """Materialise `frame` (``localCheckpoint``) and forget how it was made.

    A checkpoint keeps its plan's size estimate, and the estimate of a join is the product
    of its sides': across rounds of self-joins it squares each time, until Spark runs out of
    memory computing it. Rebuilding the DataFrame from the checkpoint's rows (in the JVM,
    nothing passes through Python) starts the estimate afresh. Without a JVM behind the
    session (Spark Connect) the checkpoint is returned as it is.
    """
    frame = frame.localCheckpoint()
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
) -> tuple[DataFrame, int]:
    """Map every node of an edge list to its component's representative, on Spark.

    Parameters
    ----------
    edges : pyspark.sql.DataFrame
        Columns ``a`` and ``b`` (long), undirected; duplicates and self-loops allowed.
    progress : callable, optional
        Called with a line after each round.
    max_rounds : int
        A guard; never reached on real graphs (rounds are ``O(log n)``).

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
    e = _cut(e)
    moves: list[DataFrame] = []
    rounds = 0
    while True:
        left = e.count()
        if not left:
            break
        rounds += 1
        if rounds > max_rounds:  # pragma: no cover - a guard
            raise RuntimeError("connected components did not converge")
        seed = F.lit(rounds * 0x9E3779B1)
        d = e.select(F.col("u").alias("x"), F.col("v").alias("y")).unionAll(
            e.select(F.col("v").alias("x"), F.col("u").alias("y"))
        )
        best = d.groupBy("x").agg(F.min(F.struct(F.xxhash64(F.col("y"), seed), "y")).alias("b"))
        r = best.where(best["b"] < F.struct(F.xxhash64(F.col("x"), seed), F.col("x"))).select(
            "x", F.col("b.y").alias("rep")
        )
        r = _cut(r)
        while True:  # pointer jumping
            s = r.select(F.col("x").alias("sx"), F.col("rep").alias("srep"))
            j = r.join(s, r["rep"] == s["sx"], "left").select(
                "x", F.coalesce("srep", "rep").alias("rep"), F.col("srep").isNotNull().alias("m")
            )
            j = _cut(j)
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
        e = _cut(e.distinct())
        if progress is not None:
            progress(f"components: round {rounds}, {left:,} links in")
    spark = edges.sparkSession
    out = spark.createDataFrame([], "node long, root long")
    for r in reversed(moves):
        o = out.select(F.col("node").alias("on"), F.col("root").alias("oroot"))
        step = r.join(o, r["rep"] == o["on"], "left").select(
            F.col("x").alias("node"), F.coalesce("oroot", "rep").alias("root")
        )
        out = _cut(out.unionAll(step))
    return out, rounds


class SparkAuditNotReadyError(IdentityError):
    """The Spark engine's whole audit is not built yet (its components are)."""


def audit(
    paths: Sequence[str],
    *,
    fmt: str = "auto",
    tenant: str | None = None,
    as_of: int | None = None,
    default_tenant: str | None = None,
    received: int | None = None,
    master: str | None = None,
    session: SparkSession | None = None,
    progress: Callable[[str], None] | None = None,
) -> Audit:
    """Audit files on Spark (not built yet: refused rather than answered differently).

    Raises
    ------
    SparkAuditNotReadyError
        Always, for now: only :func:`components` runs on Spark; use ``--engine duckdb``
        (one machine, out of core) or ``--engine memory``.
    """
    raise SparkAuditNotReadyError(
        "--engine spark: the whole audit on Spark is not built yet (its connected components "
        "are, identity.audit.engines.spark.components); use --engine duckdb or memory"
    )
