"""The audit wing: one report of what a set of tracking calls holds, before it is loaded anywhere.

Its shape, as the audit lands here: a report model with no I/O in it (counts as frozen values,
display strings made once), one renderer a module (text, JSON, HTML), and ``engines/`` with one
module per backend (in memory, DuckDB, Spark) that fill the same model. Each heavy import
(matplotlib, duckdb, pyspark) lives in its one module, imported lazily, so that
``import identity`` stays light. Graph questions about single people come from
:mod:`identity.inspection`.
"""
