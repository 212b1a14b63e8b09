"""Reliability suite: hostile files, broken plugins, threads, interrupted saves."""
