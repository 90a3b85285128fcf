"""ResNet with torchvision's state-dict layout: key names and shapes against torchvision's
documented resnet50 / resnet101 (torchvision itself is not installed here), output strides,
loading a saved state dict from a local file."""

from __future__ import annotations

import pytest
import torch

from pcseg.models.resnet import WeightsError, load_resnet_weights, resnet

# torchvision.models.resnet50: 25,557,032 parameters, resnet101: 44,549,160 (the torchvision
# model table); 53 / 104 convolutions with a BatchNorm each (5 state entries: weight, bias,
# running_mean, running_var, num_batches_tracked) + fc weight and bias.
DOCUMENTED = {"resnet50": (25_557_032, 53), "resnet101": (44_549_160, 104)}

# a few entries of torchvision's resnet50 state dict, names and shapes
RESNET50_KEYS = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_mean": (64,),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.num_batches_tracked": (),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1),
    "layer3.5.bn3.weight": (1024,),
    "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "fc.weight": (1000, 2048),
    "fc.bias": (1000,),
}


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_parameter_and_key_counts_are_torchvision_s(name):
    params, convs = DOCUMENTED[name]
    net = resnet(name)
    assert sum(p.numel() for p in net.parameters()) == params
    assert len(net.state_dict()) == convs + 5 * convs + 2


def test_resnet50_key_names_and_shapes():
    sd = resnet("resnet50").state_dict()
    for key, shape in RESNET50_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    blocks = {k.split(".")[0] + "." + k.split(".")[1] for k in sd if k.startswith("layer")}
    assert len(blocks) == 3 + 4 + 6 + 3


@pytest.mark.parametrize("os_, stride4", [(32, 1), (16, 2), (8, 4)])
def test_output_strides(os_, stride4):
    net = resnet("resnet50", output_stride=os_, with_fc=False).eval()
    with torch.no_grad():
        low, high = net(torch.randn(1, 3, 64, 64))
    assert low.shape == (1, 256, 16, 16)
    assert high.shape == (1, 2048, 64 // os_, 64 // os_)
    # dilation replaces the stride: the last block's 3x3 conv dilates by 32 / os
    assert net.layer4[2].conv2.dilation == (stride4, stride4)


def test_saved_state_dict_loads_from_a_local_file(tmp_path):
    src = resnet("resnet50").eval()
    path = tmp_path / "resnet50.pth"
    torch.save(src.state_dict(), path)
    dst = resnet("resnet50", with_fc=False).eval()
    loaded = load_resnet_weights(dst, path)
    assert len(loaded) == len(dst.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dst(x)[1], src(x)[1])


def test_wrapped_state_dict_and_module_prefix(tmp_path):
    src = resnet("resnet50")
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = resnet("resnet50")
    load_resnet_weights(dst, path)
    torch.testing.assert_close(dst.layer3[0].conv2.weight, src.layer3[0].conv2.weight)


def test_wrong_depth_and_missing_file_are_weights_errors(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(resnet("resnet50").state_dict(), path)
    with pytest.raises(WeightsError, match="missing"):
        load_resnet_weights(resnet("resnet101"), path)
    with pytest.raises(WeightsError, match="do not exist"):
        load_resnet_weights(resnet("resnet50"), tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_resnet_weights(resnet("resnet50"), tmp_path / "junk.pth")
