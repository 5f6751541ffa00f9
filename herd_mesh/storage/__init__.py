"""Storage: everything a peer keeps on disk in its data dir (SQLite records, settings, measured speeds).

Writes that happen while requests are served leave the event loop: they go to one writer thread
(`writer.Writer`), in order.
"""
