"""Arithmetic or memory? The decoding step's kernels at 1 stem (2 rows) and 4 stems (8 rows).

    .venv/bin/python bench/bench_kernels.py                  # musicgen-small widths, cache position 250
    .venv/bin/python bench/bench_kernels.py --position 500 --repeats 21

A step of 1 stem multiplies every LM weight by 2 rows (classifier-free guidance doubles the
batch); 4 stems by 8. Whether 4 stems cost much more than 1 depends on whether the GEMMs are
bound by streaming the weights (then rows are almost free) or by arithmetic (then they are not),
and on the self-attention, which reads a KV cache per row. This prints, for this machine:

1. the float16 GEMM (native kernels; fbgemm beside it) on a 4096x1024 matrix, per row count:
   "cached" = one matrix over and over (8 MB, stays in L3): the arithmetic alone;
   "streamed" = 48 distinct matrices (384 MB): every weight from DRAM, as in a step;
2. one step's GEMMs at musicgen-small shapes (24 layers + 4 output heads, 0.72 GB of float16);
3. one step's self-attention over a float16 KV cache at --position.

Random values, one process, configurations interleaved and the median taken: a shared VM's
bandwidth drifts by +-20 % between runs, so compare numbers within one run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

DIM, LAYERS, HEADS, HEAD_DIM, CARD, CODEBOOKS = 1024, 24, 16, 64, 2048, 4
LAYER_SHAPES = ((3 * DIM, DIM), (DIM, DIM), (DIM, DIM), (DIM, DIM), (4 * DIM, DIM), (DIM, 4 * DIM))
"""(out, in) per layer: self-attention in/out, cross-attention query/out, feed-forward in/out
(the cross-attention keys/values are projected once per request, not per step)."""


def median_ms(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each callable `repeats` times, interleaved round-robin; the median in milliseconds."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up: page faults, thread pool, first-touch
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1e3 for name, values in samples.items()}


def gemm_table(repeats: int) -> str:
    import torch

    from stemgen_runner.fastpath import native
    from stemgen_runner.fastpath.weights import PackedFloat16Linear

    out_features, in_features, distinct = 4096, DIM, 48
    weights = [torch.randn(out_features, in_features) * 0.02 for _ in range(distinct)]
    packed = [native.pack_f16(weight) for weight in weights]
    fbgemm = [PackedFloat16Linear(weight, None) for weight in weights]
    del weights
    rows_list = (1, 2, 4, 6, 8, 12, 16)
    inputs = {rows: torch.randn(rows, in_features) for rows in rows_list}

    def native_run(rows: int, matrices: list[torch.Tensor]) -> Callable[[], None]:
        return lambda: [native.linear_f16(inputs[rows], matrix, None, out_features) for matrix in matrices]

    def fbgemm_run(rows: int) -> Callable[[], None]:
        return lambda: [linear(inputs[rows]) for linear in fbgemm]

    runs: dict[str, Callable[[], None]] = {}
    for rows in rows_list:
        runs[f"cached{rows}"] = native_run(rows, [packed[0]] * distinct)
        runs[f"streamed{rows}"] = native_run(rows, packed)
        runs[f"fbgemm{rows}"] = fbgemm_run(rows)
    times = {name: value / distinct for name, value in median_ms(runs, repeats).items()}
    matrix_bytes = out_features * in_features * 2
    lines = [f"float16 GEMM, one {out_features}x{in_features} matrix, ms (median of {repeats}; "
             f"streamed = from DRAM, cached = in L3)",
             "| rows | native cached | native streamed | streamed GB/s | cached GFLOP/s | streamed / cached "
             "| fbgemm streamed |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for rows in rows_list:
        cached, streamed = times[f"cached{rows}"], times[f"streamed{rows}"]
        flops = 2.0 * rows * out_features * in_features
        lines.append(f"| {rows} | {cached:.3f} | {streamed:.3f} | {matrix_bytes / streamed / 1e6:.1f} "
                     f"| {flops / cached / 1e6:.0f} | {streamed / cached:.2f} | {times[f'fbgemm{rows}']:.3f} |")
    return "\n".join(lines)


def step_table(position: int, repeats: int) -> str:
    import torch

    from stemgen_runner.fastpath import native

    layers = [[native.pack_f16(torch.randn(out, inp) * 0.02) for out, inp in LAYER_SHAPES] for _ in range(LAYERS)]
    heads = [native.pack_f16(torch.randn(CARD, DIM) * 0.02) for _ in range(CODEBOOKS)]
    weight_bytes = sum(matrix.numel() * 2 for layer in layers for matrix in layer) + sum(h.numel() * 2 for h in heads)

    def gemms(rows: int) -> Callable[[], None]:
        narrow, wide = torch.randn(rows, DIM), torch.randn(rows, 4 * DIM)

        def run() -> None:
            for layer in layers:
                for (out, inp), matrix in zip(LAYER_SHAPES, layer, strict=True):
                    native.linear_f16(wide if inp == 4 * DIM else narrow, matrix, None, out)
            for head in heads:
                native.linear_f16(narrow, head, None, CARD)
        return run

    caches = {rows: [torch.randn(2, rows, HEADS, position, HEAD_DIM).half() for _ in range(LAYERS)]
              for rows in (2, 8)}
    queries = {rows: torch.randn(rows, HEADS, 1, HEAD_DIM) for rows in (2, 8)}

    def attention(rows: int) -> Callable[[], None]:
        return lambda: [native.decode_attention(queries[rows], cache[0], cache[1], HEAD_DIM ** -0.5)
                        for cache in caches[rows]]

    times = median_ms({"gemm2": gemms(2), "gemm8": gemms(8), "attn2": attention(2), "attn8": attention(8)}, repeats)
    lines = [f"one decoding step at musicgen-small shapes, native kernels, ms (median of {repeats})",
             "| part | 1 stem (2 rows) | 4 stems (8 rows) | 4 / 1 | bytes read, 1 / 4 stems |",
             "|---|---:|---:|---:|---:|",
             f"| GEMMs: 24 layers + 4 heads | {times['gemm2']:.1f} | {times['gemm8']:.1f} "
             f"| {times['gemm8'] / times['gemm2']:.2f} | {weight_bytes / 1e6:.0f} MB / {weight_bytes / 1e6:.0f} MB |"]
    kv_bytes = {rows: rows * HEADS * position * HEAD_DIM * 2 * 2 * LAYERS for rows in (2, 8)}
    lines.append(f"| self-attention at position {position} | {times['attn2']:.1f} | {times['attn8']:.1f} "
                 f"| {times['attn8'] / times['attn2']:.2f} | {kv_bytes[2] / 1e6:.0f} MB / {kv_bytes[8] / 1e6:.0f} MB |")
    total2, total8 = times["gemm2"] + times["attn2"], times["gemm8"] + times["attn8"]
    lines.append(f"| both | {total2:.1f} | {total8:.1f} | {total8 / total2:.2f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--position", type=int, default=250, help="KV cache length for the attention rows")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch
    from bench_generation import machine, machine_report

    from stemgen_runner.fastpath import native

    if not native.available():
        raise SystemExit(f"native kernels unavailable: {native.status().reason}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine(args.threads)
    with torch.inference_mode():
        gemm = gemm_table(args.repeats)
        step = step_table(args.position, args.repeats)
    print(machine_report(info))
    print()
    print(gemm)
    print()
    print(step)


if __name__ == "__main__":
    main()
