"""Readers of raw dumps, one module per format; each streams its input in constant memory.

Structural damage (truncated XML/JSON/CSV, undecodable bytes where the format allows none) raises
:class:`~limakit.core.errors.LimaError` naming the file and the line or offset; per-record problems are
left to the curation rules, which count and report them.
"""
