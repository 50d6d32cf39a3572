#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Loads a safetensors file (e.g. an hseq checkpoint) with the reference `safetensors` package and
prints each tensor's name, dtype and shape, then the metadata.

A developer tool for checking interoperability; no test depends on it.

    pip install safetensors numpy
    python3 tools/check_safetensors.py model.safetensors [--values N]
"""

import argparse
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover
    sys.exit(f"check_safetensors: {e}; install with: pip install safetensors numpy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="a .safetensors file")
    ap.add_argument("--values", type=int, default=0, metavar="N",
                    help="also print the first N values of each tensor")
    args = ap.parse_args()

    try:
        tensors = load_file(args.path)
        with safe_open(args.path, "np") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # the package raises several exception types for bad files
        print(f"check_safetensors: cannot load {args.path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    total = 0
    for name in sorted(tensors):
        t = tensors[name]
        total += t.nbytes
        line = f"{name}\t{t.dtype}\t{list(t.shape)}"
        if args.values > 0:
            line += "\t" + np.array2string(t.reshape(-1)[: args.values], separator=", ")
        print(line)
    print(f"# {len(tensors)} tensors, {total} bytes of data")
    print("# metadata:")
    for key in sorted(metadata):
        print(f"{key}\t{metadata[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
