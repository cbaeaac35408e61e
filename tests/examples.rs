//! The examples as a user runs them, on the embedded sample with a tiny schedule: train, stop,
//! resume, evaluate, predict; their outputs exist and parse; bad flags fail with one line.
//!
//! `cargo test` builds the examples first; they are run from `target/<profile>/examples/`.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{example, tmp};
use squeeze_segnet_train::{EncoderInit, TrainingConfig};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails_with_one_line(cmd: &mut Command, needle: &str) {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
}

#[test]
fn train_stop_resume_evaluate_predict() {
    let run_dir = tmp("run");
    let out = run_dir.to_str().unwrap();
    let tiny = ["--epochs", "2", "--size", "64x80", "--batch-size", "8"];
    // Stop after epoch 1, as a user splitting a run over two sittings would.
    run(example("train_camvid")
        .args(tiny)
        .args(["--out", out, "--stop-after", "1"]));
    let csv = |d: &Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert_eq!(csv(&run_dir).lines().count(), 2, "header + epoch 1");
    // Starting again without --resume must not overwrite the run.
    fails_with_one_line(
        example("train_camvid").args(tiny).args(["--out", out]),
        "--resume",
    );
    // A resumed run keeps its options: changing one is refused, naming the flag.
    fails_with_one_line(
        example("train_camvid").args(["--out", out, "--resume", "--lr", "0.1"]),
        "--lr cannot change on --resume",
    );
    // The second sitting splits each batch over two workers (data parallelism).
    run(example("train_camvid").args(["--out", out, "--resume", "--data-parallel", "2"]));
    let metrics = csv(&run_dir);
    assert_eq!(metrics.lines().count(), 3, "header + 2 epochs:\n{metrics}");
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    let class_avg: f64 = last[6].parse().expect("class-average accuracy parses");
    assert!((0.0..=1.0).contains(&class_avg));
    for f in [
        "best.bpk",
        "last.bpk",
        "chart.png",
        "metrics.jsonl",
        "run.json",
        "checkpoints/latest.json",
    ] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    image::open(run_dir.join("chart.png")).expect("the chart is a PNG");

    let weights = run_dir.join("best.bpk");
    let w = weights.to_str().unwrap();
    let figures = tmp("figures");
    let eval = run(example("evaluate")
        .args(["--weights", w, "--split", "val"])
        .args(["--figures", "2", "--figures-out", figures.to_str().unwrap()]));
    let pictures: Vec<_> = std::fs::read_dir(&figures).unwrap().collect();
    assert_eq!(pictures.len(), 2, "two figures");
    for p in pictures {
        let img = image::open(p.unwrap().path()).unwrap();
        // input | ground truth | prediction at 360×480, 8-pixel gaps
        assert_eq!((img.width(), img.height()), (3 * 480 + 16, 360));
    }
    let _ = std::fs::remove_dir_all(&figures);
    let table = String::from_utf8_lossy(&eval.stdout);
    for row in ["Sky", "Bicyclist", "class average", "global", "mean IoU"] {
        assert!(table.contains(row), "missing '{row}' in\n{table}");
    }
    let confusion = std::fs::read_to_string(run_dir.join("confusion_val.csv")).unwrap();
    let counts: u64 = confusion
        .lines()
        .skip(1)
        .flat_map(|l| l.split(',').skip(1).map(|v| v.parse::<u64>().unwrap()))
        .sum();
    // 4 validation images at their full 360×480, void pixels left out.
    assert!(
        (600_000..4 * 360 * 480).contains(&counts),
        "{counts} labelled pixels counted"
    );

    // Test-time augmentation: three scales, each also mirrored.
    let tta = run(example("evaluate").args(["--weights", w, "--scales", "0.75,1,1.25", "--flip"]));
    let log = String::from_utf8_lossy(&tta.stderr);
    assert!(log.contains("scales 0.75,1,1.25 + flip: 6 passes"), "{log}");
    assert!(String::from_utf8_lossy(&tta.stdout).contains("mean IoU"));

    let pred = tmp("pred");
    let sample = squeeze_segnet_data::camvid_sample_root().join("val/0016E5_07959.png");
    run(example("predict")
        .args(["--weights", w, "--out", pred.to_str().unwrap()])
        .args(["--scales", "1,1.25", "--flip"])
        .arg(&sample));
    for suffix in ["mask", "overlay"] {
        let img = image::open(pred.join(format!("0016E5_07959_{suffix}.png"))).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (480, 360),
            "{suffix} at the input's size"
        );
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    let _ = std::fs::remove_dir_all(&pred);
}

#[test]
fn bad_arguments_fail_with_one_line() {
    fails_with_one_line(
        example("train_camvid").arg("--bogus"),
        "unexpected argument '--bogus'",
    );
    fails_with_one_line(
        example("train_camvid").args(["--size", "big"]),
        "HEIGHTxWIDTH",
    );
    fails_with_one_line(
        example("train_camvid").args(["--optimizer", "rmsprop"]),
        "sgd, adam or adamw",
    );
    fails_with_one_line(
        example("train_camvid").args(["--encoder", "vgg16"]),
        "'vgg16' is not random or imagenet",
    );
    fails_with_one_line(
        example("train_camvid").args([
            "--encoder-lr-scale",
            "0",
            "--out",
            tmp("encoder-lr").to_str().unwrap(),
        ]),
        "encoder learning-rate scale 0 must be in (0, 1]",
    );
    fails_with_one_line(
        example("train_camvid").args([
            "--encoder",
            "imagenet",
            "--init",
            "runs/some.bpk",
            "--out",
            tmp("imagenet-init").to_str().unwrap(),
        ]),
        "ImageNet encoder",
    );
    fails_with_one_line(
        example("train_camvid").args([
            "--data",
            "/nonexistent/camvid",
            "--out",
            tmp("bad").to_str().unwrap(),
        ]),
        "/nonexistent/camvid",
    );
    fails_with_one_line(
        example("train_camvid").args(["--out", tmp("none").to_str().unwrap(), "--resume"]),
        "nothing to resume",
    );
    fails_with_one_line(
        example("train_camvid").args([
            "--data-parallel",
            "0",
            "--out",
            tmp("dp0").to_str().unwrap(),
        ]),
        "at least one device",
    );
    fails_with_one_line(
        example("train_camvid").args([
            "--init",
            "/nonexistent/start.bpk",
            "--epochs",
            "1",
            "--out",
            tmp("init").to_str().unwrap(),
        ]),
        "/nonexistent/start.bpk",
    );
    fails_with_one_line(
        example("evaluate").args(["--weights", "/nonexistent/w.bpk"]),
        "/nonexistent/w.bpk",
    );
    fails_with_one_line(
        example("evaluate").args(["--scales", "0.75,zero"]),
        "test-time scale 'zero' in '0.75,zero' is not a number",
    );
    fails_with_one_line(
        example("predict").args([
            "--size",
            "240x320",
            "--scales",
            "1,0.01",
            "--out",
            tmp("tiny").to_str().unwrap(),
        ]),
        "test-time scale 0.01: input of 2×3 is too small",
    );
    fails_with_one_line(
        example("evaluate").env("BURN_DEVICE", "bogus"),
        "BURN_DEVICE=\"bogus\"",
    );
    fails_with_one_line(
        example("train_camvid").env("BURN_DEVICE", "bogus").args([
            "--epochs",
            "1",
            "--out",
            tmp("bogus-device").to_str().unwrap(),
        ]),
        "BURN_DEVICE=\"bogus\"",
    );
    for (flag, value, needle) in [
        ("--class-weights", "enet:0.5", "enet:C (C > 1)"),
        ("--class-weights", "mode", "is not median"),
        ("--scale", "0.5:2", "1 <= MIN <= MAX"),
        ("--scale", "2", "MIN:MAX"),
        ("--jaccard", "-1", "jaccard weight"),
        ("--lovasz", "-0.5", "lovasz weight"),
        ("--eval-every", "0", "eval_every"),
        ("--size", "60000x60000", "each side must be 1 to 8192"),
        ("--size", "4294967321x25", "each side must be 1 to 8192"),
        ("--scale", "1:9", "1 <= MIN <= MAX"),
        ("--jitter", "1.5", "0 <= J < 1"),
        ("--jitter", "-0.1", "0 <= J < 1"),
        (
            "--val-sequence",
            "Seq05VD",
            "holding out 'Seq05VD' leaves 16 of 16",
        ),
    ] {
        fails_with_one_line(
            example("train_camvid").args([flag, value, "--out", tmp("bad-flag").to_str().unwrap()]),
            needle,
        );
    }
    // Two inputs with one stem would overwrite each other's outputs.
    let dir = tmp("same-stem");
    std::fs::create_dir_all(&dir).unwrap();
    let sample = squeeze_segnet_data::camvid_sample_root().join("val");
    let first = std::fs::read_dir(&sample)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    image::open(&first)
        .unwrap()
        .save(dir.join("x.png"))
        .unwrap();
    image::open(&first)
        .unwrap()
        .to_rgb8()
        .save(dir.join("x.jpg"))
        .unwrap();
    fails_with_one_line(
        example("predict").args([
            "--out",
            dir.join("out").to_str().unwrap(),
            dir.to_str().unwrap(),
        ]),
        "would both write x_mask.png",
    );
    // segment runs the network at the image's own size: bounded.
    image::RgbImage::new(2049, 30)
        .save(dir.join("wide.png"))
        .unwrap();
    fails_with_one_line(
        example("segment").args(["--image", dir.join("wide.png").to_str().unwrap()]),
        "up to 2048 a side",
    );
    // A damaged config.json beside the weights is reported, not ignored.
    std::fs::copy(squeeze_segnet::camvid_weights_path(), dir.join("w.bpk")).unwrap();
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    fails_with_one_line(
        example("evaluate").args(["--weights", dir.join("w.bpk").to_str().unwrap()]),
        "config.json",
    );
    let _ = std::fs::remove_dir_all(&dir);
    // A run folder whose run.json (data folder, backend) is gone cannot be resumed by guessing.
    let dir = tmp("no-run-json");
    run(example("train_camvid").args([
        "--epochs",
        "2",
        "--stop-after",
        "1",
        "--size",
        "64x80",
        "--out",
        dir.to_str().unwrap(),
    ]));
    std::fs::remove_file(dir.join("run.json")).unwrap();
    fails_with_one_line(
        example("train_camvid").args(["--resume", "--out", dir.to_str().unwrap()]),
        "run.json",
    );
    let _ = std::fs::remove_dir_all(&dir);
    fails_with_one_line(
        example("predict").args(["--weights", "/nonexistent/w.bpk", "/nonexistent/image.png"]),
        "/nonexistent/image.png",
    );
}

#[test]
fn segment_prints_the_summary_and_writes_a_mask() {
    let dir = tmp("segment");
    std::fs::create_dir_all(&dir).unwrap();
    let mask = dir.join("mask.png");
    let out = run(example("segment").args(["--out", mask.to_str().unwrap()]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Without --weights: the shipped network (refinement and context included), freshly
    // initialised.
    assert!(stdout.contains("parameters: 2999179"), "{stdout}");
    assert!(stdout.contains("multiply-accumulates: 4.972 G"), "{stdout}");
    let img = image::open(&mask).unwrap();
    assert_eq!((img.width(), img.height()), (480, 360));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validation_on_a_held_out_sequence() {
    let dir = tmp("held-out");
    let out = run(example("train_camvid").args([
        "--val-sequence",
        "0006R0",
        "--epochs",
        "1",
        "--size",
        "64x80",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(11 train / 5 val images, validation: held-out sequence 0006R0)"),
        "{err}"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A final model on train + val: both splits' pairs, no validation (its scores would be on
/// training images), last.bpk written; a split list with an empty or unknown name is refused.
#[test]
fn training_on_train_and_val() {
    let dir = tmp("train-val");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let tiny = ["--epochs", "1", "--size", "64x80", "--batch-size", "10"];
    let out =
        run(example("train_camvid")
            .args(tiny)
            .args(["--train-splits", "train,val", "--out", d]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(20 train+val / 0 val images)"), "{err}");
    assert!(dir.join("last.bpk").is_file());
    // The final line names the weights that exist (no best.bpk without validation).
    assert!(
        err.contains(&format!("done: weights {d}/last.bpk")),
        "{err}"
    );
    assert!(!dir.join("best.bpk").exists());
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
    assert_eq!(last[6], "", "no validation score: {metrics}");
    let _ = std::fs::remove_dir_all(&dir);
    for (list, needle) in [("train,", "empty split"), ("train,nope", "nope")] {
        fails_with_one_line(
            example("train_camvid")
                .args(tiny)
                .args(["--train-splits", list, "--out", d]),
            needle,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn convert_weights_writes_an_int8_file_that_evaluate_reads() {
    let dir = tmp("convert");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("camvid-int8.bpk");
    let out_s = out.to_str().unwrap();
    let printed = run(example("convert_weights").args(["--precision", "int8", "--out", out_s]));
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(
        text.contains("int8") && text.contains("same class at"),
        "{text}"
    );
    let len = std::fs::metadata(&out).unwrap().len();
    assert!((2_000_000..=3_300_000).contains(&len), "{len} bytes");
    // Nothing already written is replaced without --force, and the input never.
    fails_with_one_line(
        example("convert_weights").args(["--precision", "f16", "--out", out_s]),
        "exists (pass --force",
    );
    let shipped = squeeze_segnet::camvid_weights_path();
    fails_with_one_line(
        example("convert_weights").args([
            "--precision",
            "f16",
            "--force",
            "--out",
            shipped.to_str().unwrap(),
        ]),
        "is the input file",
    );
    fails_with_one_line(
        example("convert_weights").args(["--precision", "int4"]),
        "unknown precision 'int4'",
    );
    // The shipped network's config, found beside the shipped weights, is not beside `out`:
    // evaluate reads the network from the file's tensor names (camvid(), here).
    let eval = run(example("evaluate").args(["--weights", out_s, "--size", "180x240"]));
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(text.contains("class average"), "{text}");
    assert!(
        dir.join("confusion_val.csv").is_file(),
        "next to a run's weights"
    );
    // The shipped int8 file's confusion matrix goes to the working directory, not into the
    // crate's weights folder.
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let int8 = squeeze_segnet::camvid_int8_weights_path();
    run(example("evaluate").current_dir(&work).args([
        "--weights",
        int8.to_str().unwrap(),
        "--size",
        "180x240",
    ]));
    assert!(work.join("confusion_val.csv").is_file());
    assert!(!int8.with_file_name("confusion_val.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stochastic weight averaging as a user runs it: two cycles of one run (the second started from
/// the first's weights), averaged with batch-norm statistics from the training images less a
/// held-out sequence; `evaluate` reads the result at the runs' size; an existing result, a single
/// file and weights of another network are refused with one line.
#[test]
fn average_weights_of_two_cycles_then_evaluate() {
    let dir = tmp("swa");
    let (a, b, c, out) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("avg"));
    let tiny = [
        "--epochs",
        "1",
        "--size",
        "64x80",
        "--val-sequence",
        "0006R0",
    ];
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run(example("train_camvid").args(tiny).args(["--out", &s(&a)]));
    let a_last = s(&a.join("last.bpk"));
    run(example("train_camvid").args(tiny).args([
        "--init",
        &a_last,
        "--freeze-encoder-norms",
        "--out",
        &s(&b),
    ]));
    let b_last = s(&b.join("last.bpk"));
    // A fresh run starts from the ImageNet encoder, fine-tuned at a tenth of the learning rate,
    // unless told otherwise; a run given --init from those weights alone, at one rate; the
    // encoder's batch norms train unless --freeze-encoder-norms.
    let encoder = |run: &Path| {
        let config = TrainingConfig::load_compatible(run.join("config.json")).unwrap();
        (
            config.encoder,
            config.encoder_lr_scale,
            config.freeze_encoder_norms,
        )
    };
    assert_eq!(encoder(&a), (EncoderInit::ImageNet, 0.1, false));
    assert_eq!(encoder(&b), (EncoderInit::Random, 1.0, true));
    let average = |out: &Path, weights: &[&str]| {
        let mut cmd = example("average_weights");
        cmd.args(["--val-sequence", "0006R0", "--out", &s(out), "--weights"])
            .args(weights);
        cmd
    };
    let printed = run(&mut average(&out, &[&a_last, &b_last]));
    let err = String::from_utf8_lossy(&printed.stderr);
    assert!(
        err.contains("batch-norm statistics from 11 train images (64x80 crops, batch 4)"),
        "{err}"
    );
    for f in [
        "averaged.bpk",
        "model.json",
        "config.json",
        "class_weights.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let eval = run(example("evaluate").args(["--weights", &s(&out.join("averaged.bpk"))]));
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        text.contains("class average") && text.contains("mean IoU"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&eval.stderr).contains("model at 64x80"));

    fails_with_one_line(&mut average(&out, &[&a_last, &b_last]), "exists");
    fails_with_one_line(&mut average(&dir.join("one"), &[&a_last]), "--weights");
    run(example("train_camvid")
        .args(tiny)
        .args(["--no-context", "--out", &s(&c)]));
    fails_with_one_line(
        &mut average(&dir.join("mixed"), &[&a_last, &s(&c.join("last.bpk"))]),
        "model 1 is another network",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
