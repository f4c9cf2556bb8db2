#!/usr/bin/env python3
"""Generates cid-vectors.json: CIDs of test inputs, computed without the crate under test.

Everything here is written from the specifications, using only the Python standard
library: BLAKE3 (the BLAKE3 paper, section 2 and 5), unsigned varints (multiformats
unsigned-varint), CIDv1 (multiformats cid), multihash, and multibase base32 lower,
no padding, prefix 'b' (RFC 4648 section 6) and base58btc for CIDv0. The BLAKE3 code
is checked against published BLAKE3 test vectors before anything is written.

Run from this directory: python3 gen_cid_vectors.py > cid-vectors.json
"""

import hashlib
import json
import sys

# --- BLAKE3, from the specification -------------------------------------------------

IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
      0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
MSG_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
CHUNK_START, CHUNK_END, PARENT, ROOT = 1, 2, 4, 8
BLOCK_LEN, CHUNK_LEN = 64, 1024
MASK = 0xFFFFFFFF


def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & MASK


def g(s, a, b, c, d, mx, my):
    s[a] = (s[a] + s[b] + mx) & MASK
    s[d] = rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK
    s[b] = rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + my) & MASK
    s[d] = rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK
    s[b] = rotr(s[b] ^ s[c], 7)


def compress(cv, block_words, counter, block_len, flags):
    s = list(cv) + IV[:4] + [counter & MASK, (counter >> 32) & MASK, block_len, flags]
    m = list(block_words)
    for round_index in range(7):
        g(s, 0, 4, 8, 12, m[0], m[1])
        g(s, 1, 5, 9, 13, m[2], m[3])
        g(s, 2, 6, 10, 14, m[4], m[5])
        g(s, 3, 7, 11, 15, m[6], m[7])
        g(s, 0, 5, 10, 15, m[8], m[9])
        g(s, 1, 6, 11, 12, m[10], m[11])
        g(s, 2, 7, 8, 13, m[12], m[13])
        g(s, 3, 4, 9, 14, m[14], m[15])
        if round_index < 6:
            m = [m[i] for i in MSG_PERMUTATION]
    for i in range(8):
        s[i] ^= s[i + 8]
        s[i + 8] ^= cv[i]
    return s


def words(block):
    block = block.ljust(BLOCK_LEN, b"\0")
    return [int.from_bytes(block[4 * i:4 * i + 4], "little") for i in range(16)]


class Output:
    """The last compression of a node, kept so the root can be finalized with ROOT."""

    def __init__(self, cv, block_words, counter, block_len, flags):
        self.cv, self.block_words = cv, block_words
        self.counter, self.block_len, self.flags = counter, block_len, flags

    def chaining_value(self):
        return compress(self.cv, self.block_words, self.counter, self.block_len, self.flags)[:8]

    def root_bytes(self, length):
        out = b""
        block_counter = 0
        while len(out) < length:
            state = compress(self.cv, self.block_words, block_counter, self.block_len,
                             self.flags | ROOT)
            out += b"".join(word.to_bytes(4, "little") for word in state)
            block_counter += 1
        return out[:length]


def chunk_output(chunk, chunk_counter):
    cv = list(IV)
    blocks = [chunk[i:i + BLOCK_LEN] for i in range(0, len(chunk), BLOCK_LEN)] or [b""]
    for index, block in enumerate(blocks):
        flags = CHUNK_START if index == 0 else 0
        if index == len(blocks) - 1:
            return Output(cv, words(block), chunk_counter, len(block), flags | CHUNK_END)
        cv = compress(cv, words(block), chunk_counter, BLOCK_LEN, flags)[:8]
    raise AssertionError("unreachable")


def parent_output(left_cv, right_cv):
    return Output(list(IV), left_cv + right_cv, 0, BLOCK_LEN, PARENT)


def blake3(data, length=32):
    chunks = [data[i:i + CHUNK_LEN] for i in range(0, len(data), CHUNK_LEN)] or [b""]
    # Merge subtrees as in the reference implementation: a chunk's chaining value is
    # pushed on a stack, and completed subtrees (by the trailing zeros of the total
    # chunk count) are merged, except the very last output, which is the root.
    stack = []
    for counter, chunk in enumerate(chunks):
        output = chunk_output(chunk, counter)
        if counter == len(chunks) - 1:
            break
        cv = output.chaining_value()
        total = counter + 1
        while total & 1 == 0:
            cv = parent_output(stack.pop(), cv).chaining_value()
            total >>= 1
        stack.append(cv)
    while stack:
        output = parent_output(stack.pop(), output.chaining_value())
    return output.root_bytes(length)


# Published BLAKE3 test vectors (test_vectors.json of the BLAKE3 repository):
# input i-th byte = i % 251, default 32-byte hash.
OFFICIAL = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    2048: "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a",
}

# --- multiformats, from the specifications -------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def base32_lower(data):
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    bits = 0
    value = 0
    out = []
    for byte in data:
        value = (value << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(alphabet[(value >> bits) & 31])
    if bits:
        out.append(alphabet[(value << (5 - bits)) & 31])
    return "".join(out)


def base58btc(data):
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def multihash(code, digest):
    return varint(code) + varint(len(digest)) + digest


def cid_v1(codec, mh):
    return b"\x01" + varint(codec) + mh


RAW, DAG_PB, BLAKE3, SHA2_256 = 0x55, 0x70, 0x1E, 0x12

EMPTY_CID = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi"


def pattern(length):
    return bytes(i % 251 for i in range(length))


def main():
    for length, expected in OFFICIAL.items():
        got = blake3(pattern(length)).hex()
        if got != expected:
            sys.exit(f"blake3 self-check failed for length {length}: {got} != {expected}")

    valid = []
    inputs = [("utf8", "hello"), ("utf8", "hello world\n")]
    inputs += [("pattern", n) for n in (0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049,
                                        3072, 3073, 8193, 16384, 16385, 31744, 102400)]
    for kind, value in inputs:
        data = value.encode() if kind == "utf8" else pattern(value)
        digest = blake3(data)
        cid_bytes = cid_v1(RAW, multihash(BLAKE3, digest))
        entry = {"input": {kind: value}, "len": len(data), "blake3": digest.hex(),
                 "cid_hex": cid_bytes.hex(), "cid": "b" + base32_lower(cid_bytes)}
        valid.append(entry)
    if valid[2]["cid"] != EMPTY_CID:
        sys.exit(f"empty-input CID {valid[2]['cid']} != {EMPTY_CID}")

    hello = b"hello"
    sha = hashlib.sha256(hello).digest()
    b3 = blake3(hello)
    b3_64 = blake3(hello, 64)
    invalid = [
        {"why": "cidv1 dag-pb with a blake3 multihash", "error": "unsupported_codec",
         "cid": "b" + base32_lower(cid_v1(DAG_PB, multihash(BLAKE3, b3)))},
        {"why": "cidv1 raw with a sha2-256 multihash", "error": "unsupported_hash",
         "cid": "b" + base32_lower(cid_v1(RAW, multihash(SHA2_256, sha)))},
        {"why": "cidv1 raw with a 64-byte blake3 digest", "error": "unsupported_hash",
         "cid": "b" + base32_lower(cid_v1(RAW, multihash(BLAKE3, b3_64)))},
        {"why": "cidv0 (sha2-256, dag-pb)", "error": "unsupported_version",
         "cid": base58btc(multihash(SHA2_256, sha))},
        {"why": "base32 text cut short", "error": "malformed",
         "cid": "b" + base32_lower(cid_v1(RAW, multihash(BLAKE3, b3)))[:-10]},
    ]
    document = {
        "generator": "gen_cid_vectors.py (stdlib-only Python, from the specifications)",
        "pattern": "byte i of a pattern input of length n is i % 251",
        "valid": valid,
        "invalid": invalid,
    }
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
