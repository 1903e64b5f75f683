"""Audit engines: each fills :class:`identity.audit.model.Audit` from files or a database.

``memory`` (the default) reads through identity's own readers into SQLite and aggregates there;
``duckdb`` and ``spark`` read the files themselves. Each heavy engine lives in its own module and
is imported only when asked for, so the core never imports duckdb or pyspark.
"""
