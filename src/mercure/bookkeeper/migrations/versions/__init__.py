"""Schema revisions, oldest first; each file is one step."""
