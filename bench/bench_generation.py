"""Generation speed: stemgen's runner vs plain audiocraft, on this machine, in one run.

    .venv/bin/python bench/bench_generation.py                 # musicgen-small shapes, 10 s, 1 and 4 stems
    .venv/bin/python bench/bench_generation.py --duration 2    # quick look
    .venv/bin/python bench/bench_generation.py --preset tiny --duration 2   # smoke test, seconds

Every measurement runs in its own child process, so its peak RSS is its own and one run's
allocations do not warm or fragment the next. The model is musicgen-small-shaped with random
weights (dev/stemgen_dev/tiny_model.py, preset `small`), written once to the cache directory
in audiocraft's format, plus the fast copy that `stemgen-runner warmup` writes.

Rows:
  plain 1 / plain N   audiocraft `MusicGen.generate` as shipped (float32 on CPU, global RNG), batched
  stemgen 1 / N       the runner's `generate_stems` (fast loop, per-stem generators), once per
                      matrix format in --matrices (default: the runner's default)
  sequential N        N x plain 1, what the replaced worker did (estimated unless --measure-sequential)
  load                audiocraft's loader (`MusicGen.get_pretrained`) vs `fastpath.checkpoint.load_fast`
Ratios are computed within this run; on a shared machine compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STEMS = ("drums", "bass", "guitar", "piano", "synth", "strings", "other", "vocals")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, in this (child) process: load the model, generate, report."""
    import torch
    from audiocraft.modules.transformer import set_efficient_attention_backend

    set_efficient_attention_backend("torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    stems = list(STEMS[: args.stems])
    descriptions = [f"solo {stem}, lofi hip hop, 90 bpm, in the key of E minor" for stem in stems]
    result: dict[str, Any] = {"kind": args.worker, "stems": args.stems, "duration": args.duration}
    started = time.perf_counter()
    if args.worker == "plain":
        from audiocraft.models import MusicGen

        model = MusicGen.get_pretrained(args.checkpoint, device="cpu")
    else:
        from stemgen_runner.fastpath.checkpoint import load_fast

        model = load_fast(args.checkpoint, device="cpu")
    result["load_s"] = time.perf_counter() - started
    result["rss_after_load_mb"] = _peak_rss_mb()

    started = time.perf_counter()
    if args.worker == "plain":
        # top-k 250 as the runner's default, clamped like the runner does for the tiny preset's 64 tokens
        model.set_generation_params(duration=args.duration, top_k=min(250, int(model.lm.card)), cfg_coef=3.0)
        torch.manual_seed(1234)
        with torch.inference_mode():
            audio = model.generate(descriptions, progress=False)
    else:
        from stemgen_runner.generate import generate_stems
        from stemgen_runner.plan import SamplingParams, stem_seed

        audio = generate_stems(model, descriptions, [stem_seed(1234, stem) for stem in stems],
                               SamplingParams(top_k=250, cfg_coef=3.0), args.duration)
    result["generate_s"] = time.perf_counter() - started
    result["shape"] = list(audio.shape)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def ensure_checkpoint(directory: Path, preset: str) -> None:
    from stemgen_dev.tiny_model import ensure_checkpoint as write_random_checkpoint
    from stemgen_runner.fastpath.checkpoint import has_fast, save_fast

    if not (directory / "state_dict.bin").is_file():
        print(f"writing a random-weight '{preset}' checkpoint to {directory} (once)", file=sys.stderr)
        write_random_checkpoint(directory, preset)
    if not has_fast(directory):
        save_fast(directory / "state_dict.bin", directory / "compression_state_dict.bin", directory)


def parse_matrices(spec: str) -> tuple[str, str, str]:
    """"float16" | "float16:4" | "float16@torch" -> (matrix format, STEMGEN_BATCH_STEMS, STEMGEN_KERNELS)."""
    rest, _, kernels = spec.partition("@")
    matrix_format, _, batch_stems = rest.partition(":")
    return matrix_format, batch_stems or "0", kernels or "native"


def run_child(args: argparse.Namespace, kind: str, stems: int, matrices: str = "") -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", kind, "--stems", str(stems), "--duration", str(args.duration),
               "--checkpoint", str(args.checkpoint)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = None
    if matrices:
        matrix_format, batch_stems, kernels = parse_matrices(matrices)
        env = dict(os.environ, STEMGEN_MATRIX_FORMAT=matrix_format, STEMGEN_BATCH_STEMS=batch_stems,
                   STEMGEN_KERNELS=kernels)
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"{kind} x{stems} failed:\n{completed.stderr[-4000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"  {kind:8s} {matrices:14s} {stems} stem(s): generate {result['generate_s']:7.2f} s, "
          f"load {result['load_s']:6.2f} s, peak RSS {result['peak_rss_mb']:7.0f} MB", file=sys.stderr, flush=True)
    return result


def machine(threads: int) -> dict[str, str]:
    import audiocraft
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": f"{cpu}, {os.cpu_count()} cores visible, torch threads {threads or torch.get_num_threads()}",
            "load average": " ".join(f"{value:.1f}" for value in os.getloadavg()),
            "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
                        f"audiocraft {audiocraft.__version__}"}


def machine_report(info: dict[str, str]) -> str:
    """`machine()`'s lines for the results, with the load average now beside the one at the start."""
    loads = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return "\n".join(f"- {key}: {value} -> {loads}" if key == "load average" else f"- {key}: {value}"
                     for key, value in info.items())


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median generate time (the upper median for an even count); peak RSS the largest."""
    ordered = sorted(runs, key=lambda run: run["generate_s"])
    return dict(ordered[len(ordered) // 2], peak_rss_mb=max(run["peak_rss_mb"] for run in runs))


def table(args: argparse.Namespace, all_runs: dict[str, list[dict[str, Any]]]) -> str:
    n = args.stems
    results = {key: median_run(runs) for key, runs in all_runs.items()}
    plain1, plainn = results["plain1"]["generate_s"], results[f"plain{n}"]["generate_s"]
    sequential = results.get("sequential", {}).get("generate_s", n * plain1)
    seq_note = "measured" if "sequential" in results else f"estimated {n} x plain 1"
    rows = [
        ("plain audiocraft, 1 stem", plain1, results["plain1"]["peak_rss_mb"], "1.00x (baseline)"),
        (f"plain audiocraft, {n} stems batched", plainn, results[f"plain{n}"]["peak_rss_mb"],
         f"{plainn / plain1:.2f}x of plain 1"),
        (f"sequential, {n} stems ({seq_note})", sequential, results["plain1"]["peak_rss_mb"],
         f"{sequential / plain1:.2f}x of plain 1"),
    ]
    for matrices in args.matrices:
        label = matrices or "runner default"
        one, many = results[f"stemgen1{matrices}"], results[f"stemgen{n}{matrices}"]
        fast1, fastn = one["generate_s"], many["generate_s"]
        rows += [
            (f"stemgen ({label}), 1 stem", fast1, one["peak_rss_mb"], f"**{plain1 / fast1:.2f}x faster** than plain 1"),
            (f"stemgen ({label}), {n} stems batched", fastn, many["peak_rss_mb"],
             f"{fastn / fast1:.2f}x of stemgen 1; **{plainn / fastn:.2f}x faster** than plain {n}; "
             f"{sequential / fastn:.2f}x faster than sequential"),
        ]
    lines = [f"| run ({args.duration:g} s of audio, preset {args.preset}) | generate s | peak RSS MB | ratio |",
             "|---|---:|---:|---|"]
    lines += [f"| {name} | {seconds:.1f} | {rss:.0f} | {ratio} |" for name, seconds, rss, ratio in rows]
    if args.repeats > 1:
        lines[0] = lines[0].replace("| generate s |", f"| generate s (stemgen: median of {args.repeats}) |")
        # Runs i of 1 and N stems ran back to back: their ratio sees the same neighbours, while the
        # two medians may come from different minutes of a drifting machine.
        for matrices in args.matrices:
            pairs = [many["generate_s"] / one["generate_s"] for one, many in
                     zip(all_runs[f"stemgen1{matrices}"], all_runs[f"stemgen{n}{matrices}"], strict=True)]
            listed = ", ".join(f"{ratio:.2f}" for ratio in pairs)
            lines += ["", f"stemgen ({matrices or 'runner default'}) {n} stems / 1 stem per pair of back-to-back "
                          f"runs: {listed}; median {statistics.median(pairs):.2f}x"]
    load_plain = min(r["load_s"] for k, runs in all_runs.items() if k.startswith("plain") for r in runs)
    load_fast = min(r["load_s"] for k, runs in all_runs.items() if k.startswith("stemgen") for r in runs)
    lines += ["", "| model load (warm page cache, best of the runs) | seconds | ratio |", "|---|---:|---|",
              f"| audiocraft `MusicGen.get_pretrained(<dir>)` | {load_plain:.2f} | 1.00x |",
              f"| `fastpath.checkpoint.load_fast(<dir>)` | {load_fast:.2f} | {load_plain / load_fast:.1f}x faster |"]
    return "\n".join(lines)


def drift_table(args: argparse.Namespace) -> str:
    """Teacher-forced logit drift of each lossy format against float32, on this checkpoint."""
    import torch

    from stemgen_runner.fastpath.checkpoint import load_fast
    from stemgen_runner.fastpath.precision import logit_drift

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_fast(args.checkpoint, device="cpu").lm
    shape = (2, lm.num_codebooks, args.drift_steps)
    codes = torch.randint(0, lm.card, shape, generator=torch.Generator().manual_seed(0))
    lines = [f"| matrices ({args.drift_steps} teacher-forced steps, 2 stems) | RMS(dlogit)/RMS(logit) | max abs dlogit "
             "| top-1 agreement |", "|---|---:|---:|---:|"]
    for matrices in ("float16", "float16@torch", "bfloat16", "int8"):
        matrix_format, _, kernels = parse_matrices(matrices)
        drift = logit_drift(lm, ["solo drums, lofi", "solo bass, lofi"], codes, matrix_format, kernels=kernels)
        lines.append(f"| {matrices} | {drift.rms_relative:.1e} | {drift.max_abs:.3f} | {drift.top1_agreement:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=("small", "tiny"))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--stems", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/stemgen/bench"))
    parser.add_argument("--matrices", default="", type=lambda text: text.split(","),
                        help="comma-separated matrix formats for the stemgen rows, e.g. float32,float16,int8; "
                             "float16:4 also fixes the batch at 4 stems (STEMGEN_BATCH_STEMS), "
                             "float16@torch uses fbgemm/SDPA instead of the native kernels (STEMGEN_KERNELS) "
                             "(default: the runner's defaults only)")
    parser.add_argument("--drift-steps", type=int, default=0,
                        help="also print each lossy format's teacher-forced logit drift over this many steps")
    parser.add_argument("--measure-sequential", action="store_true", help="also run N single-stem calls")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every stemgen row this many times, interleaved, and report the median "
                             "(plain audiocraft runs once; on a shared VM the 4/1 ratio moves between runs)")
    parser.add_argument("--worker", choices=("plain", "stemgen"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    args.checkpoint = Path(args.cache) / args.preset
    ensure_checkpoint(args.checkpoint, args.preset)
    info = machine(args.threads)
    print(f"machine: {info}", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {}
    # Interleaved so that a burst of load from elsewhere hits both sides alike.
    for repeat in range(args.repeats):
        for stems in (1, args.stems):
            if repeat == 0:
                results[f"plain{stems}"] = [run_child(args, "plain", stems)]
            for matrices in args.matrices:
                results.setdefault(f"stemgen{stems}{matrices}", []).append(
                    run_child(args, "stemgen", stems, matrices))
    if args.measure_sequential:
        total = {"generate_s": 0.0, "peak_rss_mb": 0.0}
        for _ in range(args.stems):
            total["generate_s"] += run_child(args, "plain", 1)["generate_s"]
        results["sequential"] = [total]
    print()
    print(machine_report(info))
    print()
    print(table(args, results))
    if args.drift_steps:
        print()
        print(drift_table(args))


if __name__ == "__main__":
    main()
