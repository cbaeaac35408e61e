"""Times the PyTorch and ONNX Runtime peers of Squeeze-SegNet, same network and thread count as
the Rust benches. Each engine runs in its own process so its peak resident memory is its own.

    python3 -m venv .venv && .venv/bin/pip install torch onnx onnxruntime numpy
    .venv/bin/python benches/peers/bench_peers.py --threads 2                    # paper network
    .venv/bin/python benches/peers/bench_peers.py --threads 2 --network camvid   # camvid()

Engines: PyTorch eager (NCHW and channels-last), torch.compile (inductor, with freezing: batch
norm and weights folded as constants, channels-last), ONNX Runtime on the graph with MaxPool
indices and MaxUnpool nodes (`onnxruntime`) and on the exporter's ScatterND graph
(`onnxruntime-scatternd`, slower), and with --train PyTorch's training step.

Prints one JSON line per measurement (median and min/max of --repeats timed runs after
--warmup runs; torch.compile's compilation happens in its warm-up) and a markdown table.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = [(360, 480, 1), (360, 480, 4), (180, 240, 1)]


def macs(h, w, net="paper"):
    """Multiply-accumulates of the convolutions per image (same count as the Rust summary)."""
    import squeeze_segnet as ss

    def out(n, k, s, p=0):
        return (n + 2 * p - k) // s + 1

    def pooled(n):
        o = -(-(n - 3) // 2) + 1
        return o - 1 if (o - 1) * 2 >= n else o

    h1, w1 = out(h, 3, 2), out(w, 3, 2)
    sizes = [(h1, w1)]
    for _ in range(3):
        sizes.append((pooled(sizes[-1][0]), pooled(sizes[-1][1])))
    px = [a * b for a, b in sizes]
    total = px[0] * 3 * 64 * 9
    levels = [1, 1, 2, 2, 3, 3, 3, 3]
    for (name, cin, s, e), lv in zip(ss.ENCODER_FIRES, levels):
        total += px[lv] * (cin * s + s * e + s * e * 9)
    total += 2 * px[3] * 512 * 512
    for (name, cin, e, cout), lv in zip(ss.DECODER_DFIRES, [3, 3, 3, 3, 2, 2, 1, 1]):
        total += px[lv] * (cin * e + cin * e * 9 + 2 * e * cout)
    total += px[0] * 64 * 11 * 9
    if net == "camvid":
        total += px[0] * 64 * 64 * 9  # refine
        bins, branch = (1, 2, 3, 6), 64  # context: branches on b×b grids, fusion per pixel
        total += sum(b * b * 512 * branch for b in bins) + px[3] * len(bins) * branch * 512
    return total


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times)


def network(name):
    """The peer network: `paper` (SqueezeSegNetConfig::paper) or `camvid` (::camvid: batch norm,
    pyramid context, refinement), in inference mode."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import squeeze_segnet as ss
    if name == "camvid":
        return ss.SqueezeSegNet(batch_norm=True, refine=True, context=True).eval()
    if name == "paper":
        return ss.SqueezeSegNet().eval()
    raise SystemExit(f"unknown network {name} (paper or camvid)")


def export(path, h, w, n, maxunpool, net="paper"):
    """Exports the network to ONNX (opset 18) in its own process, so ONNX Runtime's timing and
    memory are measured without PyTorch loaded: with `maxunpool`, through export_onnx.py's
    translations (MaxPool with indices + MaxUnpool nodes), else as PyTorch's exporter does it
    (the unpool as ScatterND)."""
    import torch
    torch.manual_seed(0)
    model = network(net)
    table = None
    if maxunpool:
        import export_onnx
        table = export_onnx.TRANSLATIONS
    torch.onnx.export(model, (torch.randn(n, 3, h, w),), path, opset_version=18, dynamo=True,
                      custom_translation_table=table, external_data=False)


def child(engine, h, w, n, threads, warmup, repeats, net="paper"):
    if engine in ("onnxruntime", "onnxruntime-scatternd"):
        import numpy as np
        import onnx
        import onnxruntime as ort
        path = os.path.join(tempfile.mkdtemp(), "squeeze_segnet.onnx")
        graph = "maxunpool" if engine == "onnxruntime" else "scatternd"
        subprocess.run([sys.executable, __file__, "--network", net, "--export", path, str(h), str(w),
                        str(n), graph], check=True, capture_output=True)
        ops = sorted({node.op_type for node in onnx.load(path).graph.node})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        xn = np.random.default_rng(0).standard_normal((n, 3, h, w), dtype=np.float32)
        name = sess.get_inputs()[0].name
        med, lo, hi = timed(lambda: sess.run(None, {name: xn}), warmup, repeats)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(dict(engine=engine, network=net, h=h, w=w, batch=n, threads=threads,
                              median_ms=med * 1e3,
                              min_ms=lo * 1e3, max_ms=hi * 1e3, peak_rss_mib=peak,
                              onnxruntime=ort.__version__, onnx_ops=ops)))
        return
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import squeeze_segnet as ss

    torch.manual_seed(0)
    model = network(net)
    x = torch.randn(n, 3, h, w)
    if engine == "torch-eager":
        with torch.inference_mode():
            med, lo, hi = timed(lambda: model(x), warmup, repeats)
    elif engine == "torch-eager-channels-last":
        model = model.to(memory_format=torch.channels_last)
        xc = x.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            med, lo, hi = timed(lambda: model(xc), warmup, repeats)
    elif engine == "torch-compile-freezing":
        # Inductor with freezing (weights and batch norm folded as constants), channels-last;
        # the first warm-up call compiles.
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True
        model = model.to(memory_format=torch.channels_last)
        xc = x.to(memory_format=torch.channels_last)
        compiled = torch.compile(model)
        with torch.no_grad():
            med, lo, hi = timed(lambda: compiled(xc), max(warmup, 2), repeats)
    elif engine == "torch-train-step":
        model = ss.SqueezeSegNet(batch_norm=True, refine=net == "camvid",
                                 context=net == "camvid").train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        weights = torch.rand(11) + 0.1
        target = torch.randint(0, 12, (n, h, w))
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=11)

        def step():
            opt.zero_grad()
            loss_fn(model(x), target).backward()
            opt.step()
        med, lo, hi = timed(step, warmup, repeats)
    else:
        raise SystemExit(f"unknown engine {engine}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB
    print(json.dumps(dict(engine=engine, network=net, h=h, w=w, batch=n, threads=threads,
                          median_ms=med * 1e3, min_ms=lo * 1e3, max_ms=hi * 1e3, peak_rss_mib=peak,
                          torch=torch.__version__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--engines", default="torch-eager,torch-eager-channels-last,"
                    "torch-compile-freezing,onnxruntime,onnxruntime-scatternd")
    ap.add_argument("--network", default="paper", help="paper or camvid")
    ap.add_argument("--train", action="store_true", help="also time training steps at batch 4")
    ap.add_argument("--child", nargs=4)
    ap.add_argument("--export", nargs=5)
    a = ap.parse_args()
    if a.export:
        p, h, w, n, graph = a.export
        return export(p, int(h), int(w), int(n), graph == "maxunpool", a.network)
    if a.child:
        e, h, w, n = a.child
        return child(e, int(h), int(w), int(n), a.threads, a.warmup, a.repeats, a.network)
    jobs = [(e, h, w, n) for e in a.engines.split(",") for (h, w, n) in SIZES]
    if a.train:
        jobs += [("torch-train-step", 180, 240, 4), ("torch-train-step", 360, 480, 4)]
    rows = []
    for e, h, w, n in jobs:
        reps = a.repeats if e != "torch-train-step" else max(3, a.repeats // 2)
        out = subprocess.run([sys.executable, __file__, "--threads", str(a.threads), "--repeats", str(reps),
                              "--warmup", str(a.warmup), "--network", a.network,
                              "--child", e, str(h), str(w), str(n)],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not line:
            print(f"{e} {h}x{w} b{n} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(line[-1])
        print(line[-1], flush=True)
        rows.append(r)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print("\n| engine | input | batch | median ms | ms/image | images/s | GFLOP/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = r["median_ms"] / r["batch"]
        gflops = 2 * macs(r["h"], r["w"], a.network) / (per * 1e-3) / 1e9
        print(f"| {r['engine']} | {r['h']}x{r['w']} | {r['batch']} | {r['median_ms']:.1f} | {per:.1f} | "
              f"{1e3 / per:.1f} | {gflops:.0f} | {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
