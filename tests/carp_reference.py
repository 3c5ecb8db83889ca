#!/usr/bin/env python3
"""Independent reference of Squid's CARP parent selection (src/carp.cc), for l7mark's golden tests.

Written from the algorithm as Squid implements it (carpInit / carpSelectParent), not from
l7mark's Rust code. Reads a JSON request on stdin:

    {"cases": [{"members": ["cache1", ...], "weights": [1, ...] or null,
                "keys": ["http://host/path", ...]}, ...]}

and writes {"cases": [{"member_hashes": [...], "owners": [index into members, ...]}, ...]}.

Details reproduced from Squid:
- 32-bit unsigned wrapping arithmetic; ROTATE_LEFT(x, n) = (x << n) | (x >> (32 - n)).
- Bytes are C `char`, signed on x86: a byte >= 0x80 is sign-extended before the addition.
- Peer hash: h += ROTATE_LEFT(h, 19) + c over the name; h += h * 0x62531965; h = ROTATE_LEFT(h, 21).
- Load factor = weight / total, zeroed if floor(factor * 1000) == 0; peers sorted by weight
  ascending with qsort (glibc: stable merge sort), then the X_k multipliers.
- Selection: user_hash is NOT reset between peers (it keeps accumulating the key bytes);
  combined = user_hash ^ peer_hash; combined += combined * 0x62531965; rotate 21;
  score = combined * multiplier; the first strictly higher score (than 0 at the start) wins.
"""

import json
import math
import sys

MASK = 0xFFFFFFFF


def rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & MASK


def char_value(b):
    """A byte as C (signed) char converted to unsigned int."""
    return (b - 256 if b >= 128 else b) & MASK


def string_step(h, data):
    for b in data:
        h = (h + rotl(h, 19) + char_value(b)) & MASK
    return h


def mix(x):
    x = (x + x * 0x62531965) & MASK
    return rotl(x, 21)


def peer_hash(name):
    return mix(string_step(0, name.encode("utf-8")))


def build(members, weights):
    if weights is None:
        weights = [1] * len(members)
    total = sum(weights)
    peers = []
    for i, (name, w) in enumerate(zip(members, weights)):
        factor = float(w) / float(total)
        if math.floor(factor * 1000.0) == 0.0:
            factor = 0.0
        peers.append({"index": i, "weight": w, "hash": peer_hash(name), "factor": factor})
    peers.sort(key=lambda p: p["weight"])  # stable, like glibc qsort (merge sort)
    k_total = len(peers)
    p_last = 0.0
    x_prod = 1.0
    x_last = 0.0
    for k in range(1, k_total + 1):
        kk1 = float(k_total - k + 1)
        p = peers[k - 1]
        m = (kk1 * (p["factor"] - p_last)) / x_prod
        m += math.pow(x_last, kk1)
        m = math.pow(m, 1.0 / kk1)
        x_prod *= m
        x_last = m
        p_last = p["factor"]
        p["multiplier"] = m
    return peers


def select(peers, key):
    data = key.encode("utf-8")
    user_hash = 0
    best = None
    high = 0.0
    for p in peers:
        user_hash = string_step(user_hash, data)
        combined = mix(user_hash ^ p["hash"])
        score = float(combined) * p["multiplier"]
        if score > high:
            best = p["index"]
            high = score
    return best


def main():
    request = json.load(sys.stdin)
    out = []
    for case in request["cases"]:
        peers = build(case["members"], case.get("weights"))
        out.append({
            "member_hashes": [peer_hash(m) for m in case["members"]],
            "owners": [select(peers, key) for key in case["keys"]],
        })
    json.dump({"cases": out}, sys.stdout)


if __name__ == "__main__":
    main()
