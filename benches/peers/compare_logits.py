"""Cross-framework check, both directions: the same weights give the same logits in Burn and in
PyTorch.

    cargo run --release --example export_weights -- --out target/export            # Burn → file
    .venv/bin/python benches/peers/compare_logits.py target/export                   # PyTorch checks, writes its own
    cargo run --release --example export_weights -- --check target/export          # Burn checks PyTorch's

Burn → PyTorch: `weights.safetensors` loads with `strict=True` and PyTorch's logits on
`input.bin` match Burn's `logits.bin`. PyTorch → Burn: this script re-initialises the network in
PyTorch (fresh weights and moved batch-norm statistics), saves its state dict as
`from_torch.safetensors` and its logits as `from_torch_logits.bin`, which `--check` compares.
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import squeeze_segnet as ss  # noqa: E402

directory = sys.argv[1] if len(sys.argv) > 1 else "target/export"
weights = os.path.join(directory, "weights.safetensors")
network = ss.config_of(weights)
model = ss.load_safetensors(ss.SqueezeSegNet(*network), weights).eval()
x = torch.from_numpy(np.fromfile(os.path.join(directory, "input.bin"), dtype="<f4").reshape(1, 3, 360, 480))
burn = np.fromfile(os.path.join(directory, "logits.bin"), dtype="<f4").reshape(1, network[0], 360, 480)
with torch.inference_mode():
    torch_logits = model(x).numpy()
diff = np.abs(torch_logits - burn)
scale = np.abs(burn).max()
print(f"Burn → PyTorch: max |difference| {diff.max():.3e} (logits up to {scale:.3e}); "
      f"argmax agreement {np.mean(torch_logits.argmax(1) == burn.argmax(1)) * 100:.4f} %")
ok = diff.max() <= 1e-4 * max(scale, 1.0)
print("OK: same logits within 1e-4 relative" if ok else "MISMATCH")

# PyTorch → Burn: a network PyTorch made, with batch-norm statistics that are not the defaults.
torch.manual_seed(3)
other = ss.SqueezeSegNet(*network)
other.train()
with torch.no_grad():
    other(torch.randn(2, 3, 96, 128))
other.eval()
with torch.inference_mode():
    other_logits = other(x).numpy()
save_file(other.state_dict(), os.path.join(directory, "from_torch.safetensors"))
other_logits.astype("<f4").tofile(os.path.join(directory, "from_torch_logits.bin"))
print(f"wrote from_torch.safetensors and from_torch_logits.bin: now run export_weights -- --check {directory}")
sys.exit(0 if ok else 1)
