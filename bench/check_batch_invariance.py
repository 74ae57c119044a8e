"""Does a stem's logit row depend on its batch mates? Per matrix format, at musicgen-small widths.

    .venv/bin/python bench/check_batch_invariance.py            # musicgen-small shapes (the bench checkpoint)
    .venv/bin/python bench/check_batch_invariance.py --preset tiny

Feeds the same codes (teacher forcing) to the 'bass' row (1) alone, (2) inside a batch of four
stems, and (3) alone but padded to four rows the way `STEMGEN_BATCH_STEMS=4` pads it (copies of
its own text, other tokens), then
compares the bass logits bitwise over a few steps. `float16` uses the native kernels where built
(fastpath/native), `float16@torch` fbgemm and SDPA. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

TEXTS = ["solo drums, lofi", "solo bass, lofi", "solo piano, lofi", "solo guitar, lofi"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=("small", "tiny"))
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/stemgen/bench"))
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    import torch
    from audiocraft.modules.transformer import set_efficient_attention_backend
    from bench_generation import ensure_checkpoint, parse_matrices

    from stemgen_runner.fastpath.checkpoint import load_fast
    from stemgen_runner.fastpath.precision import teacher_forced_logits
    from stemgen_runner.fastpath.weights import ModelWeights

    set_efficient_attention_backend("torch")
    checkpoint = Path(args.cache) / args.preset
    ensure_checkpoint(checkpoint, args.preset)
    lm = load_fast(str(checkpoint), device="cpu").lm
    steps = args.steps
    codes = torch.randint(0, lm.card, (4, lm.num_codebooks, steps), generator=torch.Generator().manual_seed(0))
    bass = codes[1:2]
    padded_codes = torch.cat([bass, codes[[0, 2, 3]]])
    print(f"preset {args.preset}, torch threads {torch.get_num_threads()}, {steps} teacher-forced steps")
    print("| matrices | bass alone vs in a batch of 4: bitwise | max abs dlogit "
          "| padded to 4 vs in a batch of 4: bitwise |")
    print("|---|---|---:|---|")
    for matrices in ("float32", "float16", "float16@torch", "int8"):
        matrix_format, _, kernels = parse_matrices(matrices)
        with torch.inference_mode():
            weights = ModelWeights.from_lm(lm, matrix_format, kernels)
        # Row 0 of each run is the bass's conditional row; in the batch of four it is row 1.
        alone = teacher_forced_logits(lm, weights, TEXTS[1:2], bass)[:, 0]
        in_batch = teacher_forced_logits(lm, weights, TEXTS, codes)[:, 1]
        padded = teacher_forced_logits(lm, weights, [TEXTS[1]] * 4, padded_codes)[:, 0]
        worst = float((alone - in_batch).abs().max())
        print(f"| {matrices} | {torch.equal(alone, in_batch)} | {worst:.1e} | {torch.equal(padded, in_batch)} |")


if __name__ == "__main__":
    main()
