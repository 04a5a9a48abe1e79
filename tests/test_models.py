"""Architectures, heads, checkpoints (ferkit and reference-project layouts)."""
import math

import pytest
import torch
import torch.nn.functional as F

from ferkit.models import CheckpointError, build_model, count_macs, count_parameters, load_model, to_input


def test_seed_cnn_matches_the_reference_architecture():
    m = build_model("seed-cnn", "softmax", 7)
    # conv: 9*(1*32 + 32*32 + 32*64 + 64*64 + 64*128 + 128*128); BN: 2*(32*2+64*2+128*2); MLP: 4608*256+256 + 256*128+128; fc 128*7+7
    conv = 9 * (32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
    bn = 2 * (2 * 32 + 2 * 64 + 2 * 128)
    mlp = 4608 * 256 + 256 + 256 * 128 + 128
    assert count_parameters(m) == conv + bn + mlp + 128 * 7 + 7
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128] and all(c.bias is None for c in convs)
    assert m(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    assert count_macs(m) > count_parameters(m)


def test_to_input_scales_to_minus_one_one():
    x = to_input(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    assert x.shape == (1, 1, 1, 2) and x.flatten().tolist() == [-1.0, 1.0]


def test_arcface_margin_only_in_training():
    torch.manual_seed(0)
    m = build_model("seed-cnn", "arcface", 7, s=30.0, m=0.5)
    x, y = torch.randn(4, 1, 48, 48), torch.tensor([0, 1, 2, 3])
    m.eval()
    plain = m(x, y)
    assert torch.allclose(plain, m(x))  # labels are ignored at evaluation
    m.train()
    torch.manual_seed(1)
    feats = m.backbone(x)
    cos = F.linear(F.normalize(feats), F.normalize(m.head.weight))
    logits = m.head(feats, y)
    theta = torch.acos(cos[torch.arange(4), y].clamp(-1, 1))
    expected = 30 * torch.cos(theta + 0.5)
    fallback = 30 * (cos[torch.arange(4), y] - math.sin(math.pi - 0.5) * 0.5)
    ok = theta + 0.5 < math.pi
    assert torch.allclose(logits[torch.arange(4), y][ok], expected[ok], atol=1e-3)
    assert torch.allclose(logits[torch.arange(4), y][~ok], fallback[~ok], atol=1e-3)
    other = torch.ones_like(logits, dtype=torch.bool)
    other[torch.arange(4), y] = False
    assert torch.allclose(logits[other], 30 * cos[other], atol=1e-4)


@pytest.mark.parametrize("head", ["softmax", "arcface"])
def test_reference_checkpoint_loads_and_predicts_the_same(tmp_path, head):
    torch.manual_seed(0)
    ref = build_model("seed-cnn", head, 7).eval()
    ckpt = {"backbone": ref.backbone.state_dict(), "head": ref.head.state_dict(), "epoch": 12}
    assert ("fc.weight" in ckpt["head"]) == (head == "softmax")
    assert "features.2.net.4.running_mean" in ckpt["backbone"] and "head.4.weight" in ckpt["backbone"]
    torch.save(ckpt, tmp_path / "ref.pt")
    model, info = load_model(tmp_path / "ref.pt")
    assert info["head"] == head and info["class_names"][0] == "angry"
    x = torch.randn(3, 1, 48, 48)
    assert torch.equal(model(x), ref(x))


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "missing.pt")
    # junk, a damaged zip, an empty file: one line that says what the file is and what to give
    # instead, never torch's advice to load with weights_only=False
    for name, data in (("junk.pt", b"not a checkpoint"), ("zipish.pt", b"PK\x03\x04garbage"), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match="cannot read checkpoint .*not a PyTorch checkpoint") as e:
            load_model(tmp_path / name)
        assert "\n" not in str(e.value) and "weights_only" not in str(e.value) and "written by ferkit" in str(e.value)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        load_model(tmp_path / "other.pt")
    torch.save({"backbone": {"conv.weight": torch.zeros(1)}, "head": {}}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="not a seed-cnn"):
        load_model(tmp_path / "shape.pt")


@pytest.mark.parametrize("arch", ["seed-cnn", "fer-resnet", "fer-resnet-fast", "fer-resnet-fast16",
                                  "fer-resnet-slim"])
@pytest.mark.parametrize("head", ["softmax", "cosine", "arcface"])
def test_every_registered_arch_and_head(arch, head):
    from ferkit.models import ARCHS
    assert arch in ARCHS
    m = build_model(arch, head, 7)
    assert count_parameters(m) <= 2_000_000  # the budget for small models
    m.train()
    out = m(torch.randn(4, 1, 48, 48), torch.tensor([0, 1, 2, 3]))
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_fer_resnet_fast_skips_the_48_pixel_stage():
    """fer-resnet-fast's first block already works at 24x24, so its cost is lower than fer-resnet's."""
    from ferkit.models import count_macs
    from ferkit.models.resnet import BasicBlock

    fast, full = build_model("fer-resnet-fast", "softmax", 7), build_model("fer-resnet", "softmax", 7)
    first = next(m for m in fast.backbone.modules() if isinstance(m, BasicBlock))
    assert first.conv1[0].stride == (2, 2) and first.conv1[0].out_channels == 64
    assert count_macs(fast) < 0.75 * count_macs(full)
    seen = []
    fast.backbone.features.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    fast.eval()(torch.zeros(1, 1, 48, 48))
    assert seen == [torch.Size([1, 256, 6, 6])]


def test_fer_resnet_fast16_halves_only_the_stem():
    """fer-resnet-fast16 is fer-resnet-fast with 16 stem channels: same stages, fewer MACs at 48x48."""
    from ferkit.models import count_macs

    fast, fast16 = build_model("fer-resnet-fast", "softmax", 7), build_model("fer-resnet-fast16", "softmax", 7)
    stem, stem16 = fast.backbone.features[0][0], fast16.backbone.features[0][0]
    assert (stem.out_channels, stem16.out_channels) == (32, 16)
    assert stem16.stride == (1, 1)
    assert count_macs(fast16) < count_macs(fast)
    assert fast16.eval()(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_fer_resnet_slim_narrows_only_the_24_pixel_block():
    """fer-resnet-slim is fer-resnet-fast16 with 48 instead of 64 channels in its 24x24 block."""
    from ferkit.models import count_macs

    fast16, slim = build_model("fer-resnet-fast16", "softmax", 7), build_model("fer-resnet-slim", "softmax", 7)
    widths = [[m.out_channels for m in b.modules() if isinstance(m, torch.nn.Conv2d)]
              for b in (fast16.backbone.features, slim.backbone.features)]
    assert widths[0][0] == widths[1][0] == 16  # the same stem
    assert widths[0][1:4] == [64, 64, 64] and widths[1][1:4] == [48, 48, 48]  # conv1, conv2, shortcut
    assert widths[0][4:] == widths[1][4:]  # the same 12x12 and 6x6 stages
    assert count_macs(slim) < 0.9 * count_macs(fast16)
