"""``python -m evaluate report``: ``tables.py`` (the metrics as rows, Markdown), ``html_page.py`` (the
self-contained page), ``write.py`` (reads ``<run>/scores/`` and writes ``<run>/report/``)."""
