"""The `fit` reconstructor: photo -> parametric head fitted to landmarks + baked UV texture."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..avatar import Avatar
from ..faces.bands import content_mask, find_bands
from ..faces.detector import FaceAnalyzer
from ..faces.image import fit_within
from ..faces.hair_matte import hair_matte
from ..faces.occluders import hands_mask
from ..head.bust import load_bust_model
from ..head.hair import hair_shell
from ..head.hair_curtain import grid_faces, stored_curtain
from ..head.landmarks import LandmarkEmbedding, load_landmark_embedding
from ..head.model import HeadModel, load_head_model
from ..mesh.geometry import joined
from ..motion.response import GREY, measure_view_bias
from ..render.avatar_mesh import AvatarMesh
from ..render.camera import Camera
from ..render.mesh_renderer import MeshRenderer
from .bust_fit import bake_bust, fit_hair, fit_shoulders
from .fit import LandmarkFitter, photo_camera
from .hair_curtain_fit import bake_curtain, fit_curtain
from .face_parts import iris_colour
from .portrait4d_source import face_crop
from .texture import bake_texture, bake_views, current_texture, texel_map
from .views import View

if TYPE_CHECKING:  # torch: imported only when a volume is refined
    from .volume_refine import VolumeRefineConfig

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]
PHOTO_FOV_DEG = 12.0  # assumed: landmarks fix pose and shape; the FOV only sets how far away
WORK_SIDE = 1024      # photos are reduced to this many pixels per side before fitting
TEXTURE_SIZE = 1024


class FitReconstructor:
    name = "fit"

    def __init__(self, analyzer: FaceAnalyzer, head: HeadModel | None = None,
                 embedding: LandmarkEmbedding | None = None):
        self.analyzer = analyzer
        self.head = head or load_head_model()
        self.fitter = LandmarkFitter(self.head, embedding or load_landmark_embedding())
        self.bust = load_bust_model()
        texel_map(self.head, TEXTURE_SIZE)  # ~0.3 s once per process, not per avatar

    def create(self, rgb: np.ndarray, avatar_id: str, name: str = "",
               progress: Progress = lambda stage, fraction: None,
               crop_size: int | None = None, more_views: Sequence[View] = (),
               refine: VolumeRefineConfig | None = None) -> Avatar:
        """RGB uint8 [H, W, 3] -> Avatar (raises NoFaceFound).

        crop_size: also keep the face crop a learned reconstructor's encoders read, as
        tensor `source_image` [crop_size, crop_size, 3].
        more_views: other views of the same face (few-shot, `views.choose_views`): one
        identity is fitted to all of them and the texture fused from all; hair and bust
        come from `rgb`, the main view.
        refine: also fit a per-person radiance field to the views (`volume_refine.py`).
        """
        rgb = fit_within(rgb, WORK_SIDE)
        h, w = rgb.shape[:2]
        progress("landmarks", 0.1)
        face = self.analyzer.landmarks(rgb)
        if face.num_faces > 1:
            log.info("%d faces found; using the largest (box %s)", face.num_faces,
                     tuple(round(v) for v in face.box))
        bands = find_bands(rgb)
        hands = self.analyzer.hands(rgb)
        # Only the person, inside the image, off letterbox bands and not behind a hand
        # counts as seen; the rest is filled (mirror twin, then tone fill).
        person = self.analyzer.matte(rgb)
        matte = person * content_mask(rgb, bands) * (1 - hands_mask(rgb.shape[:2], hands))
        progress("fit", 0.3)
        camera = photo_camera(w, h, PHOTO_FOV_DEG)
        if more_views:
            cameras = [camera] + [photo_camera(v.rgb.shape[1], v.rgb.shape[0], PHOTO_FOV_DEG) for v in more_views]
            _, fits = self.fitter.fit_views([face.landmarks] + [v.face.landmarks for v in more_views], cameras)
            fit = fits[0]
        else:
            fit = self.fitter.fit(face.landmarks, camera)
            fits = [fit]
        progress("hair and shoulders", 0.5)
        rotation, translation = fit.rotation.astype(np.float32), fit.translation.astype(np.float32)
        shaped = self.head.shape(fit.identity, fit.expression)
        hair = hair_matte(rgb, face.landmarks, person)
        hair_offset = fit_hair(self.head, shaped, rotation, translation, camera, hair)
        # The photo is baked onto the scalp raised to the hair: hair texels land where the
        # shell shows them.
        rest = self.head.shape(fit.identity)
        lifted = shaped + hair_offset[:, None] * rest / np.linalg.norm(rest, axis=1, keepdims=True)
        head_placed = lifted @ rotation.T + translation
        progress("texture", 0.6)
        if more_views:
            views = [(head_placed, rgb, camera, matte)] + [
                self._placed_view(v, f, c, hair_offset, rest) for v, f, c in zip(more_views, fits[1:], cameras[1:])]
            texture = bake_views(self.head, views, TEXTURE_SIZE, iris=iris_colour(rgb, face.landmarks))
        else:
            texture = bake_texture(self.head, head_placed, rgb, camera, matte, TEXTURE_SIZE,
                                   iris=iris_colour(rgb, face.landmarks))
        bust_tensors = self._fit_bust_and_curtain(shaped, lifted, fit, camera, rgb,
                                                  person * content_mask(rgb, bands), head_placed, hair)
        volume, volume_report = {}, None
        if refine is not None:
            volume, volume_report = self._refine_volume(
                refine, [(rgb, face.landmarks, fit, person)] + [
                    (v.rgb, v.face.landmarks, f, self.analyzer.matte(v.rgb)) for v, f in zip(more_views, fits[1:])],
                fit.identity, texture, hair_offset, progress)
        progress("calibrate", 0.85)
        bias = self.landmark_bias(avatar_mesh(self.head, {
            "identity": fit.identity, "texture": texture, "hair_offset": hair_offset, **bust_tensors}, {}))
        progress("done", 1.0)
        tensors = {
            "identity": fit.identity,
            "texture": texture,
            "source_expression": fit.expression,
            "source_rotation": fit.rotation.astype(np.float32),
            "source_translation": fit.translation.astype(np.float32),
            "landmark_bias": bias,
            "hair_offset": hair_offset.astype(np.float32),
            **bust_tensors,
            **volume,
        }
        if crop_size is not None:
            tensors["source_image"] = face_crop(rgb, face.landmarks, crop_size)
        return Avatar(
            id=avatar_id, name=name, reconstructor=self.name, created_at=time.time(),
            tensors=tensors,
            meta={
                "image_size": [w, h],
                "photo_fov_deg": PHOTO_FOV_DEG,
                "faces_found": face.num_faces,
                "letterbox_px": [bands.top, bands.bottom, bands.left, bands.right],
                "hands_found": len(hands),
                "landmark_error_px_median": float(np.median(fit.error_px)),
                "head_vertices": self.head.num_vertices,
                **({"volume": volume_report} if volume_report else {}),
            })

    def _refine_volume(self, config: VolumeRefineConfig, views, identity, texture, hair_offset,
                       progress: Progress) -> dict:
        """The refined field's tensors (see volume_refine.py); its report goes in meta."""
        from dataclasses import asdict

        from .volume_refine import RefineView, field_tensors, refine_volume

        training = []
        for rgb, landmarks, fit, person in views:
            h, w = rgb.shape[:2]
            head = hair_matte(rgb, landmarks, person).head
            background = person < 0.5
            camera = head_camera(fit.rotation, fit.translation, PHOTO_FOV_DEG, w, h)
            training.append(RefineView(rgb, camera, head.astype(np.float32),
                                       (head | background).astype(np.float32)))
        guide = AvatarMesh(self.head, identity, texture, hair=hair_shell(self.head, hair_offset))
        field_, report = refine_volume(training, guide, config,
                                       lambda f: progress("volume refine", 0.72 + 0.12 * f))
        log.info("volume refine: %d steps in %.1f s (%.0f ms/step on %s), loss %.4f -> %.4f",
                 report.steps, report.seconds, report.ms_per_step, report.device,
                 report.first_loss, report.final_loss)
        return field_tensors(field_), {k: v for k, v in asdict(report).items() if k != "config"}

    def _placed_view(self, view: View, fit, camera: Camera, hair_offset: np.ndarray, rest: np.ndarray):
        """(vertices, photo, camera, matte) of one more view, for the texture's fusion."""
        shaped = self.head.shape(fit.identity, fit.expression)
        lifted = shaped + hair_offset[:, None] * rest / np.linalg.norm(rest, axis=1, keepdims=True)
        placed = lifted @ fit.rotation.T.astype(np.float32) + fit.translation.astype(np.float32)
        matte = (self.analyzer.matte(view.rgb) * content_mask(view.rgb, find_bands(view.rgb))
                 * (1 - hands_mask(view.rgb.shape[:2], self.analyzer.hands(view.rgb))))
        return placed, view.rgb, camera, matte

    def _fit_bust_and_curtain(self, shaped: np.ndarray, lifted: np.ndarray, fit, camera: Camera,
                              rgb: np.ndarray, matte: np.ndarray, head_placed: np.ndarray, hair) -> dict:
        """{"shoulder_widths", "bust_texture"} for the photo, and {"hair_curtain",
        "hair_curtain_texture"} when its hair hangs beside the neck on both sides; {} without a
        bust model."""
        if self.bust is None:
            return {}
        rotation, translation = fit.rotation.astype(np.float32), fit.translation.astype(np.float32)

        def place(shoulders):
            return self.bust.shape(shaped, fit.identity, fit.expression, shoulders) @ rotation.T + translation

        shoulders = fit_shoulders(self.bust, place(None), camera, matte)
        body = place(shoulders)
        out = {"shoulder_widths": shoulders}
        occluders = [(head_placed, self.head.faces)]
        grid = fit_curtain(lifted, rotation, translation, camera, hair)
        if grid is not None:
            out["hair_curtain"] = grid
            out["hair_curtain_texture"] = bake_curtain(grid, rotation, translation,
                                                       occluders + [(body, self.bust.faces)], rgb, camera, hair)
            # Hair hanging in front of the shoulders is the curtain's, not the clothes'.
            occluders.append((grid.reshape(-1, 3) @ rotation.T + translation, grid_faces()[0]))
        out["bust_texture"] = bake_bust(self.bust, body, joined(occluders), rgb, camera, matte)
        return out

    def landmark_bias(self, mesh: AvatarMesh) -> np.ndarray:
        """[478, 3] where the detector sees this avatar's neutral landmarks, minus the model's.

        The motion solver adds it to the model's landmarks, so that what is solved is the
        change from this face's own neutral reading, not the detector's habits on it.
        """
        renderer = MeshRenderer(mesh.faces, mesh.face_uvs, mesh.texture)
        bias, _, _ = measure_view_bias(
            self.head, self.fitter.embedding, self.analyzer, self.head.shape(mesh.identity),
            lambda vertices, camera: renderer.render(mesh.around(vertices), camera, GREY).rgba[..., :3],
            azimuths_deg=(0.0,), elevations_deg=(0.0,))
        return bias[0, 0]


def source_camera(avatar: Avatar) -> Camera:
    """The camera that took the avatar's photo, in the avatar's world (head at rest): what
    renders the avatar over its own photo (the photo reduced to `meta["image_size"]`)."""
    w, h = avatar.meta["image_size"]
    return head_camera(avatar.tensors["source_rotation"], avatar.tensors["source_translation"],
                       float(avatar.meta.get("photo_fov_deg", PHOTO_FOV_DEG)), int(w), int(h))


def head_camera(rotation: np.ndarray, translation: np.ndarray, fov_y_deg: float, width: int,
                height: int) -> Camera:
    """A photo's camera in the head's world, from the fit's head-to-camera rotation [3, 3]
    and translation [3]."""
    rotation = np.asarray(rotation, np.float64)
    c2w = np.eye(4)
    c2w[:3, :3] = rotation.T           # the head-to-camera transform, inverted
    c2w[:3, 3] = -rotation.T @ np.asarray(translation, np.float64)
    return Camera(c2w, fov_y_deg, width, height)


def avatar_mesh(head: HeadModel, tensors: dict, meta: dict) -> AvatarMesh:
    """A fit avatar's layers as one mesh (the head alone for avatars made before hair and
    bust existed)."""
    offset = tensors.get("hair_offset")
    return AvatarMesh(head, tensors["identity"], current_texture(head, tensors["texture"], meta),
                      hair=hair_shell(head, offset) if offset is not None else None,
                      bust=load_bust_model(), bust_texture=tensors.get("bust_texture"),
                      shoulders=tensors.get("shoulder_widths"), curtain=stored_curtain(tensors))
