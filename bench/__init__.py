"""The hailuo-bot benchmark (issue 5): `python -m bench.run --help`."""
