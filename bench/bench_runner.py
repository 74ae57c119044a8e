"""The runner's generation economics, in one process on one machine (issue 3's benchmark).

    .venv/bin/python bench/bench_runner.py                       # musicgen-small shapes, 10 s of audio
    .venv/bin/python bench/bench_runner.py --duration 1          # quick look on a slow CPU
    .venv/bin/python bench/bench_runner.py --preset tiny --duration 1   # smoke test

Rows (same model object, same seeds, one after another):
  load              `MusicGen.get_pretrained(<dir>)` through the runner's `load_model`, warm page cache
  plain 1 stem      audiocraft `MusicGen.generate([d])`
  plain 4 batched   audiocraft `MusicGen.generate([d1..d4])`: one call, batch of 4
  plain 4 sequential  4 x `generate([d])`: what the replaced worker did per stem
  runner 1 / 4      the runner's `generate_stems` (whatever engine generate.py selects)
  runner 4 + post   `generate_stems` for 4 stems + post-processing and WAV encoding of each
The model is musicgen-small-shaped with random weights (dev/stemgen_dev/tiny_model.py, preset
`small`), written once into the cache directory in audiocraft's own format. On a shared machine,
compare the ratios printed at the end, not absolute seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEMS = ("drums", "bass", "guitar", "piano")


def _timed(label: str, action: Callable[[], Any], results: dict[str, float]) -> Any:
    started = time.perf_counter()
    value = action()
    results[label] = round(time.perf_counter() - started, 3)
    print(f"  {label:<22} {results[label]:8.2f} s", flush=True)
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="tiny_model preset (small = musicgen-small shapes)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of audio per stem")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: runner's choice)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "stemgen" / "bench"))
    parser.add_argument("--skip-sequential", action="store_true", help="estimate sequential as 4 x plain 1 stem")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from stemgen_dev.tiny_model import ensure_checkpoint
    from stemgen_runner import audio
    from stemgen_runner.generate import generate_stems
    from stemgen_runner.model import ModelSource, cpu_threads, describe_device, load_model
    from stemgen_runner.plan import SamplingParams, describe_stem, stem_seed

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = cpu_threads(args.threads)
    directory = Path(args.cache) / args.preset
    print(f"checkpoint {directory} (writing it the first time takes a while for `small`)", flush=True)
    ensure_checkpoint(directory, args.preset)
    source = ModelSource(args.preset, str(directory), local=True)

    results: dict[str, float] = {}
    load_model(source, device, threads)  # first load warms the page cache; the second is what a warm pod sees
    model = _timed("load (warm cache)", lambda: load_model(source, device, threads), results)
    descriptions = [describe_stem(stem, style="lo-fi hip hop", bpm=90, key="E minor") for stem in STEMS]
    seeds = [stem_seed(1, stem) for stem in STEMS]
    params = SamplingParams()
    print(f"device {describe_device(device)}, {sum(p.numel() for p in model.lm.parameters()) / 1e6:.0f}M LM "
          f"parameters, {args.duration:g}s of audio per stem", flush=True)

    def plain(batch: list[str]) -> torch.Tensor:
        model.set_generation_params(duration=args.duration, top_k=min(250, int(model.lm.card)))
        torch.manual_seed(1)
        with torch.inference_mode():
            return model.generate(batch)

    _timed("plain 1 stem", lambda: plain(descriptions[:1]), results)
    _timed("plain 4 batched", lambda: plain(descriptions), results)
    if args.skip_sequential:
        results["plain 4 sequential"] = round(4 * results["plain 1 stem"], 3)
        print(f"  {'plain 4 sequential':<22} {results['plain 4 sequential']:8.2f} s (estimated: 4 x 1 stem)")
    else:
        _timed("plain 4 sequential", lambda: [plain([d]) for d in descriptions], results)
    _timed("runner 1 stem", lambda: generate_stems(model, descriptions[:1], seeds[:1], params, args.duration), results)
    batch = _timed("runner 4 batched", lambda: generate_stems(model, descriptions, seeds, params, args.duration),
                   results)

    def post_and_encode() -> list[audio.EncodedAudio]:
        return [audio.encode(audio.post_process(np.asarray(batch[i]), model.sample_rate, args.duration),
                             model.sample_rate, "wav") for i in range(len(STEMS))]

    _timed("post-process + encode 4", post_and_encode, results)

    ratios = {
        "batched 4 / single 1 (plain)": results["plain 4 batched"] / results["plain 1 stem"],
        "sequential 4 / batched 4 (plain)": results["plain 4 sequential"] / results["plain 4 batched"],
        "runner 4 / plain 4 batched": results["runner 4 batched"] / results["plain 4 batched"],
        "runner 4 / plain 4 sequential": results["runner 4 batched"] / results["plain 4 sequential"],
    }
    print("ratios:")
    for name, value in ratios.items():
        print(f"  {name:<34} {value:6.2f}")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "device": describe_device(device), "threads": threads, "preset": args.preset,
        "duration": args.duration, "engine": os.environ.get("STEMGEN_GENERATION_ENGINE", "default"),
        "seconds": results, "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "load_average": os.getloadavg(),
    }
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
