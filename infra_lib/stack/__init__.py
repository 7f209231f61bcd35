"""The local compose stack: settings, ``.env`` generation, lifecycle, probes.

Import from the submodules; this package imports nothing heavy by itself.
"""
