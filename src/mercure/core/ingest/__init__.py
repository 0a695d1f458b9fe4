"""The ingest write path: how an instance becomes a file in ``incoming/<series>/``.

Shared by every way an instance enters the router: the C-STORE receiver, the STOW-RS endpoint
and retrieve jobs (C-GET; WADO-RS answers read by :mod:`.multipart` and :mod:`.part10`).
Streamed into a per-process staging folder, fsynced, renamed into its series folder, one
journal line per instance and one tags file per series (docs/data-folder.md).
"""
