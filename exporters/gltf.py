"""A minimal glTF 2.0 binary (GLB) builder: buffer views, accessors, images, textures, samplers.

Pure and in memory: add numpy arrays and encoded images, then `glb()` returns the bytes. Every
buffer view starts on an 8-byte boundary and both GLB chunks are padded to 8 bytes, as
EXT_structural_metadata asks (and a multiple of glTF's 4); vertex attributes and indices get their buffer-view targets; POSITION
accessors carry min and max, as the specification requires.

Compressed buffer views (EXT_meshopt_compression, exporters.compress): `compressed_view` stores the
encoded bytes in the GLB's buffer and points the view into a second, data-less fallback buffer of
the decoded size, as that extension asks; plain `view`s are untouched by it.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..core.errors import WorldstreamError

ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
NEAREST, LINEAR, LINEAR_MIPMAP_LINEAR = 9728, 9729, 9987
BYTE, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5123, 5125, 5126  # accessor componentType
CLAMP_TO_EDGE = 33071

_COMPONENT = {np.dtype(np.int8): 5120, np.dtype(np.uint8): 5121, np.dtype(np.int16): 5122,
              np.dtype(np.uint16): 5123, np.dtype(np.uint32): 5125, np.dtype(np.float32): 5126}
_TYPE = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
MAX_SHORT_ID = 0xFFFF


def feature_id_array(ids: np.ndarray) -> np.ndarray:
    """(N,) feature ids as uint16 integers, or float32 (exact below 2^24) when one exceeds 65535
    (glTF vertex attributes have no UNSIGNED_INT)."""
    ids = np.asarray(ids)
    if len(ids) == 0 or int(ids.max()) <= MAX_SHORT_ID:
        return ids.astype("<u2")
    if int(ids.max()) >= 1 << 24:
        raise WorldstreamError(f"feature id {int(ids.max())} does not fit a glTF vertex attribute "
                               "(UNSIGNED_SHORT, or FLOAT exact below 2^24)")
    return ids.astype("<f4")


def padded_rows(a: np.ndarray, stride: int) -> np.ndarray:
    """(N, stride) uint8 rows holding each element of `a` (N, ...) zero padded: the layout of a
    view with byteStride `stride` (vertex attributes need 4-byte elements)."""
    a = np.ascontiguousarray(a)
    raw = a.reshape(len(a), -1).view(np.uint8)
    if raw.shape[1] == stride:
        return raw
    out = np.zeros((len(a), stride), np.uint8)
    out[:, :raw.shape[1]] = raw
    return out


class GltfBuilder:
    """Accumulates one glTF document and its single binary buffer."""

    def __init__(self, generator: str):
        self.doc: dict = {"asset": {"version": "2.0", "generator": generator}}
        self.bin = bytearray()
        self.fallback = 0  # bytes of the EXT_meshopt_compression fallback buffer (decoded views)

    def _list(self, name: str) -> list:
        return self.doc.setdefault(name, [])

    def _append(self, data: bytes) -> int:
        """Put `data` in the binary buffer at the next 8-byte boundary; returns its offset."""
        while len(self.bin) % 8:
            self.bin.append(0)
        offset = len(self.bin)
        self.bin.extend(data)
        return offset

    def view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        v = {"buffer": 0, "byteOffset": self._append(data), "byteLength": len(data)}
        if stride is not None:
            v["byteStride"] = stride
        if target is not None:
            v["target"] = target
        views = self._list("bufferViews")
        views.append(v)
        return len(views) - 1

    def compressed_view(self, encoded: bytes, count: int, stride: int, mode: str, filter_: str | None = None,
                        target: int | None = None, vertex_stride: bool = False) -> int:
        """A view of `count` rows of `stride` bytes, stored meshopt-encoded (EXT_meshopt_compression,
        `mode` ATTRIBUTES, TRIANGLES or INDICES, optional `filter_`); `vertex_stride` also sets the
        view's byteStride (vertex attributes whose elements are padded to 4 bytes)."""
        ext = {"buffer": 0, "byteOffset": self._append(encoded), "byteLength": len(encoded), "byteStride": stride,
               "count": count, "mode": mode}
        if filter_ is not None:
            ext["filter"] = filter_
        self.fallback += -self.fallback % 8
        v = {"buffer": 1, "byteOffset": self.fallback, "byteLength": count * stride}
        self.fallback += count * stride
        if vertex_stride:
            v["byteStride"] = stride
        if target is not None:
            v["target"] = target
        v["extensions"] = {"EXT_meshopt_compression": ext}
        self.use_extension("EXT_meshopt_compression", required=True)
        views = self._list("bufferViews")
        views.append(v)
        return len(views) - 1

    def raw_accessor(self, view: int, component: int, count: int, type_: str, normalized: bool = False,
                     min_max: tuple[list, list] | None = None) -> int:
        """An accessor over an existing view (a compressed one: the data is not here to measure)."""
        acc = {"bufferView": view, "componentType": component, "count": count, "type": type_}
        if normalized:
            acc["normalized"] = True
        if min_max is not None:
            acc["min"], acc["max"] = min_max
        return self.add("accessors", acc)

    def accessor(self, array: np.ndarray, target: int | None = None, min_max: bool = False) -> int:
        """(N,) or (N, k) array of a glTF component type -> accessor index."""
        a = np.ascontiguousarray(array)
        comps = 1 if a.ndim == 1 else a.shape[1]
        acc = {"bufferView": self.view(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes(), target),
               "componentType": _COMPONENT[a.dtype], "count": int(a.shape[0]), "type": _TYPE[comps]}
        if min_max:
            flat = a.reshape(a.shape[0], comps)
            acc["min"] = [_num(v) for v in flat.min(axis=0)]
            acc["max"] = [_num(v) for v in flat.max(axis=0)]
        accessors = self._list("accessors")
        accessors.append(acc)
        return len(accessors) - 1

    def sampler(self, mag: int, min_: int, wrap: int = CLAMP_TO_EDGE) -> int:
        samplers = self._list("samplers")
        s = {"magFilter": mag, "minFilter": min_, "wrapS": wrap, "wrapT": wrap}
        if s in samplers:
            return samplers.index(s)
        samplers.append(s)
        return len(samplers) - 1

    def texture(self, encoded: bytes, mime: str, sampler: int, name: str, extension: str | None = None) -> int:
        """An embedded image and its texture; with `extension` (e.g. EXT_texture_webp, for a format
        core glTF lacks) the texture names its source only through that extension, which is
        then required (no fallback image)."""
        images = self._list("images")
        images.append({"bufferView": self.view(encoded), "mimeType": mime, "name": name})
        textures = self._list("textures")
        if extension is None:
            textures.append({"source": len(images) - 1, "sampler": sampler, "name": name})
        else:
            self.use_extension(extension, required=True)
            textures.append({"sampler": sampler, "name": name,
                             "extensions": {extension: {"source": len(images) - 1}}})
        return len(textures) - 1

    def add(self, name: str, item: dict) -> int:
        items = self._list(name)
        items.append(item)
        return len(items) - 1

    def use_extension(self, name: str, required: bool = False) -> None:
        used = self._list("extensionsUsed")
        if name not in used:
            used.append(name)
        if required:
            req = self._list("extensionsRequired")
            if name not in req:
                req.append(name)

    def glb(self) -> bytes:
        while len(self.bin) % 8:
            self.bin.append(0)
        doc = dict(self.doc)
        if self.bin:
            doc["buffers"] = [{"byteLength": len(self.bin)}]
        if self.fallback:
            doc["buffers"].append({"byteLength": self.fallback + (-self.fallback % 8),
                                   "extensions": {"EXT_meshopt_compression": {"fallback": True}}})
        js = json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()
        js += b" " * (-len(js) % 8)
        chunks = struct.pack("<II", len(js), 0x4E4F534A) + js
        if self.bin:
            chunks += struct.pack("<II", len(self.bin), 0x004E4942) + bytes(self.bin)
        return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks


def _num(v) -> float | int:
    return int(v) if np.issubdtype(type(v), np.integer) else float(v)


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Split GLB bytes into (JSON document, binary chunk); raises ValueError on a malformed file."""
    if len(data) < 20:
        raise ValueError(f"not a GLB: {len(data)} bytes is shorter than the 20-byte minimum")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67 or version != 2:
        raise ValueError(f"not a glTF 2.0 binary (magic {magic:#x}, version {version})")
    if length != len(data):
        raise ValueError(f"GLB header says {length} bytes, file has {len(data)}: truncated or padded")
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != 0x4E4F534A:
        raise ValueError("GLB's first chunk is not JSON")
    doc = json.loads(data[20:20 + jlen])
    rest = 20 + jlen
    binary = b""
    if rest < len(data):
        blen, btype = struct.unpack_from("<II", data, rest)
        if btype != 0x004E4942:
            raise ValueError("GLB's second chunk is not BIN")
        binary = data[rest + 8:rest + 8 + blen]
    return doc, binary


def accessor_array(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """Read an accessor back as numpy (raw components: normalised integers are not scaled). Views
    are tightly packed as this builder writes them, or strided (`byteStride`, as decoded
    EXT_meshopt_compression vertex views are)."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {v: k for k, v in _COMPONENT.items()}[acc["componentType"]].newbyteorder("<")
    comps = {v: k for k, v in _TYPE.items()}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    size = dtype.itemsize * comps
    stride = view.get("byteStride", size)
    if stride == size:
        a = np.frombuffer(binary, dtype=dtype, count=acc["count"] * comps, offset=start)
    else:
        rows = np.frombuffer(binary[start:start + acc["count"] * stride].ljust(acc["count"] * stride, b"\0"),
                             np.uint8).reshape(acc["count"], stride)
        a = np.ascontiguousarray(rows[:, :size]).view(dtype).reshape(-1)
    return a.reshape(acc["count"], comps) if comps > 1 else a
