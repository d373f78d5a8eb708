#!/usr/bin/env python3
"""Prints a byte-level tokenizer.json: every byte its own token, id = byte value, no merges.

The benchmarks score paper-sized random models (50,304-token vocabularies) on a text whose ids are
its bytes, as bench/pytorch/baseline.py's `score` does; this is the tokenizer that makes
btconvert read the text the same way:

    python3 bench/pytorch/byte_tokenizer.py > MODEL/tokenizer.json
"""

import json


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others are shifted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


chars = bytes_to_unicode()
byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
print(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {chars[b]: b for b in range(256)}, "merges": []},
                  "pre_tokenizer": byte_level, "decoder": byte_level}))
