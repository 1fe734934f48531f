"""One avatar as one mesh for the renderer: head, hair shell, bust and long hair, one atlas.

The renderer draws one vertex array with one texture, so the layers are stacked: vertices
[head | hair | bust | curtain], faces offset to match, and the atlas [head texture | bust
texture over curtain texture] side by side (the hair shell shows the head texture, see
head/hair.py). Per frame only the vertices change: the head deformed and posed, the hair on
the skin under it turned with the head bone, the bust shaped under the head and welded to
it, the curtain of long hair turned with the head bone.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..head.bust import BustModel
from ..head.hair import HairShell
from ..head.hair_curtain import HairCurtain, grid_faces
from ..head.model import HeadModel
from ..motion.frame import MotionFrame
from ..motion.pose import quat_to_matrix


class AvatarMesh:
    def __init__(self, head: HeadModel, identity: np.ndarray, texture: np.ndarray,
                 hair: HairShell | None = None, bust: BustModel | None = None,
                 bust_texture: np.ndarray | None = None, shoulders: np.ndarray | None = None,
                 curtain: HairCurtain | None = None):
        self.head, self.identity, self.hair, self.shoulders = head, identity, hair, shoulders
        self.bust = bust if bust is not None and bust_texture is not None else None
        self.curtain = curtain
        self._hair_count = hair.num_vertices if hair is not None else 0
        self.texture, scale_head, place_bust, place_curtain = _atlas(
            texture, bust_texture if self.bust else None, curtain.texture if curtain is not None else None)
        faces, uvs, glossy = [head.faces], [head.face_uvs * scale_head], [head.glossy_faces]
        if hair is not None:
            faces.append(hair.faces + head.num_vertices)
            uvs.append(hair.face_uvs * scale_head)
            glossy.append(np.full(len(hair.faces), -1))
        if self.bust is not None:
            faces.append(self.bust.faces + head.num_vertices + self._hair_count)
            uvs.append(place_bust(self.bust.face_uvs))
            glossy.append(np.full(len(self.bust.faces), -1))
        if curtain is not None:
            curtain_faces, curtain_uvs = grid_faces()
            faces.append(curtain_faces + head.num_vertices + self._hair_count
                         + (self.bust.num_vertices if self.bust is not None else 0))
            uvs.append(place_curtain(curtain_uvs))
            glossy.append(np.full(len(curtain_faces), -1))
        self.faces = np.concatenate(faces).astype(np.int32)
        self.face_uvs = np.concatenate(uvs).astype(np.float32)
        self.glossy_faces = np.concatenate(glossy).astype(np.int64)

    def vertices(self, motion: MotionFrame) -> np.ndarray:
        """[N, 3] every layer deformed and posed by `motion` (world, metres)."""
        head = self.head
        shaped = head.shape(self.identity, motion.arkit, motion.eye_gaze)
        rotation = quat_to_matrix(motion.head_rotation)
        posed = head.pose(shaped, rotation, motion.head_translation)

        def on_head_bone(points: np.ndarray) -> np.ndarray:
            pivot = head.head_pivot
            turned = (points - pivot) @ np.asarray(rotation, np.float32).T + pivot
            return turned + np.asarray(motion.head_translation, np.float32)

        parts = [posed]
        if self.hair is not None:
            # The hair rides on the skin under it (a fringe follows a raised brow).
            parts.append(on_head_bone(self.hair.vertices(shaped)))
        if self.bust is not None:
            body = self.bust.shape(shaped, self.identity, motion.arkit, self.shoulders)
            parts.append(self.bust.pose(body, posed, head, rotation, motion.head_translation))
        if self.curtain is not None:
            parts.append(on_head_bone(self.curtain.vertices()))
        return np.concatenate(parts) if len(parts) > 1 else posed

    def around(self, head_vertices: np.ndarray) -> np.ndarray:
        """[N, 3] the layers at rest around unposed head vertices [V, 3] (a face being
        measured: the hair as at rest, the bust welded to this head's neck)."""
        parts = [head_vertices]
        if self.hair is not None:
            parts.append(self.hair.vertices(head_vertices))
        if self.bust is not None:
            parts.append(self.bust.shape(head_vertices, self.identity, None, self.shoulders))
        if self.curtain is not None:
            parts.append(self.curtain.vertices())
        return np.concatenate(parts) if len(parts) > 1 else head_vertices


# Rows between the bust's and the curtain's squares in the atlas: bilinear sampling at one
# square's edge must not pick up the other's colours.
GUTTER = 2


def _atlas(head_texture: np.ndarray, bust_texture: np.ndarray | None, curtain_texture: np.ndarray | None):
    """(atlas [T, T + T/2, 3], UV scale for the head's layout, UV maps for the bust's and
    the curtain's).

    The bust's square sits top right at half the head texture's side, the curtain's under it.
    """
    if bust_texture is None and curtain_texture is None:
        return head_texture, np.ones(2, np.float32), None, None
    side = head_texture.shape[0]
    half = side // 2
    atlas = np.zeros((side, side + half, 3), np.uint8)
    atlas[:, :side] = head_texture[..., :3]
    if bust_texture is not None:
        small = cv2.resize(bust_texture[..., :3], (half, half), interpolation=cv2.INTER_AREA)
        atlas[:half, side:] = small
        atlas[half:, side:] = small[-1:]  # below it: its bottom row (bilinear bleed stays in tone)
    if curtain_texture is not None:
        atlas[half + GUTTER:, side:] = cv2.resize(curtain_texture[..., :3], (half, half - GUTTER),
                                                  interpolation=cv2.INTER_AREA)
    width = side + half
    head_scale = np.array([side / width, 1.0], np.float32)

    def place_bust(face_uvs: np.ndarray) -> np.ndarray:
        out = face_uvs.copy()
        out[..., 0] = (side + face_uvs[..., 0] * half) / width
        out[..., 1] = 0.5 + 0.5 * face_uvs[..., 1]
        return out

    def place_curtain(face_uvs: np.ndarray) -> np.ndarray:
        out = face_uvs.copy()
        out[..., 0] = (side + face_uvs[..., 0] * half) / width
        out[..., 1] = face_uvs[..., 1] * (half - GUTTER) / side
        return out

    return atlas, head_scale, place_bust, place_curtain
