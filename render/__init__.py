"""One renderer for every camera: chunk meshes rasterized with OpenGL on a headless EGL context.

`RenderChunk` (scene.py) is a chunk's drawable surfaces, built from the exporters' in-memory mesh
or from the GLB bytes they write; `Renderer` (renderer.py) draws a set of them from a `Pose` with
`Intrinsics` (camera.py) in one pass into colour, planar depth, class, instance and normal targets,
drawing only the tiles of each chunk that meet the view frustum (culling.py);
images.py turns that `Frame` into AirSim's image types; view.py picks the chunks a camera needs
(the streaming server's screen-space-error selection) and fetches them through the chunk service.
"""

from .camera import Intrinsics, Pose
from .context import RenderError
from .images import IMAGE_TYPES, SEGMENTATION_RGB, image_of
from .renderer import NO_HIT_DEPTH, Frame, Renderer
from .scene import RenderChunk

__all__ = ["IMAGE_TYPES", "NO_HIT_DEPTH", "SEGMENTATION_RGB", "Frame", "Intrinsics", "Pose", "RenderChunk",
           "RenderError", "Renderer", "image_of"]
