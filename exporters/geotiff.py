"""Georeferencing in the world's own frame: float32 GeoTIFFs of height grids, and GDAL side files
(.aux.xml) for the PNG layers.

The world frame is local ENU at the geodetic anchor; on the map plane that is the orthographic
projection centred on the anchor (EPSG method 9840: ENU east/north of points on the ellipsoid),
written as user-defined GeoKeys so GDAL / QGIS / rasterio place the tile on the globe without a
side file. Samples are points (RasterPixelIsPoint): sample [0, 0] is the chunk's north-west corner.
PNG layers cannot hold GeoKeys: each gets a PAM side file (`NAME.png.aux.xml`, which GDAL, QGIS and
rasterio read) with the same projection as WKT and the layer's geotransform; their pixels are
areas, pixel [0, 0]'s north-west corner at the chunk's.
"""

from __future__ import annotations

import io

import numpy as np
import tifffile

from ..core.spec import GeoOrigin

# GeoTIFF 1.0 key ids and codes
_GT_MODEL_TYPE, _GT_RASTER_TYPE, _GT_CITATION = 1024, 1025, 1026
_GEOGRAPHIC_TYPE = 2048
_PROJECTED_CS_TYPE, _PROJECTION, _PROJ_COORD_TRANS, _PROJ_LINEAR_UNITS = 3072, 3074, 3075, 3076
_PROJ_NAT_ORIGIN_LONG, _PROJ_NAT_ORIGIN_LAT, _PROJ_FALSE_EASTING, _PROJ_FALSE_NORTHING = 3080, 3081, 3082, 3083
_MODEL_PROJECTED, _PIXEL_IS_POINT, _GCS_WGS84, _USER_DEFINED, _CT_ORTHOGRAPHIC, _LINEAR_METER = 1, 2, 4326, 32767, 21, 9001
_TAG_PIXEL_SCALE, _TAG_TIEPOINT, _TAG_GEOKEYS, _TAG_GEODOUBLES, _TAG_GEOASCII, _TAG_NODATA = (
    33550, 33922, 34735, 34736, 34737, 42113)


def geokeys(origin: GeoOrigin) -> tuple[list[int], list[float], str]:
    """(GeoKeyDirectory shorts, GeoDoubleParams, GeoAsciiParams) for the world frame at `origin`."""
    citation = "worldstream local ENU (orthographic at world origin)|"
    doubles = [float(origin.lon), float(origin.lat), 0.0, 0.0]
    keys = [
        (_GT_MODEL_TYPE, 0, 1, _MODEL_PROJECTED),
        (_GT_RASTER_TYPE, 0, 1, _PIXEL_IS_POINT),
        (_GT_CITATION, _TAG_GEOASCII, len(citation), 0),
        (_GEOGRAPHIC_TYPE, 0, 1, _GCS_WGS84),
        (_PROJECTED_CS_TYPE, 0, 1, _USER_DEFINED),
        (_PROJECTION, 0, 1, _USER_DEFINED),
        (_PROJ_COORD_TRANS, 0, 1, _CT_ORTHOGRAPHIC),
        (_PROJ_LINEAR_UNITS, 0, 1, _LINEAR_METER),
        (_PROJ_NAT_ORIGIN_LONG, _TAG_GEODOUBLES, 1, 0),
        (_PROJ_NAT_ORIGIN_LAT, _TAG_GEODOUBLES, 1, 1),
        (_PROJ_FALSE_EASTING, _TAG_GEODOUBLES, 1, 2),
        (_PROJ_FALSE_NORTHING, _TAG_GEODOUBLES, 1, 3),
    ]
    directory = [1, 1, 0, len(keys)]
    for k in keys:
        directory.extend(k)
    return directory, doubles, citation


def encode_height_geotiff(grid: np.ndarray, west: float, north: float, resolution: float,
                          origin: GeoOrigin) -> bytes:
    """grid: (H, W) float32 metres, row 0 north. Returns the bytes of a georeferenced GeoTIFF."""
    grid = np.ascontiguousarray(grid, dtype=np.float32)
    if grid.ndim != 2:
        raise ValueError(f"expected a 2-D height grid, got shape {grid.shape}")
    directory, doubles, citation = geokeys(origin)
    extratags = [
        (_TAG_PIXEL_SCALE, "d", 3, (resolution, resolution, 0.0), True),
        (_TAG_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, float(west), float(north), 0.0), True),
        (_TAG_GEOKEYS, "H", len(directory), tuple(directory), True),
        (_TAG_GEODOUBLES, "d", len(doubles), tuple(doubles), True),
        (_TAG_GEOASCII, "s", 0, citation, True),
    ]
    buf = io.BytesIO()
    tifffile.imwrite(buf, grid, photometric="minisblack", compression="zlib",
                     extratags=extratags, metadata=None)
    return buf.getvalue()


def orthographic_wkt(origin: GeoOrigin) -> str:
    """The world frame as WKT 1: the orthographic projection on WGS 84 centred on `origin`."""
    return ('PROJCS["worldstream local ENU (orthographic at world origin)",GEOGCS["WGS 84",DATUM["WGS_1984",'
            'SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
            f'PROJECTION["Orthographic"],PARAMETER["latitude_of_origin",{float(origin.lat)!r}],'
            f'PARAMETER["central_meridian",{float(origin.lon)!r}],PARAMETER["false_easting",0],'
            'PARAMETER["false_northing",0],UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]')


def encode_pam(west: float, north: float, pixel_size: float, origin: GeoOrigin) -> bytes:
    """The .aux.xml side file of an image layer whose pixel [0, 0]'s north-west corner lies at
    (west, north) world metres, `pixel_size` metres a pixel."""
    transform = ", ".join(repr(float(v)) for v in (west, pixel_size, 0.0, north, 0.0, -pixel_size))
    return (f'<PAMDataset>\n  <SRS dataAxisToSRSAxisMapping="1,2">{orthographic_wkt(origin)}</SRS>\n'
            f'  <GeoTransform>{transform}</GeoTransform>\n</PAMDataset>\n').encode()
