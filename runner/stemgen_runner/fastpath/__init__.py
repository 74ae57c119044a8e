"""Fast MusicGen generation: a lean decoding loop over audiocraft's own modules and weights.

Entry points:
  engine.FastMusicGen(model, matrices=None, batch_stems=None, kernels="native").generate(...)
  engine.reference_codes(...)            plain audiocraft with per-row generators (the comparison)
  checkpoint.save_fast(lm_bin, compression_bin, directory) / load_fast(directory, device)
  threads.configure_threads()            torch threads from the pod's CPU quota
  native.status() / native.build         the AVX2 float16 GEMM and decode-attention kernels
The runner reaches them through stemgen_runner.generate.generate_stems. docs/benchmarks.md
("Generation speed") says what each piece buys on CPU.
"""
