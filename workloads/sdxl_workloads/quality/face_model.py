"""dlib's face detector and ResNet face-recognition model: a 128-d embedding of the face in an image.

The weights come from the `face-recognition-models` package (the files of dlib's model zoo) or from
a folder holding the same two files. dlib's embeddings are trained so that two photos of one person
lie less than 0.6 apart (Euclidean), which makes them a measure of identity rather than of look.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdxl_workloads.quality.model_unavailable import ModelUnavailable
from sdxl_workloads.quality.upright_rgb import upright_rgb

# Names the weights of the installed `face-recognition-models` package rather than a folder.
INSTALLED_FACE_MODELS = "face-recognition-models"

# The 5-point landmarks are what dlib's ResNet model aligns its face chips with (dlib's own
# face_recognition example uses them); the 68-point file is four times larger for the same chip.
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

# Upsample once before detecting: the HOG detector's smallest face is about 80 px, and a subject
# seen from afar in a 1024 px image can be smaller.
DETECTION_UPSAMPLE = 1


def installed_face_models_dir() -> Path:
    """The `models/` folder of the installed face-recognition-models package.

    Found without importing the package: its __init__ imports pkg_resources, which setuptools no
    longer ships (81+), though the weight files themselves are fine."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("face-recognition-models is not installed (pip install 'sdxl-operator[quality]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class FaceModel:
    detector: Any  # dlib.fhog_object_detector
    shape_predictor: Any  # dlib.shape_predictor (5 landmarks)
    recognizer: Any  # dlib.face_recognition_model_v1

    @classmethod
    def load(cls, models: str = INSTALLED_FACE_MODELS) -> FaceModel:
        """Load from the installed package or a folder with the two .dat files; ModelUnavailable
        (with the reason) when dlib or a file is missing."""
        folder = installed_face_models_dir() if models == INSTALLED_FACE_MODELS else Path(models).expanduser()
        missing = [name for name in (SHAPE_PREDICTOR_FILE, RECOGNITION_MODEL_FILE) if not (folder / name).is_file()]
        if missing:
            raise ModelUnavailable(f"face model file {missing[0]} is not in {folder}")
        try:
            import dlib
        except ImportError as error:
            raise ModelUnavailable("dlib is not installed (pip install 'sdxl-operator[quality]')") from error
        try:
            return cls(
                detector=dlib.get_frontal_face_detector(),
                shape_predictor=dlib.shape_predictor(str(folder / SHAPE_PREDICTOR_FILE)),
                recognizer=dlib.face_recognition_model_v1(str(folder / RECOGNITION_MODEL_FILE)),
            )
        except RuntimeError as error:  # dlib's error for a file it cannot deserialize
            raise ModelUnavailable(f"face models in {folder} could not be loaded: {error}") from error

    def face_embedding(self, image: Image.Image) -> np.ndarray | None:
        """The 128-d embedding of the largest face in `image` (the subject, in a portrait), or None
        when no face is detected."""
        pixels = np.ascontiguousarray(np.asarray(upright_rgb(image), dtype=np.uint8))
        faces = self.detector(pixels, DETECTION_UPSAMPLE)
        if len(faces) == 0:
            return None
        largest = max(faces, key=lambda face: face.area())
        landmarks = self.shape_predictor(pixels, largest)
        return np.asarray(self.recognizer.compute_face_descriptor(pixels, landmarks), dtype=np.float64)
