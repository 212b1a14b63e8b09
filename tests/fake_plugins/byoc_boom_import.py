"""A plugin whose import fails (its vendor SDK is half-installed)."""

raise ImportError("libvendor.so.3: cannot open shared object file")
