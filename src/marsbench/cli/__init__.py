"""The `marsbench` command: a thin layer over the library API."""
