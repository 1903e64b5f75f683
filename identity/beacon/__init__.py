"""The beacon wing: Kissmetrics tracking calls over HTTP.

``app``
    the WSGI application (:func:`make_app`, :func:`app_from_env` for gunicorn); standard
    library only.
``writer``
    the one thread that commits the calls of many requests per transaction (group commit).
``server``
    ``identity serve``: the app on waitress (the ``serve`` extra, imported only there).

Examples
--------
>>> from identity import Engine
>>> app = make_app(Engine())
>>> app.close()
"""

from .app import GIF, SOURCE, Beacon, app_from_env, make_app, rules_for_keys
from .writer import Writer

__all__ = ["GIF", "SOURCE", "Beacon", "Writer", "app_from_env", "make_app", "rules_for_keys"]
