"""Screen of test-time augmentation with the PyTorch reference (results.md): python screen_pytorch.py WEIGHTS.safetensors [HELDOUT]."""
import sys, os, glob, numpy as np, torch, torch.nn.functional as F
from PIL import Image
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../benches/peers"))
import squeeze_segnet as ss
torch.set_num_threads(2)
MEAN = np.array([0.4095, 0.4228, 0.4305], np.float32); STD = np.array([0.3074, 0.3120, 0.3077], np.float32)
root = sys.argv[2] if len(sys.argv) > 2 else "/tmp/ho06"
ims = sorted(glob.glob(root + "/val/*.png"))
labels = [np.asarray(Image.open(p.replace("/val/", "/valannot/"))).astype(np.int64) for p in ims]
photos = [Image.open(p).convert("RGB") for p in ims]
def inp(ph, h, w):
    x = (np.asarray(ph.resize((w, h), Image.BILINEAR), np.float32) / 255 - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]
w = sys.argv[1]
net = ss.config_of(w)
model = ss.load_safetensors(ss.SqueezeSegNet(*net), w).eval()
cache = {}
def probs(model, k, h, wd, flip, tag):
    key = (tag, k, h, wd, flip)
    if key not in cache:
        x = inp(photos[k], h, wd)
        with torch.inference_mode():
            l = model(x)
            if flip: l = (l + model(x.flip(3)).flip(3)) / 2
            l = F.interpolate(l, size=labels[k].shape, mode="bilinear", align_corners=True)
        cache[key] = l[0]
    return cache[key]
def score(fn):
    cm = np.zeros((11, 11), np.int64)
    for k in range(len(ims)):
        pred = fn(k).argmax(0).numpy(); y = labels[k]; m = y < 11
        cm += np.bincount(y[m] * 11 + pred[m], minlength=121).reshape(11, 11)
    tp = np.diag(cm); acc = tp / np.maximum(cm.sum(1), 1); iou = tp / np.maximum(cm.sum(1) + cm.sum(0) - tp, 1)
    return f"{acc.mean():.3f} / {iou.mean():.3f} / {tp.sum() / cm.sum():.3f}"
def run(name, fn): print(f"{name:40s} {score(fn)}", flush=True)
S = {"180": (180, 240), "240": (240, 320), "300": (300, 400), "360": (360, 480)}
for s, (h, wd) in S.items():
    run(f"{s}", lambda k: probs(model, k, h, wd, False, "m"))
run("240 flip", lambda k: probs(model, k, 240, 320, True, "m"))
sm = lambda t: F.softmax(t, 0)
for combo in [("180", "240"), ("240", "300"), ("180", "240", "300"), ("180", "240", "300", "360"), ("240", "300", "360")]:
    run("ms " + "+".join(combo) + " logits", lambda k: sum(probs(model, k, *S[s], False, "m") for s in combo))
    run("ms " + "+".join(combo) + " softmax", lambda k: sum(sm(probs(model, k, *S[s], False, "m")) for s in combo))
    run("ms " + "+".join(combo) + " flip logits", lambda k: sum(probs(model, k, *S[s], True, "m") for s in combo))
