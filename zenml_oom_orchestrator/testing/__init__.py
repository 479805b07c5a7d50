"""Test harnesses shipped with the package (a local ZenML server)."""
