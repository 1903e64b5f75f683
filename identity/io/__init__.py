"""The io wing: tracking calls in and out of files.

``formats``
    how one line of each kind of input (URLs, Kissmetrics JSON, JSONL, access logs, CSV)
    becomes calls, and how the format of an input is sniffed.
``sources``
    readers: files, gzip, stdin and Kissmetrics Data Export folders, streamed in bounded
    memory with the provenance of every call.
``resume``
    resumable ingest: how far each input was read, committed with its calls.
``export``
    a tenant's accepted calls written back as Kissmetrics JSON lines or URLs.
"""
