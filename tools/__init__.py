"""Command-line tools: each is `python -m selecsls.tools.NAME --help`."""
