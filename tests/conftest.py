"""Shared fixtures: one local Spark session for the whole run (Spark tests only)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session (``local[2]``, UI off, two shuffle partitions) for every test.

    Adaptive execution and broadcast joins are off: on inputs this small every query stage
    and broadcast is a job of its own, and the jobs, not the rows, take the time (a third
    less with them off). Skipped, with the reason, only when pyspark or Java is missing.
    """
    pytest.importorskip("pyspark", reason="the Spark tests need pyspark (identity[spark])")
    if shutil.which("java") is None:
        pytest.skip("the Spark tests need Java (no java on PATH)")
    from identity.audit.engines.spark import local_session

    session = local_session("local[2]", partitions=2)
    session.conf.set("spark.sql.adaptive.enabled", "false")
    session.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    yield session
    session.stop()
