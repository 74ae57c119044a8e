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
    from stemgen_runner.fastpath.conditioning import build_cross_groups
    from stemgen_runner.fastpath.decoder import Decoder
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
    with torch.inference_mode():
        for matrices in ("float32", "float16", "float16@torch", "int8"):
            matrix_format, _, kernels = parse_matrices(matrices)
            weights = ModelWeights.from_lm(lm, matrix_format, kernels)

            def decoder(texts: list[str], weights: ModelWeights = weights) -> Decoder:
                return Decoder(lm, weights, build_cross_groups(lm, weights, texts), len(texts), steps)

            alone, batch, padded = decoder(TEXTS[1:2]), decoder(TEXTS), decoder([TEXTS[1]] * 4)
            same_alone, same_padded, worst = True, True, 0.0
            for step in range(steps):
                in_batch = batch.step(codes[..., step:step + 1])[1]
                by_itself = alone.step(bass[..., step:step + 1])[0]
                first = padded.step(padded_codes[..., step:step + 1])[0]
                same_alone &= torch.equal(by_itself, in_batch)
                same_padded &= torch.equal(first, in_batch)
                worst = max(worst, float((by_itself - in_batch).abs().max()))
            print(f"| {matrices} | {same_alone} | {worst:.1e} | {same_padded} |")


if __name__ == "__main__":
    main()
