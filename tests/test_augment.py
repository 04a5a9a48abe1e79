"""Batched augmentation: the transform distribution and the geometry of each transform."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ferkit.data.augment import AugParams, augment, sample_params


def _ks_uniform(x: np.ndarray, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance between the sample and U(lo, hi)."""
    x = np.sort((x - lo) / (hi - lo))
    n = len(x)
    return float(max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n)))


def test_transform_distribution_matches_the_recipe():
    n = 20000
    p = sample_params(n, torch.Generator().manual_seed(0))
    assert abs(p.flip.float().mean().item() - 0.5) < 0.015  # 4.2 sigma
    assert p.angle.min() >= -15 and p.angle.max() <= 15
    assert _ks_uniform(p.angle.numpy(), -15, 15) < 0.015     # D_crit(0.001) ~ 1.95/sqrt(n) = 0.0138
    for off in (p.off_x, p.off_y):
        counts = np.bincount(off.numpy(), minlength=13)
        assert len(counts) == 13 and counts.min() > 0         # offsets 0..12: 44 out of 56 pixels
        expected = n / 13
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 32.9                                    # chi2(12 dof) at p = 0.001
    # x and y offsets are drawn independently
    assert abs(np.corrcoef(p.off_x.numpy(), p.off_y.numpy())[0, 1]) < 0.04


def _reference(img: np.ndarray, flip: bool, angle: float, ox: int, oy: int) -> torch.Tensor:
    """The reference project's per-image pipeline, written with PIL and plain tensor ops."""
    im = Image.fromarray(img)
    if flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.rotate(angle, resample=Image.BILINEAR)
    x = torch.tensor(np.array(im), dtype=torch.float32) / 255
    x = F.pad(x, (4, 4, 4, 4))[oy:oy + 44, ox:ox + 44]
    return F.interpolate(x[None, None], size=48, mode="bilinear", align_corners=False)[0, 0] * 2 - 1


@pytest.mark.parametrize("flip,angle,ox,oy", [(False, 0, 6, 6), (True, 0, 4, 4), (False, 0, 10, 2),
                                              (False, 90, 6, 6), (True, -90, 0, 12)])
def test_each_transform_matches_the_per_image_pipeline(flip, angle, ox, oy):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    params = AugParams(torch.tensor([flip]), torch.tensor([float(angle)]), torch.tensor([ox]), torch.tensor([oy]))
    out = augment(torch.from_numpy(img)[None], params)[0, 0]
    ref = _reference(img, flip, angle, ox, oy)
    # Inside the border the single affine resampling equals PIL flip/rotate + pad/crop/resize exactly
    # (right angles keep pixels on the grid); the outermost ring differs only by edge interpolation.
    assert torch.allclose(out[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-4)


def test_small_rotation_is_close_to_pil():
    rng = np.random.default_rng(2)
    img = (rng.random((48, 48)) * 60 + np.linspace(0, 180, 48)[None]).astype(np.uint8)  # smooth image
    params = AugParams(torch.tensor([False]), torch.tensor([10.0]), torch.tensor([6]), torch.tensor([6]))
    out = augment(torch.from_numpy(img)[None], params)[0, 0]
    ref = _reference(img, False, 10.0, 6, 6)
    # Two bilinear resamplings (PIL) vs one: close, not identical.
    assert (out[6:-6, 6:-6] - ref[6:-6, 6:-6]).abs().mean() < 0.05


def test_zero_fill_is_black_and_range_is_kept():
    img = torch.full((1, 48, 48), 255, dtype=torch.uint8)
    params = AugParams(torch.tensor([False]), torch.tensor([0.0]), torch.tensor([0]), torch.tensor([0]))
    out = augment(img, params)[0, 0]
    assert out.min() >= -1 and out.max() <= 1
    assert out[0, 0] < -0.5 and out[-1, -1] == pytest.approx(1.0)  # padded corner is black


def test_optional_jitters_draw_nothing_when_off():
    # A run without the new options must draw exactly the batches it drew before they existed.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = sample_params(64, g1)
    b = sample_params(64, g2, scale=0.0, translate=0.0, erase_p=0.0)
    assert b.zoom is None and b.erase is None
    assert torch.equal(g1.get_state(), g2.get_state()) and torch.equal(a.off_x, b.off_x)


def _ramp() -> torch.Tensor:
    return torch.arange(48, dtype=torch.float32).mul(4).expand(48, 48).to(torch.uint8)[None]  # I = 4 * column


def _slope_and_centre(params: AugParams) -> tuple[float, float]:
    row = augment(_ramp(), params)[0, 0, 24]
    return float(row[30] - row[18]) / 12, float(row[23] + row[24]) / 2


def test_zoom_and_translate_move_the_image_as_documented():
    base = dict(flip=torch.tensor([False]), angle=torch.tensor([0.0]), off_y=torch.tensor([6]))
    slope1, centre1 = _slope_and_centre(AugParams(off_x=torch.tensor([6]), **base))
    slope2, _ = _slope_and_centre(AugParams(off_x=torch.tensor([6]), zoom=torch.tensor([1.25]), **base))
    assert slope2 == pytest.approx(slope1 / 1.25, rel=1e-4)  # zooming in by 1.25 spreads the ramp
    _, centre3 = _slope_and_centre(AugParams(off_x=torch.tensor([6.0 + 2.5]), **base))
    assert centre3 - centre1 == pytest.approx(2.5 * 8 / 255, rel=1e-3)  # 2.5 px right: +2.5 * 4 grey levels
    p = sample_params(20000, torch.Generator().manual_seed(4), scale=0.1, translate=0.05)
    assert p.zoom.min() >= 0.9 and p.zoom.max() <= 1.1 and _ks_uniform(p.zoom.numpy(), 0.9, 1.1) < 0.015
    shift = p.off_x - p.off_x.round()  # the continuous part of the offset
    assert shift.abs().max() > 0 and p.off_x.min() >= -2.4 and p.off_x.max() <= 14.4


def test_random_erasing_sets_a_rectangle_to_grey():
    n = 4000
    p = sample_params(n, torch.Generator().manual_seed(5), erase_p=0.5)
    erased = p.erase[:, 2] > 0
    assert abs(erased.float().mean().item() - 0.5) < 0.03
    area = (p.erase[erased, 2] * p.erase[erased, 3]).float() / 48 ** 2
    assert area.min() >= 0.01 and area.max() <= 0.3  # 2-25% before rounding to whole pixels
    assert (p.erase[:, 0] + p.erase[:, 2]).max() <= 48 and (p.erase[:, 1] + p.erase[:, 3]).max() <= 48
    imgs = torch.full((8, 48, 48), 255, dtype=torch.uint8)
    q = AugParams(torch.zeros(8, dtype=torch.bool), torch.zeros(8), torch.full((8,), 6), torch.full((8,), 6),
                  erase=torch.tensor([[10, 5, 7, 20]] + [[0, 0, 0, 0]] * 7))
    out = augment(imgs, q)[:, 0]
    plain = augment(imgs, AugParams(q.flip, q.angle, q.off_x, q.off_y))[:, 0]
    assert (out[0, 10:17, 5:25] == 0).all() and (out[0] == 0).sum() == 7 * 20
    assert torch.equal(out[1:], plain[1:])


def test_a_smaller_size_samples_the_same_image_on_a_coarser_grid():
    """Progressive resizing: on a linear ramp (which bilinear sampling reproduces exactly), size 24 of a
    centred, unrotated crop equals the 48-pixel one averaged over 2x2 blocks; erasing scales with it."""
    i = torch.arange(48)
    imgs = (2 * i[:, None] + 3 * i[None, :]).to(torch.uint8).expand(3, 48, 48)
    p = AugParams(flip=torch.zeros(3, dtype=torch.bool), angle=torch.zeros(3), off_x=torch.full((3,), 6),
                  off_y=torch.full((3,), 6))
    big, small = augment(imgs, p), augment(imgs, p, size=24)
    assert small.shape == (3, 1, 24, 24)
    assert torch.allclose(small, F.avg_pool2d(big, 2), atol=1e-4)
    from ferkit.data.augment import erase_mask
    mask = erase_mask(torch.tensor([[4, 8, 10, 20]]), size=24)[0, 0]  # rows 4..13, columns 8..27 at 48 px
    rows, cols = mask.any(1).nonzero().flatten().tolist(), mask.any(0).nonzero().flatten().tolist()
    assert rows == list(range(2, 7)) and cols == list(range(4, 14))  # the 24-px pixels whose centres fall inside
    assert torch.equal(erase_mask(torch.tensor([[4, 8, 10, 20]]))[0, 0].nonzero()[0], torch.tensor([4, 8]))
