"""Texture bake cleanliness: letterbox bands and hands are never baked as seen skin or hair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from avatar_runtime.faces.bands import Bands, content_mask, find_bands
from avatar_runtime.reconstruct.face_parts import mouth_cavity
from avatar_runtime.reconstruct.fit import photo_camera
from avatar_runtime.reconstruct.fit_reconstructor import PHOTO_FOV_DEG, TEXTURE_SIZE
from avatar_runtime.reconstruct.texture import _sample, bake_texture, texel_map

from texture_cases import with_hand, with_top_band

LUMA = np.array([0.299, 0.587, 0.114])


def _jpeg(rgb: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_bands_are_found_at_each_edge_and_nowhere_else():
    photo = data.astronaut()
    assert find_bands(photo) == Bands()
    boxed = np.pad(photo, ((40, 24), (30, 18), (0, 0)))                   # letterbox + pillarbox
    found = find_bands(_jpeg(boxed))
    print(found)
    for got, want in zip((found.top, found.bottom, found.left, found.right), (40, 24, 30, 18)):
        assert want - 2 <= got <= want + 1
    grey = np.pad(photo, ((0, 0), (50, 0), (0, 0)), constant_values=128)  # a flat grey bar
    assert abs(find_bands(grey).left - 50) <= 1
    mask = content_mask(boxed)
    assert mask[:40].max() == 0 and mask[:, -18:].max() == 0 and mask[300, 300] == 1


def _bake(reconstructor, rgb, matte_only: bool = False) -> np.ndarray:
    """[N, 3] covered texels of the avatar made from `rgb`; matte_only: the bake as it was
    before bands and hands were left out (the person matte alone)."""
    tm = texel_map(reconstructor.head, TEXTURE_SIZE)
    if matte_only:
        analyzer, head = reconstructor.analyzer, reconstructor.head
        camera = photo_camera(rgb.shape[1], rgb.shape[0], PHOTO_FOV_DEG)
        fit = reconstructor.fitter.fit(analyzer.landmarks(rgb).landmarks, camera)
        texture = bake_texture(head, fit.vertices(head), rgb, camera, analyzer.matte(rgb), TEXTURE_SIZE)
    else:
        texture = reconstructor.create(rgb, "test").tensors["texture"]
    return texture.reshape(-1, 3)[tm.texels].astype(np.float64)


def test_a_black_band_over_the_crown_bakes_no_dark_cap(service):
    """A letterbox band that cuts into the top of the head: the crown gets the hair's tone
    (what the photo shows of the hair), not the band's black."""
    rec = service.reconstructor
    head, tm = rec.head, texel_map(rec.head, TEXTURE_SIZE)
    points = tm.surface @ head.template.astype(np.float64)
    crown = (tm.scalp > 0.95) & (points[:, 1] > 0.06)
    clean = _bake(rec, data.astronaut())
    hair_luma = np.median(clean[tm.scalp > 0.9] @ LUMA)
    banded_photo = with_top_band(data.astronaut(), covered=55, added=40)
    for name, baked in (("band, matte only", _bake(rec, banded_photo, matte_only=True)),
                        ("band", _bake(rec, banded_photo))):
        luma = baked[crown] @ LUMA
        print(f"{name}: crown median luma {np.median(luma):.1f} (hair {hair_luma:.1f}), "
              f"darker than 40: {np.mean(luma < 40):.1%}")
    assert np.mean(luma < 40) < 0.05, "no black cap"
    # Nearer the hair than black by a margin (the crown the band hides was the hair's
    # brightest part, so the fill from the rest of the hair is a little darker).
    assert np.median(luma) > 0.55 * hair_luma, "the crown is near the hair tone"


@pytest.fixture(scope="module")
def hand_case(service):
    photo = data.astronaut()
    landmarks = service.analyzer.landmarks(photo).landmarks
    occluded, hand = with_hand(photo, landmarks)
    return photo, landmarks, occluded, hand


def test_hands_are_found_only_where_there_are_some(service, hand_case):
    photo, _, occluded, hand = hand_case
    assert service.analyzer.hands(photo) == []
    (found,) = service.analyzer.hands(occluded)
    inside = _sample(hand[..., None], found)[:, 0] > 0.5
    assert inside.mean() > 0.8, "the hand's landmarks sit on the pasted hand"


def test_a_hand_over_the_jaw_is_not_baked(service, hand_case):
    """A skin-coloured hand over the chin and jaw: the texels it hides are filled from
    the rest of the face, not copied from the hand."""
    photo, landmarks, occluded, hand = hand_case
    rec = service.reconstructor
    head, tm = rec.head, texel_map(rec.head, TEXTURE_SIZE)
    camera = photo_camera(photo.shape[1], photo.shape[0], PHOTO_FOV_DEG)
    pixels = camera.project(tm.surface @ rec.fitter.fit(landmarks, camera).vertices(head).astype(np.float64))[0]
    points = tm.surface @ head.template.astype(np.float64)
    # The face's front, chin and up; skin only (eyes, teeth, the mouth's inside are painted).
    corners = head.faces[tm.triangles]
    skin = (head.part_labels[corners] == 0).all(1) & ~mouth_cavity(head)[corners].any(1)
    front = skin & (points[:, 2] > 0.03) & (points[:, 1] > -0.105)
    under = front & (_sample(hand[..., None], pixels)[:, 0] > 0.5)
    hand_rgb = _sample(occluded.astype(np.float32), pixels[under])
    clean = _bake(rec, photo)[under]
    copied = {}
    for name, matte_only in (("matte only", True), ("with hands left out", False)):
        baked = _bake(rec, occluded, matte_only)[under]
        copied[name] = np.mean(np.abs(baked - hand_rgb).max(1) < 8)
        print(f"{name}: {under.sum()} texels under the hand; hand copied in {copied[name]:.1%}; "
              f"mean |diff| vs the clean bake {np.abs(baked - clean).mean():.1f}")
    assert under.sum() > 2000
    assert copied["matte only"] > 0.3, "the test's hand is one a plain bake copies"
    assert copied["with hands left out"] < 0.05
