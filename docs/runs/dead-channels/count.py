"""Silent channels of Squeeze-SegNet weights: batch-norm channels whose running variance fell below
1e-4 (ten times under batch norm's epsilon, 1e-5, so their normalised output is squashed and they pass
almost no gradient), and weights in the subnormal range (below 1.2e-38).

    cargo run --release --example export_weights -- --weights W.bpk --out DIR
    .venv/bin/python docs/runs/dead-channels/count.py DIR/weights.safetensors [...]
"""
import sys

import numpy as np
from safetensors.numpy import load_file

for path in sys.argv[1:]:
    d = load_file(path)
    silent = channels = subnormal = values = 0
    worst = []
    for k, v in d.items():
        v = v.astype(np.float32)
        subnormal += int(((v != 0) & (np.abs(v) < np.finfo(np.float32).tiny)).sum())
        values += v.size
        if k.endswith("running_var"):
            n = int((v < 1e-4).sum())
            silent += n
            channels += v.size
            if n > v.size // 2:
                worst.append(f"{k[: -len('.norm.running_var')]} {n}/{v.size}")
    print(f"{path}: silent channels {silent} of {channels} ({100 * silent / channels:.0f} %), "
          f"subnormal values {subnormal} of {values}")
    if worst:
        print("  more than half silent: " + ", ".join(worst))
