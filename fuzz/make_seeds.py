#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<harness>/: small valid inputs (and a few near misses)
from which libFuzzer mutates. Deterministic; rerun after a format changes. The JPEG seed needs
ffmpeg (scripts/setup.sh installs it)."""
import json
import os
import shutil
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def put(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta):
    """tensors: name -> (shape, list of floats), in the order the data is laid out."""
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        begin = len(data)
        data += struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [begin, len(data)]}
    meta = dict(meta)
    meta["distbelief.crc32"] = str(zlib.crc32(data))
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def png(w, h, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\x00" + bytes(pixels[y * w:(y + 1) * w]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(w, h, pixels):
    row = (w * 3 + 3) // 4 * 4
    body = b""
    for y in reversed(range(h)):
        line = b"".join(bytes([p, p, p]) for p in pixels[y * w:(y + 1) * w])
        body += line + b"\x00" * (row - len(line))
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(body), 0, 0, 54) + info + body


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(number, wire, value):
    key = varint(number << 3 | wire)
    if wire == 0:
        return key + varint(value & (2**64 - 1))
    if wire == 1:
        return key + struct.pack("<d", value)
    return key + varint(len(value)) + value


def main():
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    # checkpoint: a model checkpoint as the trainer writes it, one with optimizer state, an empty one.
    put("checkpoint", "model", safetensors({"fc.b": ([3], [0.1, -0.2, 0.3]), "fc.w": ([2, 3], [0.5] * 6)},
                                           {"step": "42", "format": "distbelief.model.v1", "config": "[train]\n"}))
    put("checkpoint", "optimizer", safetensors({"optimizer/w": ([4], [1.0] * 4), "w": ([2, 2], [0.0, 1.0, 2.0, 3.0])},
                                               {"step": "7", "optimizer": "adagrad"}))
    put("checkpoint", "empty", safetensors({}, {}))
    # image: each format stb decodes that the folders hold.
    pix = [(x * 16 + y * 8) % 256 for y in range(8) for x in range(8)]
    put("image", "grey.png", png(8, 8, pix))
    put("image", "grey.pgm", b"P5\n8 8\n255\n" + bytes(pix))
    put("image", "colour.ppm", b"P6\n2 2\n255\n" + bytes(range(12)))
    put("image", "grey.bmp", bmp(8, 8, pix))
    jpg = os.path.join(HERE, "corpus", "image", "test.jpg")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=16x16",
                    "-frames:v", "1", jpg], check=True)
    # Inputs that once crashed image_fuzz (regressions; images_test has them too): a PNM of zero
    # rows, and a 16-bit P6 that made Debian's stb_image read out of bounds.
    put("image", "regression-zero-rows.ppm", b"P6\n2 0\n255\n\x01\x02\x03")
    put("image", "regression-16bit.ppm", b"P6\n\n988\n777\n\n777A16\n\n\xd5(\x00\x00``\x00\x001717 ")
    # readers: byte 0 even = an MNIST pair split at bytes 1-2; odd = a token cache.
    images = struct.pack(">IIII", 0x803, 2, 2, 2) + bytes([0, 64, 128, 255, 1, 2, 3, 4])
    labels = struct.pack(">II", 0x801, 2) + bytes([3, 9])
    put("readers", "mnist", bytes([0]) + struct.pack(">H", len(images)) + images + labels)
    ids = [5, 6, 7]
    s = 0
    for t in ids:
        s = (s * 31 + t) % 2**64
    cache = b"DBTOKEN1" + struct.pack("<7q", 100, 2, 1, 1, 1, 10, 10) + struct.pack("<3H", *ids) + struct.pack("<Q", s)
    put("readers", "tokens", bytes([1, 0, 0]) + cache)
    # Once crashed readers_fuzz (memcpy from an empty vector): a cache of no tokens.
    put("readers", "regression-empty-cache", bytes([1, 0, 0]) + b"DBTOKEN1" + struct.pack("<7q", 1, 0, 0, 0, 0, 0, 0) +
        struct.pack("<Q", 0))
    # config: the repository's configs, as users write them.
    for f in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        with open(os.path.join(ROOT, "configs", f), "rb") as src:
            put("config", f, src.read())
    # Once crashed config_fuzz (Debian's toml11 reads past its buffer on invalid UTF-8 in a string).
    put("config", "regression-not-utf8", b"'2" + b"\xff" * 16 + b"'2" + b"\xff" * 30)
    # tensor_socket: byte 0 odd = the harness authenticates; then frames (64-byte headers).
    def request(op, payload=b"", version=0, replica=0, clock=1, client=0, sequence=0, incarnation=0):
        return struct.pack("<IIQQqqQQQ", 0x31544244, op, len(payload), version, replica, clock, client,
                           sequence, incarnation) + payload
    grad = struct.pack("<64f", *([0.01] * 64))
    put("tensor_socket", "pull", b"\x01" + request(1))
    put("tensor_socket", "push_pull", b"\x01" + request(2, grad) + request(1))
    put("tensor_socket", "push_twice_with_id", b"\x01" + request(2, grad, client=7, sequence=1) +
        request(2, grad, client=7, sequence=1) + request(2, grad, client=7, sequence=2))
    put("tensor_socket", "push_to_another_incarnation", b"\x01" + request(2, grad, client=7, sequence=1, incarnation=5))
    put("tensor_socket", "wrong_size_push", b"\x01" + request(2, grad[:40]) + request(1))
    put("tensor_socket", "bad_mac", b"\x00" + b"\x00" * 32 + request(1))
    # rpc: byte 0 = method (0 Pull, 1 Push, 2 Accumulate, 3 VectorOp, 4 Info, 5 RunPortion,
    # 6 Deliver; +128 = without the secret), then the request's protobuf bytes.
    put("rpc", "pull", b"\x00" + field(1, 0, 2))
    put("rpc", "push", b"\x01" + field(1, 2, grad) + field(2, 0, 3) + field(3, 0, 1) + field(4, 0, 5))
    put("rpc", "accumulate", b"\x02" + field(1, 2, grad) + field(2, 0, 1) + field(3, 0, 0))
    put("rpc", "dot", b"\x03" + field(1, 0, 0) + field(2, 0, 0) + field(3, 0, 1))
    put("rpc", "axpy", b"\x03" + field(1, 0, 1) + field(2, 0, 2) + field(3, 0, 0) + field(4, 1, 0.5))
    put("rpc", "info", b"\x04")
    put("rpc", "portion", b"\x05" + field(1, 0, 1) + field(2, 0, 0) + field(3, 0, 0) + field(4, 0, 10))
    put("rpc", "deliver", b"\x06" + field(1, 0, 0) + field(2, 0, 0) + field(3, 0, 1) + field(4, 0, 3) +
        field(7, 0, 0) + field(8, 0, 4) + field(9, 2, struct.pack("<4f", 1, 2, 3, 4)))
    put("rpc", "push_with_id", b"\x01" + field(1, 2, grad) + field(5, 0, 9) + field(6, 0, 1))
    put("rpc", "push_to_another_incarnation", b"\x01" + field(1, 2, grad) + field(5, 0, 9) + field(6, 0, 2) +
        field(7, 0, 12345))
    put("rpc", "push_without_secret", b"\x81" + field(1, 2, grad))

    # text: 0 = a gettext catalogue, 1 = a line for 13a, 2 = a message to clean, 3 = hyp \n ref.
    def mo(entries):
        n = len(entries)
        orig, trans = 28, 28 + 8 * n
        at = trans + 8 * n
        ot, tt, strings = b"", b"", b""
        for k, _ in entries:
            ot += struct.pack("<2I", len(k), at + len(strings))
            strings += k + b"\0"
        for _, v in entries:
            tt += struct.pack("<2I", len(v), at + len(strings))
            strings += v + b"\0"
        return struct.pack("<7I", 0x950412DE, 0, n, orig, trans, 0, 0) + ot + tt + strings
    put("text", "mo", b"\x00" + mo([(b"", b"Content-Type: text/plain\n"), (b"_Open", b"_Ouvrir"),
                                     (b"menu\x04File", b"Fichier"), (b"%d file\0%d files", b"%d fichier\0%d fichiers")]))
    put("text", "line_13a", b"\x01" + "Hello, world... &quot;l'été&quot; 1,000.50 5-6 (a)\u00a0!".encode())
    put("text", "message", b"\x02" + b"<b>_Save</b> &amp; quit %s {0} ${HOME}")
    put("text", "bleu", b"\x03" + b"the cat sat on the mat\nthe cat is on the mat")


if __name__ == "__main__":
    main()
