"""The data engine (issue 18): UAV views of the generated world with 3D ground truth and
spatial-reasoning QA in five families (spatial, morphology, counting, geometry, caption), as
MetaEarth3D builds from its explicit scenes; `worldstream dataset build | eval | baseline`.

scenes.py picks scene sites over relief and land-cover types; trajectories.py flies random 6-DOF
camera paths; build.py renders them (render.Renderer through a per-scene WorldView) and writes scene
folders atomically; objects.py and visibility.py turn the world's annotations and the instance
image into visible objects; facts.py measures a frame; qa.py asks the questions; balance.py thins
them so no answer dominates; writer.py writes the chat JSONL, card and example picture;
evaluate.py and rouge.py score predictions. Layout and formats: docs/dataset.md."""

from .build import BuildSettings, build
from .evaluate import evaluate, evaluate_files, majority_predictions
from .scenes import DatasetError, Site
from .trajectories import Ranges

__all__ = ["BuildSettings", "DatasetError", "Ranges", "Site", "build", "evaluate", "evaluate_files",
           "majority_predictions"]
