"""Fast MusicGen generation: a lean decoding loop over audiocraft's own modules and weights.

See engine.py for the entry points, docs/benchmarks.md for what each piece buys.
"""
