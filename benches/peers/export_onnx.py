"""ONNX for ONNX Runtime users: the weights exported by `export_weights` (PyTorch's names), through
the PyTorch reference, with real MaxPool(Indices) and MaxUnpool nodes (no ScatterND), checked
against this crate's logits with ONNX Runtime.

    pip install "torch>=2.6" onnx onnxscript onnxruntime safetensors numpy
    cargo run --release --example export_weights -- --weights crates/squeeze-segnet/weights/camvid/camvid.bpk --out target/export
    python benches/peers/export_onnx.py target/export        # writes target/export/squeeze_segnet.onnx

Checked on 2026-12-03 (torch 2.15.0, onnx 1.23.2, onnxscript 0.7.2, onnxruntime 1.32.0): three
MaxUnpool nodes, no ScatterND, logits within 5.2e-6 of this crate's. Why it is written this way:
- PyTorch's exporters have no MaxUnpool translation: the TorchScript exporter has no symbolic for
  aten::max_unpool2d, and the dynamo exporter (onnxscript torchlib) falls back to the
  decomposition `_unsafe_index_put`, i.e. ScatterND, 25-35 % slower in ONNX Runtime. Both ops are
  given here through `custom_translation_table` (torch >= 2.6).
- ONNX MaxPool's Indices (and MaxUnpool's I input) are flat over N*C*H*W, PyTorch's per plane.
  Only the unpool reads the indices, so the graph keeps ONNX's flat indices end to end.
- ONNX Runtime checks output_shape >= (in-1)*stride - pads + kernel even when output_shape is
  given, so with ceil_mode pooling the unpool's end pad is 0 or 1.
"""
import argparse
import os
import sys
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxscript import opset18 as op

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import squeeze_segnet as ss  # noqa: E402

K, S = 3, 2  # every pool and unpool of the network: kernel 3, stride 2, no padding, ceil mode


def pair(v):
    return [v, v] if isinstance(v, int) else list(v)


def max_pool2d_with_indices(self, kernel_size: Sequence[int], stride: Sequence[int] = (),
                            padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1),
                            ceil_mode: bool = False):
    k, p = pair(kernel_size), pair(padding)
    y, i = op.MaxPool(self, kernel_shape=k, strides=pair(stride) if stride else k, pads=p + p,
                      dilations=pair(dilation), ceil_mode=int(ceil_mode))
    return y, i  # flat N*C*H*W indices, what MaxUnpool reads


def max_unpool2d(self, indices, output_size: Sequence[int]):
    h, w = (int(v) for v in output_size)

    def end(n):  # 0 or 1: ONNX Runtime's size check with ceil-mode pooling
        return (-(-(n - K) // S)) * S + K - n

    shape = op.Concat(op.Shape(self, start=0, end=2), op.Constant(value_ints=[h, w]), axis=0)
    return op.MaxUnpool(self, indices, shape, kernel_shape=[K, K], strides=[S, S],
                        pads=[0, 0, end(h), end(w)])


# The translations that make PyTorch's exporter write MaxPool(Indices) and MaxUnpool nodes.
TRANSLATIONS = {torch.ops.aten.max_pool2d_with_indices.default: max_pool2d_with_indices,
                torch.ops.aten.max_unpool2d.default: max_unpool2d}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("directory", nargs="?", default="target/export")
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    weights = os.path.join(a.directory, "weights.safetensors")
    network = ss.config_of(weights)
    model = ss.load_safetensors(ss.SqueezeSegNet(*network), weights).eval()
    out = a.out or os.path.join(a.directory, "squeeze_segnet.onnx")
    torch.onnx.export(model, (torch.zeros(1, 3, 360, 480),), out, dynamo=True, opset_version=18,
                      custom_translation_table=TRANSLATIONS, external_data=False)  # one self-contained file
    graph = onnx.load(out)
    ops = [n.op_type for n in graph.graph.node] + [n.op_type for f in graph.functions for n in f.node]
    assert ops.count("MaxUnpool") == 3 and "MaxPool" in ops and "ScatterND" not in ops, sorted(set(ops))
    onnx.checker.check_model(graph)
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    session = ort.InferenceSession(out, options, providers=["CPUExecutionProvider"])
    x = np.fromfile(os.path.join(a.directory, "input.bin"), "<f4").reshape(1, 3, 360, 480)
    want = np.fromfile(os.path.join(a.directory, "logits.bin"), "<f4").reshape(1, network[0], 360, 480)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    diff, scale = np.abs(got - want).max(), np.abs(want).max()
    print(f"ONNX Runtime (MaxUnpool graph) vs this crate: max |difference| {diff:.3e} (logits up to "
          f"{scale:.3e}); argmax agreement {np.mean(got.argmax(1) == want.argmax(1)) * 100:.4f} %")
    ok = diff <= 1e-4 * max(scale, 1.0)
    print("OK: same logits within 1e-4 relative" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
