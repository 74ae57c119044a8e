"""Write MusicGen checkpoints with random weights in audiocraft's own on-disk format.

Nothing can be downloaded in tests or the local demo, yet the runner must load through the
real path: `MusicGen.get_pretrained(<dir>)` → audiocraft.models.loaders → builders. So we
build the LM and the EnCodec model with audiocraft's builders from a config, and save
`state_dict.bin` / `compression_state_dict.bin` the way audiocraft's export does:
`{'xp.cfg': <config as a YAML string>, 'best_state': <state dict>}`.

Why a YAML string and not an OmegaConf object: audiocraft's loaders call `torch.load` without
`weights_only`, and since torch 2.6 that defaults to True, which refuses pickled OmegaConf
objects. A str plus plain tensors loads under weights_only=True, exactly as Meta's published
checkpoints do (their `xp.cfg` is also YAML text). `OmegaConf.create` accepts the string.

Presets: `tiny` (a few hundred kB, generates a second of audio in well under a second on a
CPU) for tests and the demo; `small` (musicgen-small's LM and EnCodec-32kHz shapes, ~1.7 GB)
for benchmarks. Both use the `lut` text conditioner with the `noop` tokenizer: T5 would need a
hub download and the `whitespace` tokenizer a spaCy model.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

LM_FILENAME = "state_dict.bin"
COMPRESSION_FILENAME = "compression_state_dict.bin"

_COMPRESSION_BASE: dict[str, Any] = {
    "compression_model": "encodec",
    "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": 32000, "channels": 1,
                "causal": False, "renormalize": False},
    "seanet": {"dimension": 32, "channels": 1, "causal": False, "n_filters": 4, "n_residual_layers": 1,
               "ratios": [8, 5, 4, 4], "activation": "ELU", "activation_params": {"alpha": 1.0},
               "norm": "weight_norm", "norm_params": {}, "kernel_size": 7, "last_kernel_size": 7,
               "residual_kernel_size": 3, "dilation_base": 2, "pad_mode": "constant", "true_skip": True,
               "compress": 2, "lstm": 0, "disable_norm_outer_blocks": 0, "encoder": {}, "decoder": {}},
    # kmeans_init=False: with k-means init the codebooks stay zero until trained, and a decoder
    # fed zero embeddings outputs near-silence. Random codebooks give audible (noisy) audio.
    "rvq": {"n_q": 4, "q_dropout": False, "bins": 64, "decay": 0.99, "kmeans_init": False, "kmeans_iters": 10,
            "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0,
            "orthogonal_reg_active_codes_only": False},
}

_LM_BASE: dict[str, Any] = {
    "lm_model": "transformer_lm",
    "dataset": {"segment_duration": 30.0},
    "transformer_lm": {
        "n_q": 4, "card": 64, "dim": 32, "num_heads": 2, "num_layers": 2, "hidden_scale": 2,
        "norm": "layer_norm", "norm_first": True, "bias_proj": False, "bias_ff": False, "bias_attn": False,
        "activation": "gelu", "dropout": 0.0, "causal": True, "custom": False, "memory_efficient": True,
        "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin", "xpos": False,
        "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True,
        "emb_lr": None, "past_context": None, "cross_attention": False, "qk_layer_norm": False,
        "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1, "two_step_cfg": False,
    },
    "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [0, 1, 2, 3], "flatten_first": 0,
                                                         "empty_initial": 0}},
    "attribute_dropout": {},
    "classifier_free_guidance": {"training_dropout": 0.2, "inference_coef": 3.0},
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1,
              "sum": [], "prepend": [], "cross": ["description"], "input_interpolate": []},
    "conditioners": {"description": {"model": "lut", "lut": {"n_bins": 512, "dim": 32, "tokenizer": "noop"}}},
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {"lm": {}, "compression": {}},
    # Same, but 10 frames per second (hop 3200 at 32 kHz) instead of 50: a test that must exceed
    # the model's window (which audiocraft requires to be over 18 s) generates 5x fewer steps.
    "tiny-10hz": {"lm": {}, "compression": {"seanet": {"ratios": [8, 5, 5, 4, 4]}}},
    # musicgen-small: 24 layers x 1024 wide, 16 heads, card 2048 over 4 codebooks; the EnCodec is
    # the 32 kHz model's SEANet (64 filters, 128-d latent, 2 LSTM layers, 50 Hz frames).
    "small": {
        "lm": {"transformer_lm": {"card": 2048, "dim": 1024, "num_heads": 16, "num_layers": 24, "hidden_scale": 4},
               "conditioners": {"description": {"lut": {"n_bins": 8192, "dim": 768}}}},
        "compression": {"seanet": {"dimension": 128, "n_filters": 64, "lstm": 2},
                        "rvq": {"bins": 2048}},
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def lm_config(preset: str = "tiny", segment_duration: float = 30.0) -> dict[str, Any]:
    config = _merge(_LM_BASE, PRESETS[preset]["lm"])
    config["dataset"]["segment_duration"] = float(segment_duration)
    config.update(device="cpu", dtype="float32")
    return config


def compression_config(preset: str = "tiny") -> dict[str, Any]:
    config = _merge(_COMPRESSION_BASE, PRESETS[preset]["compression"])
    config["device"] = "cpu"
    return config


def write_checkpoint(directory: str | Path, preset: str = "tiny", *, seed: int = 0,
                     segment_duration: float = 30.0) -> Path:
    """Write both checkpoint files into `directory` (created) and return it.

    `segment_duration` is the model's window: a short one lets tests exercise audiocraft's
    extension (generation beyond the window) without generating 30 s of audio.
    """
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    compression = compression_config(preset)
    compression_model = builders.get_compression_model(OmegaConf.create(compression))
    lm = lm_config(preset, segment_duration)
    lm_model = builders.get_lm_model(OmegaConf.create(lm))
    for filename, config, model in ((COMPRESSION_FILENAME, compression, compression_model),
                                    (LM_FILENAME, lm, lm_model)):
        package = {"xp.cfg": OmegaConf.to_yaml(OmegaConf.create(config)), "best_state": model.state_dict(),
                   "version": "stemgen-random-weights"}
        torch.save(package, directory / filename)
    return directory


def ensure_checkpoint(directory: str | Path, preset: str = "tiny", *, seed: int = 0,
                      segment_duration: float = 30.0) -> Path:
    """`write_checkpoint` unless both files are already there (session fixtures, the demo)."""
    directory = Path(directory)
    if (directory / LM_FILENAME).is_file() and (directory / COMPRESSION_FILENAME).is_file():
        return directory
    return write_checkpoint(directory, preset, seed=seed, segment_duration=segment_duration)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--segment-duration", type=float, default=30.0)
    args = parser.parse_args(argv)
    path = write_checkpoint(args.directory, args.preset, seed=args.seed, segment_duration=args.segment_duration)
    print(path)


if __name__ == "__main__":
    main()
