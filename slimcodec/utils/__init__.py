"""Image I/O, metrics and file helpers."""
