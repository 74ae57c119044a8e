"""Python client and `stemgen` CLI for StemGeneration resources."""
