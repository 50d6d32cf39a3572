#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the long-range recall task of bench/long_range.sh: a byte stream of episodes, each a value
planted early and asked for after a distance longer than a Transformer-XL's memory reaches.

Episode (every byte drawn from a seeded generator, so a seed names the file):

    =VVVVVVVV<filler ... >?V<filler ...>
    ^ plant                ^ query: the byte after '?' is the answer, V again

  - V is one upper-case letter (26 values: chance is 1/26, 4.70 bits);
  - the plant repeats V eight times, so that any compression of c <= 4 consecutive memories aligned
    to multiples of c contains a group holding only V (a pooled row that is V's alone);
  - the query's '?' lies `dist` bytes after the plant's '=' (dist uniform in [--min-dist,
    --max-dist]); the filler is random lower-case letters, which never repeat V;
  - an episode is --min-len to --max-len bytes long (uniform), so the plant of the previous episode
    lies at least --min-len + --min-dist bytes before a query: past the compressed memory's reach.

The scorer is hseq-eval --score-after '?' --accuracy (train/evaluator.hpp: only the byte after each
'?' is scored). Python is a tool here only: the library and its programs never need it.
"""
import argparse
import random
import string
import sys


def episode(rng, a):
    dist = rng.randint(a.min_dist, a.max_dist)
    length = rng.randint(a.min_len, a.max_len)
    value = rng.choice(string.ascii_uppercase)
    plant = "=" + value * 8
    before = dist - len(plant)  # filler between the plant and the query's '?'
    after = length - dist - 2
    if before < 0 or after < 0:
        sys.exit("gen_long_range: --min-dist must exceed the plant (9 bytes) and --min-len the longest distance + 2")
    filler = lambda n: "".join(rng.choice(string.ascii_lowercase) for _ in range(n))
    return plant + filler(before) + "?" + value + filler(after)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--bytes", type=int, default=2_000_000, help="about this many bytes (whole episodes)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-dist", type=int, default=200, help="shortest plant-to-query distance in bytes")
    p.add_argument("--max-dist", type=int, default=224, help="longest plant-to-query distance in bytes")
    p.add_argument("--min-len", type=int, default=280, help="shortest episode in bytes")
    p.add_argument("--max-len", type=int, default=320, help="longest episode in bytes")
    a = p.parse_args()
    rng = random.Random(a.seed)
    parts, n, episodes = [], 0, 0
    while n < a.bytes:
        e = episode(rng, a)
        parts.append(e)
        n += len(e)
        episodes += 1
    with open(a.out, "w", encoding="ascii") as f:
        f.write("".join(parts))
    print(f"{a.out}: {n} bytes, {episodes} episodes, distance {a.min_dist}-{a.max_dist}, "
          f"episodes of {a.min_len}-{a.max_len} bytes, seed {a.seed}")


if __name__ == "__main__":
    main()
