"""Compressed chunk GLBs (`MeshOptions(compress=True)`, `generate --compress`): meshopt geometry, WebP colour.

The default export stays uncompressed: glTFRuntime (Unreal) and other plain glTF readers need extra
plugins for compressed geometry. This writer swaps how the same content is stored:

- geometry: EXT_meshopt_compression on every vertex, index and instance buffer view, vertices
  first put in the order meshopt's vertex-cache and fetch optimisers pick:
  - POSITION: float32 metres through the EXPONENTIAL filter, one exponent per axis per primitive
    and POSITION_BITS-bit mantissas, so positions sit on a grid of step
    `position_step(max |coordinate|)` (a few millimetres at 1 m/px; `position_step`);
  - NORMAL: the OCTAHEDRAL filter, NORMAL_BITS bits: normalised BYTE VEC3 (KHR_mesh_quantization);
  - TEXCOORD_0: normalised UNSIGNED_SHORT (KHR_mesh_quantization), 1/65535 steps; float32 as it
    is where a primitive's uv leave 0..1 (roofs of the chunk's buildings that cross its edge);
  - _FEATURE_ID_0 (building and tree rows): UNSIGNED_SHORT integers, never normalised or filtered,
    so they read back exactly (FLOAT, exact below 2^24, only if a row exceeded 65535);
  - indices: the TRIANGLES codec;
  - tree instances (EXT_mesh_gpu_instancing TRANSLATION, ROTATION, SCALE, _FEATURE_ID_0): lossless,
    the same floats per tree as the default export (instances in ROTATION order), feature ids as
    UNSIGNED_SHORT.
- base colour (ortho and facade atlas): EXT_texture_webp at WEBP_QUALITY. CesiumJS, Cesium for
  Unreal (cesium-native) and three.js's GLTFLoader read it with the browser's or their own WebP
  decoder, no extra transcoder (KTX2/Basis needs one in each).
- untouched: the feature-ID texture (8-bit grey PNG, lossless), the EXT_structural_metadata
  property tables (plain views, 8-byte aligned, as GltfBuilder writes every view).

Encoding is deterministic (meshoptimizer's codecs and libwebp run single-threaded on the same
input), so a chunk gives the same bytes every time. Needs the `meshopt` package
(`pip install 'worldstream[compress]'`); `require_meshopt` says so when it is missing.
"""

from __future__ import annotations

import io
import json
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..core.errors import WorldstreamError
from .gltf import (ARRAY_BUFFER, BYTE, ELEMENT_ARRAY_BUFFER, FLOAT, UNSIGNED_INT, UNSIGNED_SHORT, GltfBuilder,
                   feature_id_array, padded_rows, read_glb)

POSITION_BITS = 16
NORMAL_BITS = 8
WEBP_QUALITY = 82
WEBP_METHOD = 4  # libwebp effort 0..6



def require_meshopt() -> ModuleType:
    """The `meshopt` module, or a WorldstreamError saying how to install it."""
    try:
        import meshopt
    except ImportError as exc:
        raise WorldstreamError(
            "compressed GLBs (--compress, MeshOptions(compress=True)) need the meshopt package "
            "(meshoptimizer's encoder, wheels for CPython >= 3.11): pip install 'worldstream[compress]' "
            f"or pip install meshopt ({exc})") from exc
    return meshopt


if TYPE_CHECKING:
    from .store import Store

EXPORT_MARKER = "export.json"  # a compressed store's record of how its GLBs are stored


def claim_store(store: "Store", compress: bool) -> None:
    """Check how a chunk store's GLBs are stored before generate or serve adds to it: they skip
    finished chunks, so plain and compressed GLBs would mix. A compressed store is marked by
    export.json ({"glb": "meshopt+webp"}, written here); a store without it holds plain GLBs, if
    any (plain runs write nothing, so their stores keep their files). Raises WorldstreamError on
    a mismatch."""
    marker = store.read(EXPORT_MARKER)
    if marker is not None:
        recorded = json.loads(marker).get("glb", "plain")
    elif compress:
        recorded = "plain" if store.has_chunk_glb() else None
    else:
        recorded = None
    storage = "meshopt+webp" if compress else "plain"
    if recorded not in (None, storage):
        raise WorldstreamError(f"{store.url()} holds {recorded} GLBs and this run would add {storage} ones; "
                               f"{'drop' if compress else 'add'} --compress, or use another folder")
    if compress and marker is None:
        store.write(EXPORT_MARKER, (json.dumps({"glb": storage}) + "\n").encode())


def position_step(max_abs: float) -> float:
    """The largest error of a coordinate of magnitude <= `max_abs` after the POSITION filter."""
    # the filter keeps POSITION_BITS-bit signed mantissas under the axis' largest exponent:
    # values below 2^e (frexp's e) land on a grid of 2^(e - bits + 1), half of it the worst error
    return float(np.ldexp(1.0, int(np.frexp(max(max_abs, 1e-30))[1]) - POSITION_BITS))


def encode_webp(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> lossy WebP bytes (deterministic for the same pixels)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, format="WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD, exact=False)
    return buf.getvalue()


class MeshoptWriter:
    """Writes primitives, tree instances and base-colour textures compressed into a GltfBuilder
    (the plain counterpart is chunk_glb.PlainWriter, with the same methods)."""

    def __init__(self) -> None:
        self.mo = require_meshopt()

    def _view(self, b: GltfBuilder, rows: np.ndarray, mode: str = "ATTRIBUTES", filter_: str | None = None,
              target: int | None = ARRAY_BUFFER) -> int:
        """Rows (ATTRIBUTES: (N, stride) bytes; TRIANGLES: the flat uint16/uint32 indices) as a compressed view."""
        stride = rows.shape[1] if mode == "ATTRIBUTES" else rows.dtype.itemsize
        return b.compressed_view(self.mo.encode_gltf_buffer(rows, mode), len(rows), stride, mode, filter_, target,
                                 vertex_stride=target == ARRAY_BUFFER)

    def primitive(self, b: GltfBuilder, positions: np.ndarray, normals: np.ndarray, uv: np.ndarray | None,
                  feature: np.ndarray | None, triangles: np.ndarray, feature_last: bool = False
                  ) -> tuple[dict[str, int], int]:
        """Accessors of one triangle primitive (glTF-frame float32 positions and normals, uv or
        None, per-vertex feature rows or None, (T, 3) triangles); returns (attributes, indices
        accessor). `feature_last` only matters to the plain writer's layout."""
        b.use_extension("KHR_mesh_quantization", required=True)
        tris, remap, unique = self.mo.reorder_mesh(np.ascontiguousarray(triangles, np.uint32).reshape(-1),
                                                   triangles=True, optsize=False)
        order = np.empty(unique, np.int64)
        used = remap != np.uint32(0xFFFFFFFF)
        order[remap[used]] = np.nonzero(used)[0]
        n = len(order)

        pos = np.ascontiguousarray(positions[order], np.float32)
        encoded = self.mo.encode_gltf_buffer(self.mo.encode_filter_exp(pos, POSITION_BITS, "SharedComponent"),
                                             "ATTRIBUTES")
        decoded = self.mo.decode_gltf_buffer(encoded, n, 12, "ATTRIBUTES", "EXPONENTIAL").view("<f4").reshape(n, 3)
        view = b.compressed_view(encoded, n, 12, "ATTRIBUTES", "EXPONENTIAL", ARRAY_BUFFER, vertex_stride=True)
        attributes = {"POSITION": b.raw_accessor(view, FLOAT, n, "VEC3", min_max=(
            [float(v) for v in decoded.min(axis=0)], [float(v) for v in decoded.max(axis=0)]))}

        nrm = np.zeros((n, 4), np.float32)
        nrm[:, :3] = normals[order]
        oct_rows = self.mo.encode_filter_oct(nrm, 4, NORMAL_BITS)
        attributes["NORMAL"] = b.raw_accessor(self._view(b, oct_rows, filter_="OCTAHEDRAL"), BYTE, n, "VEC3",
                                              normalized=True)
        if uv is not None and (uv.min() < 0.0 or uv.max() > 1.0):  # roofs past the chunk edge: exact floats
            attributes["TEXCOORD_0"] = b.raw_accessor(self._view(b, padded_rows(uv[order].astype("<f4"), 8)), FLOAT, n, "VEC2")
        elif uv is not None:
            q = np.round(uv[order] * 65535.0).astype("<u2")
            attributes["TEXCOORD_0"] = b.raw_accessor(self._view(b, padded_rows(q, 4)), UNSIGNED_SHORT, n, "VEC2",
                                                      normalized=True)
        if feature is not None:
            ids = feature_id_array(feature[order])
            attributes["_FEATURE_ID_0"] = b.raw_accessor(
                self._view(b, padded_rows(ids, 4)), UNSIGNED_SHORT if ids.dtype.kind == "u" else FLOAT, n, "SCALAR")
        index_type = np.uint16 if n < 65536 else np.uint32
        indices = self._view(b, tris.astype(index_type), "TRIANGLES", target=ELEMENT_ARRAY_BUFFER)
        return attributes, b.raw_accessor(indices, UNSIGNED_SHORT if index_type is np.uint16 else UNSIGNED_INT,
                                          len(tris), "SCALAR")

    def instances(self, b: GltfBuilder, attributes: dict[str, np.ndarray]) -> dict[str, int]:
        """EXT_mesh_gpu_instancing accessors, losslessly compressed: float arrays as they are,
        `_FEATURE_ID_*` as integers. The instances are put in ROTATION order (stable), so the few
        distinct turns of the trees sit together and cost almost nothing; every instance keeps its
        exact values and its feature id. Views are tightly packed (no byteStride), so a 2-byte id
        array is encoded as rows of 4 bytes over its zero-padded bytes."""
        out = {}
        if "ROTATION" in attributes:
            rot = np.ascontiguousarray(attributes["ROTATION"], "<f4")
            order = np.lexsort(rot.view("<u4").T[::-1])  # by the bits, first component first; ties keep their order
            attributes = {name: np.asarray(a)[order] for name, a in attributes.items()}
        for name, a in attributes.items():
            a = feature_id_array(a) if name.startswith("_FEATURE_ID_") else np.ascontiguousarray(a, "<f4")
            comps = 1 if a.ndim == 1 else a.shape[1]
            raw = a.tobytes()
            raw += b"\0" * (-len(raw) % 4)
            rows = np.frombuffer(raw, np.uint8).reshape(-1, 4 if a.itemsize * comps % 4 else a.itemsize * comps)
            component = {"u": UNSIGNED_SHORT, "f": FLOAT}[a.dtype.kind]
            out[name] = b.raw_accessor(self._view(b, rows, target=None), component, len(a),
                                       {1: "SCALAR", 3: "VEC3", 4: "VEC4"}[comps])
        return out

    def base_colour(self, b: GltfBuilder, rgb: np.ndarray, sampler: int, name: str) -> int:
        return b.texture(encode_webp(rgb), "image/webp", sampler, name, extension="EXT_texture_webp")


def decode_glb(data: bytes) -> tuple[dict, bytes]:
    """A GLB's (document, binary chunk) with every EXT_meshopt_compression view decoded into a
    plain view of the returned binary (the fallback buffer and the extension dropped), for readers
    without the extension (gltf.accessor_array). Quantised attributes stay quantised
    (KHR_mesh_quantization: normalised integers). A GLB without compressed views comes back as is."""
    doc, binary = read_glb(data)
    views = doc.get("bufferViews", [])
    if not any("EXT_meshopt_compression" in v.get("extensions", {}) for v in views):
        return doc, binary
    mo = require_meshopt()
    out = bytearray(binary)
    for v in views:
        ext = v.get("extensions", {}).pop("EXT_meshopt_compression", None)
        if ext is None:
            continue
        if not v["extensions"]:
            del v["extensions"]
        src = binary[ext.get("byteOffset", 0):ext.get("byteOffset", 0) + ext["byteLength"]]
        decoded = mo.decode_gltf_buffer(src, ext["count"], ext["byteStride"], ext["mode"], ext.get("filter", "NONE"))
        out.extend(b"\0" * (-len(out) % 8))
        v["buffer"], v["byteOffset"] = 0, len(out)
        out.extend(np.ascontiguousarray(decoded).tobytes()[:v["byteLength"]])
    out.extend(b"\0" * (-len(out) % 8))
    doc["buffers"] = [{"byteLength": len(out)}]
    for key in ("extensionsUsed", "extensionsRequired"):
        if key in doc:
            doc[key] = [e for e in doc[key] if e != "EXT_meshopt_compression"]
    return doc, bytes(out)
