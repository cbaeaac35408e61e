//! Training end to end on small real CamVid images (Flex, seeded): the model overfits two images,
//! an interrupted run resumes to the same weights as an uninterrupted one, and a checkpoint
//! write cut off half-way leaves the previous checkpoint usable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::tensor::Tolerance;
use squeeze_segnet::{SqueezeSegNetConfig, TestTimeAugmentation};
use squeeze_segnet_data::loader::CachedDataset;
use squeeze_segnet_data::{
    SegmentationBatcher, SegmentationDataset, TransformConfig, camvid, camvid_sample_root,
};
use squeeze_segnet_train::checkpoint::CheckpointDir;
use squeeze_segnet_train::{
    ClassWeighting, EncoderInit, EpochRecord, LOCK_FILE, OptimizerKind, RunOptions, TrainError,
    Trainer, TrainingConfig, evaluate,
};

/// Continue the run folder's latest checkpoint to the end.
const RESUME: RunOptions = RunOptions {
    resume: true,
    stop_after_epochs: None,
    verbose: false,
};

/// The first `n` pairs of the embedded sample's training split.
fn sample(n: usize) -> SegmentationDataset {
    let all = camvid(camvid_sample_root(), "train").unwrap();
    SegmentationDataset::new(
        all.paths()[..n].to_vec(),
        all.num_classes(),
        squeeze_segnet_data::MaskEncoding::Index {
            ignore: all.ignore(),
        },
    )
    .unwrap()
}

/// The backend's random generator is global: tests that initialise networks from a seed must not
/// run at the same time as others that draw from it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssn-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A small, fast recipe: 64×80 inputs, no augmentation.
fn small_config() -> TrainingConfig {
    TrainingConfig::new()
        .with_size([64, 80])
        .with_batch_size(2)
        .with_augment(false)
        .with_warmup_epochs(0)
        .with_seed(7)
}

/// Pixel accuracy on `data` at 64×80: in inference mode (batch norm's running statistics), and
/// in training mode (statistics of the batch itself, as during the steps).
fn pixel_accuracy(model: &squeeze_segnet::SqueezeSegNet, data: SegmentationDataset) -> (f64, f64) {
    let transform = TransformConfig::new([64, 80]);
    let data = Arc::new(CachedDataset::new(data, false));
    let eval = evaluate(
        model,
        data.clone(),
        transform.clone(),
        2,
        &TestTimeAugmentation::none(),
        &Device::flex(),
    )
    .unwrap();
    let items: Vec<_> = (0..data.len())
        .map(|i| {
            transform.apply(
                &data.get(i).unwrap(),
                &mut squeeze_segnet_data::SplitMix64::new(0),
            )
        })
        .collect();
    let ad = Device::flex().autodiff();
    let batch = SegmentationBatcher.batch(items, &ad);
    let [n, h, w] = batch.masks.dims();
    let predictions = model
        .clone()
        .fork(&ad)
        .train()
        .forward(batch.images)
        .unwrap()
        .argmax(1)
        .reshape([n, h, w]);
    let mut train = squeeze_segnet_train::ConfusionMatrix::new(11);
    train
        .add_tensors(predictions.inner(), batch.masks.inner(), 11)
        .unwrap();
    (
        eval.scores().global_accuracy,
        train.scores().global_accuracy,
    )
}

#[test]
fn overfits_two_images() {
    let _serial = serial();
    let dir = tmp_dir("overfit");
    let config = small_config()
        .with_epochs(100)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(0.01)
        .with_class_weighting(ClassWeighting::Uniform)
        .with_schedule(squeeze_segnet_train::Schedule::Cosine);
    let fresh = config.model.init(&Device::flex()).unwrap();
    let before = pixel_accuracy(&fresh, sample(2));
    let trainer = Trainer::new(config, Device::flex(), sample(2), None, &dir).unwrap();
    let outcome = trainer.run(RunOptions::default()).unwrap();
    let first = outcome.history.first().unwrap().train_loss;
    let last = outcome.history.last().unwrap().train_loss;
    let after = pixel_accuracy(&outcome.model, sample(2));
    assert!(
        last < 0.3 * first,
        "loss {first:.3} -> {last:.3}: expected below 30 %"
    );
    // With batch statistics (as in the steps) the two images are mostly learnt; batch norm's
    // running statistics lag behind the fast-moving weights of such a short run, so inference
    // mode gains less, but must gain clearly too.
    assert!(
        after.1 > 0.75 && after.1 > before.1 + 0.4,
        "training-mode pixel accuracy {:.3} -> {:.3}: expected +0.4 and above 0.75",
        before.1,
        after.1
    );
    assert!(
        after.0 > before.0 + 0.25,
        "inference-mode pixel accuracy {:.3} -> {:.3}: expected +0.25",
        before.0,
        after.0
    );
    // The run folder holds what a user looks for.
    for f in [
        "config.json",
        "model.json",
        "metrics.csv",
        "metrics.jsonl",
        "chart.png",
        "last.bpk",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 101, "a header and one line per epoch");
    let chart = image::open(dir.join("chart.png")).unwrap();
    assert_eq!((chart.width(), chart.height()), (960, 400));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The logits of the weights in `path` on a fixed input: equal logits, equal networks.
fn logits_of(path: &Path) -> TensorData {
    logits_of_network(path, SqueezeSegNetConfig::camvid())
}

/// [`logits_of`] for a network other than the training recipe's default.
fn logits_of_network(path: &Path, config: SqueezeSegNetConfig) -> TensorData {
    let device = Device::flex();
    let model = config.init(&device).and_then(|m| m.load(path)).unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..3 * 64 * 80)
                .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
                .collect(),
            [1, 3, 64, 80],
        ),
        &device,
    );
    model.forward(x).unwrap().into_data()
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one() {
    let _serial = serial();
    let split =
        resumed_matches_uninterrupted(|| small_config().with_epochs(2).with_batch_size(2), "plain");
    let _ = std::fs::remove_dir_all(&split);
}

#[test]
fn a_resumed_imagenet_encoder_run_matches_an_uninterrupted_one() {
    // The encoder is set once, at the fresh start: a resumed run continues from its checkpoint.
    let _serial = serial();
    let config = || {
        small_config()
            .with_model(SqueezeSegNetConfig::camvid())
            .with_encoder(EncoderInit::ImageNet)
            .with_epochs(2)
    };
    let dir = resumed_matches_uninterrupted(config, "imagenet");
    let _ = std::fs::remove_dir_all(dir);
}

/// The auxiliary head is trained and checkpointed with the network, and ClassMix draws from the
/// seed, epoch and batch: a resumed run that started the head afresh, lost its optimiser state or
/// mixed other pairs would not land on the uninterrupted run's weights.
#[test]
fn a_resumed_run_with_an_auxiliary_loss_and_class_mix_matches_an_uninterrupted_one() {
    let _serial = serial();
    let config = || {
        small_config()
            .with_epochs(2)
            .with_aux_weight(0.4)
            .with_class_mix(0.5)
    };
    let split = resumed_matches_uninterrupted(config, "aux");
    let ckpts = CheckpointDir::new(&split, 2);
    let (files, _) = ckpts.latest().unwrap().expect("a committed checkpoint");
    assert!(files.aux.is_file(), "{} is missing", files.aux.display());
    let _ = std::fs::remove_dir_all(&split);

    // A checkpoint without the head cannot be resumed as if it had one.
    let dir = tmp_dir("aux-missing");
    let t = Trainer::new(config(), Device::flex(), sample(2), None, &dir).unwrap();
    t.run(RunOptions {
        stop_after_epochs: Some(1),
        ..Default::default()
    })
    .unwrap();
    let (files, _) = CheckpointDir::new(&dir, 2).latest().unwrap().unwrap();
    std::fs::remove_file(&files.aux).unwrap();
    let t = Trainer::new(config(), Device::flex(), sample(2), None, &dir).unwrap();
    let err = t.run(RESUME).unwrap_err();
    assert!(
        matches!(&err, TrainError::Checkpoint { path, .. } if path == &files.aux),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Trains `config()` straight through and in three sittings (stopped inside epoch 1, after epoch
/// 1, then to the end) and checks both end on the same weights and history. Returns the
/// three-sittings run's folder (the straight one is removed).
fn resumed_matches_uninterrupted(config: impl Fn() -> TrainingConfig, name: &str) -> PathBuf {
    let val = || Some(sample(2));

    let straight = tmp_dir(&format!("straight-{name}"));
    Trainer::new(config(), Device::flex(), sample(4), val(), &straight)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();

    // Stop after the first batch (as Ctrl-C would), resume, stop after epoch 1, resume again.
    let split = tmp_dir(&format!("split-{name}"));
    let t = Trainer::new(config(), Device::flex(), sample(4), val(), &split).unwrap();
    t.stop_flag().store(true, Ordering::SeqCst);
    let o = t.run(RunOptions::default()).unwrap();
    assert!(
        o.interrupted && o.history.is_empty(),
        "stopped inside epoch 1"
    );
    let t = Trainer::new(config(), Device::flex(), sample(4), val(), &split).unwrap();
    let o = t
        .run(RunOptions {
            resume: true,
            stop_after_epochs: Some(1),
            verbose: false,
        })
        .unwrap();
    assert!(o.interrupted);
    assert_eq!(o.history.len(), 1);
    let t = Trainer::new(config(), Device::flex(), sample(4), val(), &split).unwrap();
    let o = t.run(RESUME).unwrap();
    assert!(!o.interrupted);
    assert_eq!(o.history.len(), 2);

    logits_of(&straight.join("last.bpk")).assert_approx_eq::<f32>(
        &logits_of(&split.join("last.bpk")),
        Tolerance::rel_abs(1e-3, 1e-4),
    );
    let history = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let (h1, h2) = (history(&straight), history(&split));
    assert_eq!(h1.lines().count(), 2);
    assert_eq!(h2.lines().count(), 2);
    for (a, b) in h1.lines().zip(h2.lines()) {
        let (a, b): (EpochRecord, EpochRecord) = (
            serde_json::from_str(a).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        assert_eq!((a.epoch, a.step, a.lr), (b.epoch, b.step, b.lr));
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-4,
            "{} vs {}",
            a.train_loss,
            b.train_loss
        );
        let (va, vb) = (a.val.unwrap(), b.val.unwrap());
        assert!((va.class_average_accuracy - vb.class_average_accuracy).abs() < 1e-3);
        assert!((va.mean_iou - vb.mean_iou).abs() < 1e-3);
    }
    let _ = std::fs::remove_dir_all(&straight);
    split
}

#[test]
fn a_checkpoint_cut_off_half_way_leaves_the_previous_one_usable() {
    let _serial = serial();
    let dir = tmp_dir("cut");
    let config = || small_config().with_epochs(2);
    let t = Trainer::new(config(), Device::flex(), sample(2), None, &dir).unwrap();
    t.run(RunOptions {
        stop_after_epochs: Some(1),
        ..Default::default()
    })
    .unwrap();
    let ckpts = CheckpointDir::new(&dir, 2);
    let (committed, state) = ckpts.latest().unwrap().expect("epoch 1 is committed");
    assert_eq!((state.epoch, state.batch), (1, 0));

    // A kill while writing the next checkpoint: its folder holds a truncated model, no state,
    // and a temporary manifest that never replaced the real one.
    let next = ckpts.prepare(2, 0).unwrap();
    let bytes = std::fs::read(&committed.model).unwrap();
    std::fs::write(&next.model, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        dir.join("checkpoints/.latest.json.999.tmp"),
        b"{\"dir\": \"e0002",
    )
    .unwrap();
    let (again, _) = ckpts.latest().unwrap().unwrap();
    assert_eq!(again.dir, committed.dir, "the manifest still names epoch 1");

    // Resuming uses epoch 1's checkpoint and finishes the run.
    let t = Trainer::new(config(), Device::flex(), sample(2), None, &dir).unwrap();
    let o = t.run(RESUME).unwrap();
    assert_eq!(o.history.len(), 2);
    assert!(!o.interrupted);

    // A manifest pointing at a damaged checkpoint is an error that names the file, not a panic.
    let (files, _) = ckpts.latest().unwrap().unwrap();
    let bytes = std::fs::read(&files.model).unwrap();
    std::fs::write(&files.model, &bytes[..bytes.len() / 3]).unwrap();
    let t = Trainer::new(
        config().with_epochs(3),
        Device::flex(),
        sample(2),
        None,
        &dir,
    )
    .unwrap();
    let err = t.run(RESUME).unwrap_err();
    assert!(err.to_string().contains("model.bpk"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_folder_misuse_is_a_clear_error() {
    let _serial = serial();
    let dir = tmp_dir("misuse");
    let t = Trainer::new(
        small_config().with_epochs(1),
        Device::flex(),
        sample(2),
        None,
        &dir,
    )
    .unwrap();
    assert!(matches!(t.run(RESUME), Err(TrainError::NothingToResume(_))));
    t.run(RunOptions::default()).unwrap();
    assert!(matches!(
        t.run(RunOptions::default()),
        Err(TrainError::RunExists(_))
    ));
    let other = small_config().with_epochs(1).with_lr(0.01);
    let t = Trainer::new(other, Device::flex(), sample(2), None, &dir).unwrap();
    let err = t.run(RESUME).unwrap_err();
    assert!(
        matches!(&err, TrainError::ResumeMismatch { field, .. } if field == "lr"),
        "{err}"
    );
    assert!(
        Trainer::new(
            small_config().with_batch_size(0),
            Device::flex(),
            sample(2),
            None,
            &dir
        )
        .is_err()
    );
    assert!(
        Trainer::new(
            small_config().with_size([8, 8]),
            Device::flex(),
            sample(2),
            None,
            &dir
        )
        .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resuming_against_changed_surroundings_is_refused() {
    let _serial = serial();
    let dir = tmp_dir("surroundings");
    let config = small_config().with_epochs(3);
    let t = Trainer::new(config.clone(), Device::flex(), sample(4), None, &dir).unwrap();
    t.run(RunOptions {
        stop_after_epochs: Some(1),
        ..Default::default()
    })
    .unwrap();
    let resume = RunOptions {
        resume: true,
        stop_after_epochs: Some(2),
        ..Default::default()
    };
    // The training split shrank.
    let t = Trainer::new(config.clone(), Device::flex(), sample(2), None, &dir).unwrap();
    let err = t.run(resume.clone()).unwrap_err();
    assert!(
        matches!(&err, TrainError::ResumeMismatch { field, .. } if field == "training split"),
        "{err}"
    );
    // config.json edited by hand (the trainer is given what the file now says).
    let path = dir.join("config.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = config.clone().with_lr(0.01);
    std::fs::write(&path, edited.to_string()).unwrap();
    let t = Trainer::new(edited, Device::flex(), sample(4), None, &dir).unwrap();
    let err = t.run(resume.clone()).unwrap_err();
    assert!(
        matches!(&err, TrainError::ResumeMismatch { field, .. } if field.starts_with("recipe")),
        "{err}"
    );
    // Put back, it resumes; a longer run (more epochs) is not a different recipe, a shorter
    // one than what is done is an error, not a "done" with nothing trained.
    std::fs::write(&path, original).unwrap();
    let t = Trainer::new(
        config.clone().with_epochs(4),
        Device::flex(),
        sample(4),
        None,
        &dir,
    )
    .unwrap();
    let outcome = t.run(RESUME).unwrap();
    assert!(!outcome.interrupted);
    assert_eq!(outcome.history.len(), 4);
    let t = Trainer::new(config.with_epochs(2), Device::flex(), sample(4), None, &dir).unwrap();
    let err = t.run(RESUME).unwrap_err();
    assert!(
        matches!(&err, TrainError::ResumeMismatch { field, .. } if field == "epochs"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_locked_run_folder_is_refused_and_stale_temporaries_are_removed() {
    let _serial = serial();
    let dir = tmp_dir("lock");
    std::fs::create_dir_all(dir.join("checkpoints/old")).unwrap();
    // What a killed run leaves: half-written siblings of the files it was replacing.
    let stale = [
        dir.join(".metrics.csv.123.tmp"),
        dir.join("last.bpk.123-0.tmp"),
        dir.join("checkpoints/old/model.bpk.99-1.tmp"),
    ];
    for f in &stale {
        std::fs::write(f, b"half").unwrap();
    }
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    held.try_lock().unwrap();
    let t = Trainer::new(
        small_config().with_epochs(1),
        Device::flex(),
        sample(2),
        None,
        &dir,
    )
    .unwrap();
    let err = t.run(RunOptions::default()).unwrap_err();
    assert!(matches!(err, TrainError::Locked(_)), "{err}");
    assert!(err.to_string().contains(".lock"), "{err}");
    assert!(
        stale.iter().all(|f| f.exists()),
        "nothing is touched while another run holds it"
    );
    drop(held);
    t.run(RunOptions::default()).unwrap();
    assert!(stale.iter().all(|f| !f.exists()), "the next run cleans up");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn saved_weights_include_the_last_batch_norm_update() {
    // Burn's batch norm keeps the last running-statistics update pending until a sync; a
    // checkpoint taken right after a training step must still include it.
    let _serial = serial();
    let ad = Device::flex().autodiff();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&ad)
        .unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * 3 * 64 * 80)
                .map(|i| ((i % 97) as f32 / 20.0) - 1.0)
                .collect(),
            [2, 3, 64, 80],
        ),
        &ad,
    );
    let _ = model.forward(x.clone()).unwrap().sum().into_scalar::<f32>();
    let dir = tmp_dir("bn");
    std::fs::create_dir_all(&dir).unwrap();
    let path = model.save(dir.join("m.bpk")).unwrap();
    let expected = model
        .valid()
        .forward(x.clone().inner())
        .unwrap()
        .into_data();
    let loaded = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&Device::flex())
        .and_then(|m| m.load(&path))
        .unwrap();
    loaded
        .forward(x.inner())
        .unwrap()
        .into_data()
        .assert_approx_eq::<f32>(&expected, Tolerance::default());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The training recipe without batch norm: runs whose steps agree give the same weights
/// (batch norm's running statistics would move even without a step).
fn no_batch_norm() -> SqueezeSegNetConfig {
    SqueezeSegNetConfig::camvid().with_batch_norm(false)
}

#[test]
fn fine_tuning_starts_from_the_given_weights() {
    let _serial = serial();
    let base = tmp_dir("finetune-base");
    let config = || small_config().with_model(no_batch_norm()).with_epochs(1);
    Trainer::new(config(), Device::flex(), sample(2), None, &base)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    let weights = base.join("last.bpk");
    // A learning rate too small to move anything: the run ends where it started.
    let still = |init: Option<String>, name: &str| {
        let dir = tmp_dir(name);
        let c = config()
            .with_lr(1e-12)
            .with_seed(99)
            .with_init_weights(init);
        Trainer::new(c, Device::flex(), sample(2), None, &dir)
            .unwrap()
            .run(RunOptions::default())
            .unwrap();
        logits_of_network(&dir.join("last.bpk"), no_batch_norm())
    };
    let expected = logits_of_network(&weights, no_batch_norm());
    let tuned = still(
        Some(weights.to_string_lossy().into_owned()),
        "finetune-init",
    );
    tuned.assert_approx_eq::<f32>(&expected, Tolerance::rel_abs(1e-4, 1e-5));
    // Without them, the same run starts from its own random weights.
    let fresh = still(None, "finetune-fresh");
    let differs = fresh
        .iter::<f32>()
        .zip(expected.iter::<f32>())
        .any(|(a, b)| (a - b).abs() > 1e-2);
    assert!(
        differs,
        "a fresh run should not match the base run's weights"
    );

    // A missing file is an error naming it, before anything is written.
    let missing = base.join("missing.bpk");
    let dir = tmp_dir("finetune-missing");
    let c = config().with_init_weights(Some(missing.to_string_lossy().into_owned()));
    let err = Trainer::new(c, Device::flex(), sample(2), None, &dir)
        .err()
        .expect("a missing file is refused");
    assert!(err.to_string().contains("missing.bpk"), "{err}");
    assert!(!dir.exists(), "nothing written");
    for d in [base, dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn data_parallel_training_matches_one_device() {
    let _serial = serial();
    let config = || {
        small_config()
            .with_model(no_batch_norm())
            .with_epochs(1)
            .with_batch_size(4)
    };
    let single = tmp_dir("dp-single");
    let o = Trainer::new(config(), Device::flex(), sample(4), None, &single)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    let single_loss = o.history[0].train_loss;
    let split = tmp_dir("dp-split");
    let o = Trainer::new(config(), Device::flex(), sample(4), None, &split)
        .unwrap()
        .with_data_parallel(vec![Device::flex(), Device::flex()])
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    let split_loss = o.history[0].train_loss;
    assert!(
        (split_loss - single_loss).abs() < 1e-4 * single_loss,
        "loss {split_loss} vs {single_loss}"
    );
    let a = logits_of_network(&single.join("last.bpk"), no_batch_norm());
    let b = logits_of_network(&split.join("last.bpk"), no_batch_norm());
    a.assert_approx_eq::<f32>(&b, Tolerance::rel_abs(1e-3, 1e-4));
    let untrained = tmp_dir("dp-untrained");
    let err = Trainer::new(config(), Device::flex(), sample(4), None, &untrained)
        .unwrap()
        .with_data_parallel(Vec::new())
        .err()
        .expect("no devices is refused");
    assert!(matches!(err, TrainError::Config(_)), "{err}");
    for d in [single, split] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// AdamW's weight decay is decoupled: after one step, the weights of a run with decay `wd`
/// differ from those of the same run without decay by exactly `−lr · wd · θ₀` (every weight
/// shrinks by `1 − lr · wd`, whatever its gradient). Adam's L2 decay goes through the gradient
/// and its normalisation instead, which this test tells apart.
/// One epoch of `config` on two images at batch 2 (one step, constant learning rate) from the
/// weights in `start`, run in `out`.
fn one_step_from(
    config: TrainingConfig,
    start: &Path,
    out: &Path,
) -> squeeze_segnet::SqueezeSegNet {
    let config = config
        .with_epochs(1)
        .with_schedule(squeeze_segnet_train::Schedule::Constant)
        .with_init_weights(Some(start.to_string_lossy().into_owned()));
    let trainer = Trainer::new(config, Device::flex(), sample(2), None, out).unwrap();
    let outcome = trainer.run(RunOptions::default()).unwrap();
    assert_eq!(outcome.history.len(), 1);
    outcome.model
}

/// A fresh `small_config()` network saved as `start.bpk` in a new folder named `name`:
/// `(folder, start file, network)`, the start of the one-step tests.
fn saved_start(name: &str) -> (PathBuf, PathBuf, squeeze_segnet::SqueezeSegNet) {
    let dir = tmp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let start = dir.join("start.bpk");
    let initial = small_config().model.init(&Device::flex()).unwrap();
    initial.save(&start).unwrap();
    (dir, start, initial)
}

/// `model`'s float values by path, batch norm's running statistics included.
fn float_values(model: &squeeze_segnet::SqueezeSegNet) -> Vec<(String, Vec<f32>)> {
    let mut all = Vec::new();
    squeeze_segnet::visit_float_params(model, |path, _, tensor| {
        all.push((
            path.to_string(),
            tensor().to_data().try_to_vec::<f32>().unwrap(),
        ));
    });
    all
}

/// `model`'s trainable values by path (batch norm's running statistics left out).
fn trainable_values(model: &squeeze_segnet::SqueezeSegNet) -> Vec<(String, Vec<f32>)> {
    let mut all = float_values(model);
    all.retain(|(path, _)| !path.contains("running_"));
    all
}

#[test]
fn adamw_decay_is_decoupled_from_the_gradient() {
    let _serial = serial();
    let (dir, start, initial) = saved_start("adamw");
    let (lr, wd) = (0.01, 0.5);
    let one_step = |optimizer: OptimizerKind, decay: f64, name: &str| {
        let config = small_config()
            .with_optimizer(optimizer)
            .with_lr(lr)
            .with_weight_decay(decay);
        one_step_from(config, &start, &dir.join(name))
    };
    let theta0 = trainable_values(&initial);
    let decoupled = |plain: &[(String, Vec<f32>)], decayed: &[(String, Vec<f32>)]| {
        let mut worst = 0f32;
        for ((path, t0), ((_, a), (_, b))) in theta0.iter().zip(plain.iter().zip(decayed)) {
            for ((&t, &a), &b) in t0.iter().zip(a).zip(b) {
                let err = (b - a + (lr * wd) as f32 * t).abs();
                assert!(err.is_finite(), "{path}");
                worst = worst.max(err);
            }
        }
        worst
    };
    let plain = trainable_values(&one_step(OptimizerKind::AdamW, 0.0, "adamw0"));
    let decayed = trainable_values(&one_step(OptimizerKind::AdamW, wd, "adamw"));
    let err = decoupled(&plain, &decayed);
    assert!(
        err < 1e-6,
        "AdamW: decayed − plain is −lr·wd·θ₀ within {err}"
    );
    // Adam's L2 term changes the normalised update instead: not that difference.
    let plain = trainable_values(&one_step(OptimizerKind::Adam, 0.0, "adam0"));
    let decayed = trainable_values(&one_step(OptimizerKind::Adam, wd, "adam"));
    let err = decoupled(&plain, &decayed);
    assert!(err > 1e-4, "Adam's coupled decay should differ ({err})");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_encoder_learns_at_its_scaled_rate() {
    let _serial = serial();
    let (dir, start, initial) = saved_start("encoder-lr");
    // One SGD step (batch 2 of 2 images) from the same weights: the update is −lr·g, so a scale
    // s on the encoder's rate scales exactly the encoder's updates.
    let one_step = |scale: f64, name: &str| {
        let config = small_config()
            .with_optimizer(OptimizerKind::Sgd)
            .with_lr(0.01)
            .with_weight_decay(0.0)
            .with_encoder_lr_scale(scale);
        one_step_from(config, &start, &dir.join(name))
    };
    let (theta0, full, quarter) = (
        trainable_values(&initial),
        trainable_values(&one_step(1.0, "full")),
        trainable_values(&one_step(0.25, "quarter")),
    );
    let (mut encoder_moved, mut decoder_moved) = (0f32, 0f32);
    for ((path, t0), ((_, f), (_, q))) in theta0.iter().zip(full.iter().zip(&quarter)) {
        let encoder = path.starts_with("conv1.") || path.starts_with("fire");
        let s = if encoder { 0.25 } else { 1.0 };
        for ((&t, &f), &q) in t0.iter().zip(f).zip(q) {
            let err = ((q - t) - s * (f - t)).abs();
            assert!(
                err <= 2e-6,
                "{path}: update {} against {s} x {}",
                q - t,
                f - t
            );
            if encoder {
                encoder_moved = encoder_moved.max((f - t).abs());
            } else {
                decoder_moved = decoder_moved.max((f - t).abs());
            }
        }
    }
    assert!(
        encoder_moved > 1e-4 && decoder_moved > 1e-4,
        "{encoder_moved} {decoder_moved}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `freeze_encoder_norms`: one training step normalises the encoder with its running statistics
/// and leaves them as they were, while the decoder's move towards the batch's; the encoder's
/// convolutions, γ and β still learn.
#[test]
fn frozen_encoder_norms_keep_their_statistics_and_still_learn() {
    let _serial = serial();
    let (dir, start, initial) = saved_start("frozen-norms");
    let config = small_config().with_freeze_encoder_norms(true);
    let (before, after) = (
        float_values(&initial),
        float_values(&one_step_from(config, &start, &dir.join("run"))),
    );
    let mut moved = std::collections::BTreeMap::<(bool, bool), f32>::new();
    for ((path, b), (path_after, a)) in before.iter().zip(&after) {
        assert_eq!(path, path_after);
        let encoder = path.starts_with("conv1.") || path.starts_with("fire");
        let running = path.contains("running_");
        let change = b
            .iter()
            .zip(a)
            .map(|(b, a)| (a - b).abs())
            .fold(0f32, f32::max);
        if encoder && running {
            assert_eq!(change, 0.0, "{path} moved by {change}");
        }
        let entry = moved.entry((encoder, running)).or_default();
        *entry = entry.max(change);
    }
    // The decoder's statistics, the encoder's and the decoder's parameters all moved.
    for key in [(false, true), (true, false), (false, false)] {
        assert!(moved[&key] > 1e-5, "{key:?}: {moved:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_imagenet_encoder_run_starts_from_the_imagenet_weights() {
    let _serial = serial();
    let encoder = squeeze_segnet::ImageNetEncoder::shipped().unwrap();
    let dir = tmp_dir("imagenet");
    // A learning rate too small to move anything: the saved weights are where the run started.
    let config = small_config()
        .with_model(SqueezeSegNetConfig::camvid())
        .with_encoder(EncoderInit::ImageNet)
        .with_lr(1e-12)
        .with_epochs(1);
    Trainer::new(config.clone(), Device::flex(), sample(2), None, &dir)
        .unwrap()
        .run(RunOptions::default())
        .unwrap();
    let model = SqueezeSegNetConfig::camvid()
        .init(&Device::flex())
        .unwrap()
        .load(dir.join("last.bpk"))
        .unwrap();
    let close = |got: Vec<f32>, want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{what}: relative difference {worst}");
    };
    let values =
        |p: &burn::module::Param<Tensor<4>>| p.val().into_data().try_to_vec::<f32>().unwrap();
    let (conv1, _) = encoder
        .conv1_for_input(squeeze_segnet::CAMVID_MEAN, squeeze_segnet::CAMVID_STD)
        .unwrap();
    close(values(&model.conv1.conv.weight), &conv1, "conv1");
    let (_, fire9, _) = encoder.layer("fire9.expand3x3").unwrap();
    close(
        values(&model.fire9.expand3x3.conv.weight),
        fire9,
        "fire9.expand3x3",
    );
    // The norms were calibrated: γ = √(σ² + ε) of outputs far from unit scale, β = μ + bias,
    // running statistics moved from their defaults (0 and 1) in the first block and the last.
    for (what, block) in [
        ("conv1", &model.conv1),
        ("fire9.expand3x3", &model.fire9.expand3x3),
    ] {
        let norm = block.norm.as_ref().unwrap();
        let gamma: Vec<f32> = norm.gamma.val().into_data().try_to_vec().unwrap();
        let var: Vec<f32> = norm.running_var.value().into_data().try_to_vec().unwrap();
        let unit = |v: &[f32]| v.iter().all(|x| (x - 1.0).abs() < 1e-3);
        assert!(!unit(&gamma) && !unit(&var), "{what}: a default norm");
    }
    let smallest: f32 = model
        .conv1
        .norm
        .as_ref()
        .unwrap()
        .gamma
        .val()
        .min()
        .into_scalar();
    assert!(
        smallest > 1.0,
        "conv1's outputs are far from unit scale ({smallest})"
    );

    // --init replaces the whole network: both at once is refused before anything is written.
    let both = tmp_dir("imagenet-and-init");
    let c = config.with_init_weights(Some(dir.join("last.bpk").to_string_lossy().into_owned()));
    let err = Trainer::new(c, Device::flex(), sample(2), None, &both)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("ImageNet encoder"), "{err}");
    assert!(!both.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}
