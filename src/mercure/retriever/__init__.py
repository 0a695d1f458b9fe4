"""The retriever: queries sources (C-FIND, QIDO-RS) and retrieves studies from them in durable
jobs (C-GET, C-MOVE, WADO-RS), handing the series to the router (docs/retrieve.md)."""
