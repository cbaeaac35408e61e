//! Crash tests: `train_camvid` killed (abort, like `kill -9`) in the middle of writing each kind
//! of file of its run folder, then resumed, ends with the metrics of a run that was never
//! interrupted, loadable weights and no temporary file left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{example, tmp};

/// Three short epochs on the embedded sample (two batches each); every epoch writes every kind
/// of file: best.bpk when validation improves, last.bpk, the logs and chart, then a checkpoint
/// (model, optimiser, state, manifest).
fn train(out: &Path) -> Command {
    let mut cmd = example("train_camvid");
    cmd.args([
        "--epochs",
        "3",
        "--size",
        "64x80",
        "--batch-size",
        "8",
        "--out",
    ])
    .arg(out);
    cmd
}

/// metrics.csv without the images-per-second column (timing differs between runs).
fn metrics(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .map(|l| {
            let mut cols: Vec<&str> = l.split(',').collect();
            cols.remove(4);
            cols.join(",")
        })
        .collect()
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn killed_while_writing_any_file_then_resumed_ends_like_an_uninterrupted_run() {
    let reference = tmp("reference");
    let out = train(&reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = metrics(&reference);
    assert_eq!(expected.len(), 4, "header + 3 epochs");

    // Each kind of file, at its second write (at the end of epoch 2, when the newest complete
    // checkpoint is epoch 1's).
    for target in [
        "model.bpk@2",
        "optim.bpk@2",
        "state.json@2",
        "latest.json@2",
        "last.bpk@2",
        "metrics.csv@2",
        "metrics.jsonl@2",
        "chart.png@2",
    ] {
        let dir = tmp(&target.replace(['@', '.'], "-"));
        let killed = train(&dir)
            .env(squeeze_segnet_train::checkpoint::FAULT_ENV, target)
            .output()
            .unwrap();
        assert!(
            !killed.status.success(),
            "{target}: the run should have been killed"
        );
        let err = String::from_utf8_lossy(&killed.stderr);
        assert!(err.contains("killed before writing"), "{target}: {err}");
        assert!(
            !temporaries(&dir).is_empty(),
            "{target}: a half-written file is left"
        );

        let resumed = example("train_camvid")
            .args(["--resume", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            resumed.status.success(),
            "{target}: resume failed: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            metrics(&dir),
            expected,
            "{target}: metrics differ from the uninterrupted run"
        );
        assert_eq!(temporaries(&dir), Vec::<PathBuf>::new(), "{target}");
        for weights in ["best.bpk", "last.bpk"] {
            let eval = example("evaluate")
                .args(["--size", "64x80", "--weights"])
                .arg(dir.join(weights))
                .output()
                .unwrap();
            assert!(
                eval.status.success(),
                "{target}: {weights} does not load: {}",
                String::from_utf8_lossy(&eval.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&reference);
}
