"""Self-contained HTML reports with the loopback call graph (``--html FILE`` on scan, map and watch)."""
