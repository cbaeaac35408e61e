import os
import sys
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "screen_pytorch.py")).read().split("S = {")[0])
def ms(k, scales, flip, base=(240, 320), ac=True):
    x = inp(photos[k], *base)
    tot = 0
    with torch.inference_mode():
        for s in scales:
            hw = (round(base[0] * s), round(base[1] * s))
            xs = x if hw == base else F.interpolate(x, size=hw, mode="bilinear", align_corners=ac)
            l = model(xs)
            if flip: l = l + model(xs.flip(3)).flip(3)
            if hw != base: l = F.interpolate(l, size=base, mode="bilinear", align_corners=True)
            tot = tot + l
        return F.interpolate(tot, size=labels[k].shape, mode="bilinear", align_corners=True)[0]
run("tensor ms .75,1,1.25 flip", lambda k: ms(k, [0.75, 1, 1.25], True))
run("tensor ms .75,1,1.25", lambda k: ms(k, [0.75, 1, 1.25], False))
run("tensor ms .75,1,1.25 flip ac=False", lambda k: ms(k, [0.75, 1, 1.25], True, ac=False))
run("tensor ms .5,.75,1,1.25,1.5 flip", lambda k: ms(k, [0.5, 0.75, 1, 1.25, 1.5], True))
run("tensor ms 1,1.25 flip", lambda k: ms(k, [1, 1.25], True))
