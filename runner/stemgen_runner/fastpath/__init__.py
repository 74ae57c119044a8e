"""Fast MusicGen generation: a lean decoding loop over audiocraft's own modules and weights.

Entry points:
  engine.FastMusicGen(model, dtype=None).generate(descriptions, seeds, sampling, duration_s, ...)
  engine.reference_codes(...)            plain audiocraft with per-row generators (the comparison)
  checkpoint.save_fast(lm_bin, compression_bin, directory) / load_fast(directory, device)
  threads.configure_threads()            torch threads from the pod's CPU quota
The runner reaches them through stemgen_runner.generate.generate_stems. docs/benchmarks.md
("Generation speed") says what each piece buys on CPU.
"""
