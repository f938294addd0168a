"""A minimal GGUF v3 reader and writer that keeps everything a mutator may want to
break: any value type for any key, any element type for any array, duplicate keys,
unknown tensor type ids, tensor data of any length. The writer lays the tensors out
again (aligned offsets, in table order), so a mutant whose declared sizes match its
data is structurally valid GGUF; one whose sizes do not is a reader-level mutant.

No dependency beyond the standard library (numpy is used by the mutator only).
"""

import struct

# Metadata value types (GGUF ids).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

SCALAR_FMT = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<B", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}
INT_TYPES = [UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64]
FLOAT_TYPES = [FLOAT32, FLOAT64]
TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"]

# ggml tensor types: id -> (name, block size, bytes per block).
GGML = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 30: ("BF16", 1, 2),
}


def tensor_bytes(dims, ggml_type):
    """Bytes a tensor of these dims and type occupies, or None when the type is unknown
    or the row is not a whole number of blocks."""
    info = GGML.get(ggml_type)
    if info is None or not dims:
        return None
    _, block, per_block = info
    if dims[0] % block:
        return None
    n = 1
    for d in dims:
        n *= d
    return n // block * per_block


class Value:
    """A metadata value: `type` is its GGUF id; `value` a Python scalar (bytes for a
    string, so that invalid UTF-8 can be written), or for ARRAY a list of Values with
    `elem` their element type."""

    __slots__ = ("type", "value", "elem")

    def __init__(self, type_, value, elem=None):
        self.type, self.value, self.elem = type_, value, elem

    def copy(self):
        if self.type == ARRAY:
            return Value(ARRAY, [v.copy() for v in self.value], self.elem)
        return Value(self.type, self.value)

    def __repr__(self):
        if self.type == ARRAY:
            return "[%s x %d]" % (TYPE_NAMES[self.elem] if self.elem < 13 else self.elem, len(self.value))
        v = self.value
        if self.type == STRING and len(v) > 40:
            v = v[:37] + b"..."
        return "%s(%r)" % (TYPE_NAMES[self.type], v)


class Tensor:
    __slots__ = ("name", "dims", "type", "data")

    def __init__(self, name, dims, type_, data):
        self.name, self.dims, self.type, self.data = name, list(dims), type_, data

    def copy(self):
        return Tensor(self.name, list(self.dims), self.type, self.data)


class GGUF:
    def __init__(self, version=3, kvs=None, tensors=None):
        self.version = version
        self.kvs = kvs or []          # list of [key (bytes), Value]
        self.tensors = tensors or []  # list of Tensor

    def copy(self):
        return GGUF(self.version, [[k, v.copy()] for k, v in self.kvs], [t.copy() for t in self.tensors])

    def get(self, key):
        key = key.encode() if isinstance(key, str) else key
        for k, v in self.kvs:
            if k == key:
                return v
        return None

    def set(self, key, value):
        key = key.encode() if isinstance(key, str) else key
        for kv in self.kvs:
            if kv[0] == key:
                kv[1] = value
                return
        self.kvs.append([key, value])

    def tensor(self, name):
        for t in self.tensors:
            if t.name == name:
                return t
        return None

    @property
    def alignment(self):
        # A hostile alignment of 2^31 would pad every tensor to 2 GiB: above 64 KiB the file
        # is laid out at 32 and the reader must refuse its (misaligned) offsets.
        v = self.get("general.alignment")
        if v is not None and v.type == UINT32 and 8 <= v.value <= 1 << 16 and v.value & (v.value - 1) == 0:
            return v.value
        return 32


# ---------------------------------------------------------------- reading

class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return s

    def value(self, t):
        if t == STRING:
            return Value(STRING, self.string())
        if t == ARRAY:
            elem = self.take("<I")
            n = self.take("<Q")
            return Value(ARRAY, [self.value(elem) for _ in range(n)], elem)
        v = self.take(SCALAR_FMT[t])
        return Value(t, bool(v) if t == BOOL else v)


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    c = _Cursor(buf)
    assert c.take("<I") == 0x46554747, "not GGUF"
    g = GGUF(version=c.take("<I"))
    nt, nkv = c.take("<Q"), c.take("<Q")
    for _ in range(nkv):
        key = c.string()
        g.kvs.append([key, c.value(c.take("<I"))])
    table = []
    for _ in range(nt):
        name = c.string().decode()
        nd = c.take("<I")
        dims = [c.take("<Q") for _ in range(nd)]
        table.append((name, dims, c.take("<I"), c.take("<Q")))
    align = g.alignment
    start = (c.pos + align - 1) // align * align
    for name, dims, ty, off in table:
        size = tensor_bytes(dims, ty)
        g.tensors.append(Tensor(name, dims, ty, bytes(buf[start + off:start + off + size])))
    return g


# ---------------------------------------------------------------- writing

def _enc_string(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("<Q", len(s)) + s


def _enc_value(v):
    if v.type == STRING:
        return _enc_string(v.value)
    if v.type == ARRAY:
        return struct.pack("<IQ", v.elem, len(v.value)) + b"".join(_enc_value(e) for e in v.value)
    fmt = SCALAR_FMT[v.type]
    x = v.value
    if v.type in INT_TYPES or v.type == BOOL:
        # Wrap integers into the type's range: a mutant may ask for -1 as a uint32.
        bits = struct.calcsize(fmt) * 8
        x = int(x) & ((1 << bits) - 1)
        if fmt[1].islower() and x >= 1 << (bits - 1):
            x -= 1 << bits
    return struct.pack(fmt, x)


def serialize(g):
    """The file's bytes. Tensor data is laid out in table order at aligned offsets."""
    out = [struct.pack("<IIQQ", 0x46554747, g.version, len(g.tensors), len(g.kvs))]
    for k, v in g.kvs:
        out.append(_enc_string(k) + struct.pack("<I", v.type) + _enc_value(v))
    align = g.alignment
    offset, offsets = 0, []
    for t in g.tensors:
        offsets.append(offset)
        offset = (offset + len(t.data) + align - 1) // align * align
    for t, off in zip(g.tensors, offsets):
        out.append(_enc_string(t.name) + struct.pack("<I", len(t.dims))
                   + b"".join(struct.pack("<Q", d) for d in t.dims) + struct.pack("<IQ", t.type, off))
    head = b"".join(out)
    head += b"\0" * ((-len(head)) % align)
    body = []
    pos = 0
    for t, off in zip(g.tensors, offsets):
        body.append(b"\0" * (off - pos))
        body.append(t.data)
        pos = off + len(t.data)
    return head + b"".join(body), len(head)


def write(g, path):
    data, _ = serialize(g)
    with open(path, "wb") as f:
        f.write(data)
