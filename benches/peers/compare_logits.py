"""Cross-framework check: the same weights give the same logits in Burn and in PyTorch.

    cargo run --release --example export_weights -- --out target/export          # Burn side
    .venv/bin/python benches/peers/compare_logits.py target/export                 # PyTorch side
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import squeeze_segnet as ss  # noqa: E402

directory = sys.argv[1] if len(sys.argv) > 1 else "target/export"
manifest = json.load(open(os.path.join(directory, "weights.json")))
model = ss.load_burn_export(ss.SqueezeSegNet(batch_norm=manifest["batch_norm"], refine=manifest.get("refine", False)), directory).eval()
x = torch.from_numpy(np.fromfile(os.path.join(directory, "input.bin"), dtype="<f4").reshape(1, 3, 360, 480))
burn = np.fromfile(os.path.join(directory, "logits.bin"), dtype="<f4").reshape(1, 11, 360, 480)
with torch.inference_mode():
    torch_logits = model(x).numpy()
diff = np.abs(torch_logits - burn)
scale = np.abs(burn).max()
print(f"max |difference| {diff.max():.3e} (logits up to {scale:.3e}); "
      f"argmax agreement {np.mean(torch_logits.argmax(1) == burn.argmax(1)) * 100:.4f} %")
ok = diff.max() <= 1e-4 * max(scale, 1.0)
print("OK: same logits within 1e-4 relative" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
