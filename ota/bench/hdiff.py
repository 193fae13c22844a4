#!/usr/bin/env python3
"""File CLI around the `hdiffpatch` PyPI wrapper of HDiffPatch, for the delta benchmark.

  hdiff.py diff CODEC OLD NEW PATCH     CODEC: zstd | lzma | lzma2 (each at its maximum level)
  hdiff.py apply OLD PATCH OUT

The wrapper works on whole in-memory buffers, so its RSS is Python + old + new + patch, not
what native hdiffz/hpatchz (which stream) would use.
"""

import math
import os
import sys

import hdiffpatch


def window_log(*sizes):
    """Smallest window covering the largest input, clamped to what each codec accepts."""
    return max(20, math.ceil(math.log2(max(max(sizes), 2))))


def codec_config(codec, old_size, new_size):
    wlog = window_log(old_size, new_size)
    if codec == "zstd":
        return hdiffpatch.ZStdConfig(level=22, window=min(wlog, 27), threads=1)
    if codec == "lzma":
        return hdiffpatch.LzmaConfig(level=9, window=min(wlog, 30), threads=1)
    if codec == "lzma2":
        return hdiffpatch.Lzma2Config(level=9, window=min(wlog, 30), threads=1)
    sys.exit(f"hdiff.py: unknown codec {codec!r}")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv):
    if len(argv) == 6 and argv[1] == "diff":
        _, _, codec, old_p, new_p, patch_p = argv
        old, new = read(old_p), read(new_p)
        config = codec_config(codec, len(old), len(new))
        write(patch_p, hdiffpatch.diff(old, new, config, validate=False))
    elif len(argv) == 5 and argv[1] == "apply":
        _, _, old_p, patch_p, out_p = argv
        write(out_p, hdiffpatch.apply(read(old_p), read(patch_p)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
