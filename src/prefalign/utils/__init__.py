"""Utilities every layer may use: distributed helpers, config base, atomic I/O."""
