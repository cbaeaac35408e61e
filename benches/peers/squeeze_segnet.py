"""Squeeze-SegNet in PyTorch: the same layers as the Rust crate, for timing and numeric checks.

Module names mirror the Rust model's record paths (`fire2.squeeze.conv.weight`, ...), so weights
exported from Burn (examples/export_weights, `SqueezeSegNet::save_pytorch`) load with
`load_safetensors` (strict), and `safetensors.torch.save_file(model.state_dict(), path)` writes
weights the Rust crate loads (`SqueezeSegNet::load` on a .safetensors path, or `--weights path.safetensors`).
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ENCODER_FIRES = [  # name, input, squeeze, expand
    ("fire2", 64, 16, 64), ("fire3", 128, 16, 64), ("fire4", 128, 32, 128), ("fire5", 256, 32, 128),
    ("fire6", 256, 48, 192), ("fire7", 384, 48, 192), ("fire8", 384, 64, 256), ("fire9", 512, 64, 256),
]
DECODER_DFIRES = [  # name, input, expand, output
    ("dfire9", 512, 64, 512), ("dfire8", 512, 64, 384), ("dfire7", 384, 48, 384), ("dfire6", 384, 48, 256),
    ("dfire5", 256, 32, 256), ("dfire4", 256, 32, 128), ("dfire3", 128, 16, 128), ("dfire2", 128, 16, 64),
]


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, batch_norm=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(cout) if batch_norm else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x)


class Fire(nn.Module):
    def __init__(self, cin, s, e, bn):
        super().__init__()
        self.squeeze = ConvBlock(cin, s, 1, batch_norm=bn)
        self.expand1x1 = ConvBlock(s, e, 1, batch_norm=bn)
        self.expand3x3 = ConvBlock(s, e, 3, padding=1, batch_norm=bn)

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], 1)


class DFire(nn.Module):
    def __init__(self, cin, e, cout, bn):
        super().__init__()
        self.expand1x1 = ConvBlock(cin, e, 1, batch_norm=bn)
        self.expand3x3 = ConvBlock(cin, e, 3, padding=1, batch_norm=bn)
        self.squeeze = ConvBlock(2 * e, cout, 1, batch_norm=bn)

    def forward(self, x):
        return self.squeeze(torch.cat([self.expand1x1(x), self.expand3x3(x)], 1))


class PyramidContext(nn.Module):
    """x + fuse(cat(up(relu(branch_b(avgpool_b(x)))))): the Rust crate's PyramidContext."""

    def __init__(self, channels=512, bins=(1, 2, 3, 6), branch_channels=64):
        super().__init__()
        self.bins = bins
        self.branches = nn.ModuleList(ConvBlock(channels, branch_channels, 1) for _ in bins)
        self.fuse = nn.Conv2d(len(bins) * branch_channels, channels, 1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def forward(self, x):
        h, w = (int(v) for v in x.shape[-2:])
        parts = []
        for b, branch in zip(self.bins, self.branches):
            p = branch(F.adaptive_avg_pool2d(x, b))
            parts.append(F.interpolate(p, size=(h, w), mode="bilinear", align_corners=True))
        return x + self.fuse(torch.cat(parts, 1))


class SqueezeSegNet(nn.Module):
    def __init__(self, num_classes=11, batch_norm=False, refine=False, context=False):
        super().__init__()
        bn = batch_norm
        self.conv1 = ConvBlock(3, 64, 3, stride=2, batch_norm=bn)
        for name, cin, s, e in ENCODER_FIRES:
            setattr(self, name, Fire(cin, s, e, bn))
        self.conv10 = ConvBlock(512, 512, 1, batch_norm=bn)
        # Not in the paper: pyramid pooling after conv10 (SqueezeSegNetConfig::context).
        self.context = PyramidContext() if context else None
        self.conv10_d = ConvBlock(512, 512, 1, batch_norm=bn)
        for name, cin, e, cout in DECODER_DFIRES:
            setattr(self, name, DFire(cin, e, cout, bn))
        # Not in the paper: a 3×3 convolution densifying the last unpooled map (the Rust crate's
        # SqueezeSegNetConfig::camvid(), the shipped weights' network).
        self.refine = ConvBlock(64, 64, 3, padding=1, batch_norm=bn) if refine else None
        self.deconv1 = nn.ConvTranspose2d(64, num_classes, 3, stride=2)

    def forward(self, x):
        h, w = (int(v) for v in x.shape[-2:])
        pool = lambda t: F.max_pool2d(t, 3, 2, ceil_mode=True, return_indices=True)
        x = self.conv1(x)
        s1 = tuple(int(v) for v in x.shape[-2:])  # plain ints: exportable to ONNX
        x, i1 = pool(x)
        x = self.fire3(self.fire2(x))
        s3 = tuple(int(v) for v in x.shape[-2:])  # plain ints: exportable to ONNX
        x, i3 = pool(x)
        x = self.fire5(self.fire4(x))
        s5 = tuple(int(v) for v in x.shape[-2:])  # plain ints: exportable to ONNX
        x, i5 = pool(x)
        x = self.fire9(self.fire8(self.fire7(self.fire6(x))))
        x = self.conv10(x)
        if self.context is not None:
            x = self.context(x)
        x = self.conv10_d(x)
        x = self.dfire6(self.dfire7(self.dfire8(self.dfire9(x))))
        x = F.max_unpool2d(x, i5, 3, 2, output_size=s5)
        x = self.dfire4(self.dfire5(x))
        x = F.max_unpool2d(x, i3, 3, 2, output_size=s3)
        x = self.dfire2(self.dfire3(x))
        x = F.max_unpool2d(x, i1, 3, 2, output_size=s1)
        if self.refine is not None:
            x = self.refine(x)
        pad = (h - (2 * s1[0] + 1), w - (2 * s1[1] + 1))
        return F.conv_transpose2d(x, self.deconv1.weight, self.deconv1.bias, stride=2, output_padding=pad)


def load_safetensors(model, path):
    """Loads weights exported by `cargo run --release --example export_weights` (or
    `SqueezeSegNet::save_pytorch`): PyTorch's own names, every key, strict."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(path), strict=True)
    return model


def config_of(path):
    """(num_classes, batch_norm, refine, context) of a safetensors file's network, from its keys:
    the arguments of SqueezeSegNet, in order."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        keys = list(f.keys())
        num_classes = f.get_slice("deconv1.bias").get_shape()[0]
    has = lambda prefix: any(k.startswith(prefix) for k in keys)
    return num_classes, any(".norm." in k for k in keys), has("refine."), has("context.")


if __name__ == "__main__":
    m = SqueezeSegNet()
    print("parameters:", sum(p.numel() for p in m.parameters()))
    print(m(torch.zeros(1, 3, 360, 480)).shape)
