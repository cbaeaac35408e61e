import os
import sys
sys.argv = [sys.argv[0]] + sys.argv[1:]
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "screen_pytorch.py")).read().split("S = {")[0])
import copy
def adapt(src, sizes, images, bs=4):
    m = copy.deepcopy(src)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats(); mod.momentum = None
    m.train()
    with torch.no_grad():
        for (h, wd) in sizes:
            for i in range(0, len(images), bs):
                m(torch.cat([inp(images[j], h, wd) for j in range(i, min(i + bs, len(images)))]))
    return m.eval()
run("240 base", lambda k: probs(model, k, 240, 320, False, "m"))
a = adapt(model, [(240, 320)], photos)
run("240 adabn(target 240)", lambda k: probs(a, k, 240, 320, False, "a"))
run("240 adabn flip", lambda k: probs(a, k, 240, 320, True, "a"))
