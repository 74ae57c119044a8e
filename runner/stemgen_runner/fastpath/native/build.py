"""Compile the native kernels against the installed torch: `python -m stemgen_runner.fastpath.native.build`.

A plain g++ call with torch's include and library paths (no ninja, no setuptools extension):
the library holds only torch ops, loaded with torch.ops.load_library. Does nothing when the
library for these sources already exists, and exits 0 without building on machines the kernels
do not support, so install scripts can call it unconditionally.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils import cpp_extension

from . import COMPILE_FLAGS, SOURCES, library_path, unsupported_reason


def compile_command(output: Path) -> list[str]:
    compiler = os.environ.get("CXX", "g++")
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}"
    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    libraries = [f"-L{path}" for path in cpp_extension.library_paths()]
    # rpath: libc10/libtorch_cpu are found next to torch whatever LD_LIBRARY_PATH says.
    rpaths = [f"-Wl,-rpath,{path}" for path in cpp_extension.library_paths()]
    sources = [str(Path(__file__).parent / name) for name in SOURCES]
    return [compiler, *COMPILE_FLAGS, abi, *includes, *sources, *libraries, "-lc10", "-ltorch_cpu", *rpaths,
            "-o", str(output)]


def build(force: bool = False) -> Path | None:
    """The library's path, or None when this machine cannot run the kernels."""
    reason = unsupported_reason()
    if reason is not None:
        print(f"native kernels not built: {reason}", file=sys.stderr)
        return None
    target = library_path()
    if target.exists() and not force:
        return target
    for stale in target.parent.glob("_stemgen_native-*.so"):
        stale.unlink()
    # Compile to a temporary name and rename: a concurrent loader never sees a half-written file.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        partial = Path(scratch) / target.name
        subprocess.run(compile_command(partial), check=True)
        shutil.move(str(partial), target)
    print(f"built {target}", file=sys.stderr)
    return target


if __name__ == "__main__":
    build(force="--force" in sys.argv[1:])
