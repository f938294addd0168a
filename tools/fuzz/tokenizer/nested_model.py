#!/usr/bin/env python3
"""Writes a hostile SentencePiece model of nested pieces: a, aa, aaa, ... (BPE, identity
normaliser). Loading it measures how the merge table's build scales with pieces that
are prefixes of each other (README, "Tokenizer"):

    python3 tools/fuzz/tokenizer/nested_model.py --pieces 1950 -o /tmp/nested.model   # 1.9 MB
    /usr/bin/time -f "%e s" .build/release/palr tokenize --model /tmp/nested.model aaaa

The protobuf is written by hand (no dependency): ModelProto.pieces (1) with piece (1),
score (2) and type (3); trainer_spec (2) with model_type BPE (3 = 2); normalizer_spec (3)
with name (1) "identity".
"""
import argparse
import struct


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number, wire):
    return varint(number << 3 | wire)


def length_delimited(number, payload):
    return key(number, 2) + varint(len(payload)) + payload


def piece(text, score, kind):
    body = length_delimited(1, text.encode()) + key(2, 5) + struct.pack("<f", score) + key(3, 0) + varint(kind)
    return length_delimited(1, body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pieces", type=int, default=1950, help="the longest piece's length (default 1950: 1.9 MB)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    model = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3)
    model += b"".join(piece("a" * k, -float(k), 1) for k in range(1, args.pieces + 1))
    model += length_delimited(2, key(3, 0) + varint(2))
    model += length_delimited(3, length_delimited(1, b"identity"))
    with open(args.output, "wb") as f:
        f.write(model)
    print(f"{args.output}: {len(model)} bytes, {args.pieces + 3} pieces")


if __name__ == "__main__":
    main()
