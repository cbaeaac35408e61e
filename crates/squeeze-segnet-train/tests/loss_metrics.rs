//! The loss against hand computations (void pixels contribute nothing), the auxiliary head's loss
//! and label sampling likewise, and the metrics against confusion matrices counted by hand;
//! scoring refuses a model of other classes than the data.

use burn::prelude::*;
use burn::tensor::Tolerance;
use squeeze_segnet_train::{
    AuxHeadConfig, ConfusionMatrix, cell_centres, lovasz_softmax_loss, segmentation_cross_entropy,
    soft_jaccard_loss,
};

const VOID: usize = 3;

/// Logits of 3 classes over a 1×2×2 image: pixel p has logits `rows[p]`.
fn logits(rows: [[f32; 3]; 4], device: &Device) -> Tensor<4> {
    // [1, 3, 2, 2]: channel-major.
    let mut data = vec![0f32; 12];
    for (p, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            data[c * 4 + p] = *v;
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 3, 2, 2]), device)
}

fn targets(t: [i64; 4], device: &Device) -> Tensor<3, Int> {
    Tensor::from_data(TensorData::new(t.to_vec(), [1, 2, 2]), device)
}

fn log_softmax(row: [f32; 3]) -> [f64; 3] {
    let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
    row.map(|v| v as f64 - m - s.ln())
}

const ROWS: [[f32; 3]; 4] = [
    [2.0, 0.5, -1.0],
    [0.1, 0.2, 0.3],
    [-0.5, 1.5, 0.0],
    [3.0, -2.0, 1.0],
];

#[test]
fn weighted_loss_matches_a_hand_computation() {
    let device = Device::flex();
    let w = [0.5f32, 2.0, 1.0];
    let t = [0i64, 2, 1, VOID as i64];
    let loss = segmentation_cross_entropy(
        logits(ROWS, &device),
        targets(t, &device),
        Tensor::from_floats(w, &device),
        VOID,
    );
    // Σ w[y] · (−log p[y]) / Σ w[y] over the three labelled pixels.
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for p in 0..3 {
        let y = t[p] as usize;
        num -= w[y] as f64 * log_softmax(ROWS[p])[y];
        den += w[y] as f64;
    }
    let expected = (num / den) as f32;
    let got: f32 = loss.into_scalar();
    assert!(
        (got - expected).abs() < 1e-5,
        "loss {got}, expected {expected}"
    );
}

/// Labels `10·row + column` of a `rows × cols` map, batch 1.
fn numbered(rows: usize, cols: usize, device: &Device) -> Tensor<3, Int> {
    let data: Vec<i64> = (0..rows * cols)
        .map(|i| (10 * (i / cols) + i % cols) as i64)
        .collect();
    Tensor::from_data(TensorData::new(data, [1, rows, cols]), device)
}

/// Shape and values of an integer tensor, whatever the backend's integer type.
fn ints(t: Tensor<3, Int>) -> ([usize; 3], Vec<i64>) {
    (
        t.dims(),
        t.into_data().convert::<i64>().try_to_vec().unwrap(),
    )
}

#[test]
fn cell_centres_sample_the_middle_of_each_cell() {
    let device = Device::flex();
    let centres = ([1, 2, 3], vec![11, 13, 15, 31, 33, 35]);
    // 4×6 into 2×3 cells of 2×2: centres at rows 1, 3 and columns 1, 3, 5.
    assert_eq!(ints(cell_centres(numbered(4, 6, &device), [2, 3])), centres);
    // 5×7 into 2×3: rows ⌊5/4⌋ = 1, ⌊15/4⌋ = 3; columns ⌊7/6⌋ = 1, ⌊21/6⌋ = 3, ⌊35/6⌋ = 5.
    assert_eq!(ints(cell_centres(numbered(5, 7, &device), [2, 3])), centres);
    // One cell: the middle pixel; as many cells as pixels: the map itself.
    assert_eq!(
        ints(cell_centres(numbered(3, 3, &device), [1, 1])),
        ([1, 1, 1], vec![11])
    );
    let map = numbered(3, 4, &device);
    assert_eq!(ints(cell_centres(map.clone(), [3, 4])), ints(map));
}

#[test]
fn the_auxiliary_loss_is_the_weighted_loss_at_the_cell_centres() {
    let device = Device::flex();
    // An identity head: the features are the logits.
    let mut head = AuxHeadConfig::new(3, 3).init(&device);
    let eye: Vec<f32> = (0..9).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
    head.conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(eye, [3, 3, 1, 1]),
        &device,
    ));
    head.conv.bias = None;
    // 4×4 labels; the 2×2 cells' centres (rows and columns 1 and 3) hold [0, 2, 1, void], the
    // rest is filled with labels that would change the loss if they were read.
    let mut labels = vec![1i64; 16];
    for (p, &t) in [0i64, 2, 1, VOID as i64].iter().enumerate() {
        labels[(1 + 2 * (p / 2)) * 4 + 1 + 2 * (p % 2)] = t;
    }
    let w = [0.5f32, 2.0, 1.0];
    let loss: f32 = head
        .loss(
            logits(ROWS, &device),
            Tensor::from_data(TensorData::new(labels, [1, 4, 4]), &device),
            Tensor::from_floats(w, &device),
            VOID,
        )
        .into_scalar();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (p, y) in [0usize, 2, 1].into_iter().enumerate() {
        num -= w[y] as f64 * log_softmax(ROWS[p])[y];
        den += w[y] as f64;
    }
    let expected = (num / den) as f32;
    assert!(
        (loss - expected).abs() < 1e-5,
        "loss {loss}, expected {expected}"
    );
}

#[test]
fn void_pixels_contribute_neither_loss_nor_gradient() {
    let device = Device::flex().autodiff();
    let w = Tensor::<1>::from_floats([1.0, 3.0, 0.5], &device);
    let t = [1i64, VOID as i64, 0, VOID as i64];
    let mut changed = ROWS;
    changed[1] = [9.0, -9.0, 4.0]; // a void pixel: its logits must not matter
    changed[3] = [-7.0, 7.0, 0.0];
    let a = logits(ROWS, &device).require_grad();
    let loss_a = segmentation_cross_entropy(a.clone(), targets(t, &device), w.clone(), VOID);
    let loss_b = segmentation_cross_entropy(logits(changed, &device), targets(t, &device), w, VOID);
    loss_a
        .clone()
        .into_data()
        .assert_approx_eq::<f32>(&loss_b.into_data(), Tolerance::default());
    let grads = loss_a.backward();
    let g = a.grad(&grads).expect("logits have a gradient").into_data();
    let g = g.try_to_vec::<f32>().unwrap();
    for c in 0..3 {
        for p in [1, 3] {
            assert_eq!(g[c * 4 + p], 0.0, "void pixel {p} class {c} got a gradient");
        }
        for p in [0, 2] {
            assert!(
                g[c * 4 + p] != 0.0,
                "labelled pixel {p} class {c} has no gradient"
            );
        }
    }
}

#[test]
fn all_void_gives_zero_loss() {
    let device = Device::flex();
    let v = VOID as i64;
    let loss = segmentation_cross_entropy(
        logits(ROWS, &device),
        targets([v, v, v, v], &device),
        Tensor::from_floats([1.0, 1.0, 1.0], &device),
        VOID,
    );
    assert_eq!(loss.into_scalar::<f32>(), 0.0);
}

#[test]
fn metrics_match_a_hand_counted_confusion_matrix() {
    // 4 classes; class 3 never appears in the labels; label 255 is void.
    let targets = [0, 0, 0, 1, 1, 2, 2, 2, 2, 255, 255];
    let predict = [0, 0, 1, 1, 3, 2, 2, 0, 2, 1, 0];
    let mut m = ConfusionMatrix::new(4);
    m.add(&targets, &predict, 255);
    assert_eq!(m.total(), 9, "void pixels are not counted");
    assert_eq!(m.count(0, 0), 2);
    assert_eq!(m.count(0, 1), 1);
    assert_eq!(m.count(1, 3), 1);
    assert_eq!(m.count(2, 0), 1);
    let s = m.scores();
    // Recalls: class 0 2/3, class 1 1/2, class 2 3/4, class 3 absent.
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} != {b}");
    close(s.class_accuracy[0].unwrap(), 2.0 / 3.0);
    close(s.class_accuracy[1].unwrap(), 0.5);
    close(s.class_accuracy[2].unwrap(), 0.75);
    assert_eq!(s.class_accuracy[3], None);
    close(s.class_average_accuracy, (2.0 / 3.0 + 0.5 + 0.75) / 3.0);
    close(s.global_accuracy, 6.0 / 9.0);
    // IoU = tp / (row + col − tp): class 0 2/(3+3−2), 1 1/(2+2−1), 2 3/(4+3−3), 3 0/(0+1−0).
    close(s.class_iou[0].unwrap(), 0.5);
    close(s.class_iou[1].unwrap(), 1.0 / 3.0);
    close(s.class_iou[2].unwrap(), 0.75);
    close(s.class_iou[3].unwrap(), 0.0);
    close(s.mean_iou, (0.5 + 1.0 / 3.0 + 0.75 + 0.0) / 4.0);
    // Predicted ÷ labelled pixels (labelled pixels only): class 0 3/3, 1 2/2, 2 3/4, 3 absent.
    close(s.class_share_ratio[0].unwrap(), 1.0);
    close(s.class_share_ratio[1].unwrap(), 1.0);
    close(s.class_share_ratio[2].unwrap(), 0.75);
    assert_eq!(s.class_share_ratio[3], None);
    let table = s.table(&["a", "b", "c", "d"]);
    assert!(table.contains("pred/true"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('c') && l.trim_end().ends_with("0.750")),
        "{table}"
    );
}

#[test]
fn a_class_absent_everywhere_is_left_out_of_both_means() {
    let mut m = ConfusionMatrix::new(3);
    m.add(&[0, 1, 1, 0], &[0, 1, 0, 0], 9);
    let s = m.scores();
    assert_eq!(s.class_accuracy[2], None);
    assert_eq!(s.class_iou[2], None);
    assert!((s.class_average_accuracy - 0.75).abs() < 1e-12);
    // IoU 0: 2/3, IoU 1: 1/2.
    assert!((s.mean_iou - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
}

#[test]
fn tensors_and_merge_count_like_slices() {
    let device = Device::flex();
    let t = Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 11, 2], [1, 2, 2]), &device);
    let p = Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 2, 2, 2], [1, 2, 2]), &device);
    let mut a = ConfusionMatrix::new(11);
    a.add_tensors(p, t, 11).unwrap();
    let mut b = ConfusionMatrix::new(11);
    b.add(&[0, 1, 2], &[0, 2, 2], 11);
    assert_eq!(a, b);
    a.merge(&b);
    assert_eq!(a.count(1, 2), 2);
    let csv = a.to_csv(&["a", "b"]);
    assert!(csv.starts_with("label\\prediction,a,b,2,"), "{csv}");
    assert_eq!(csv.lines().count(), 12);
}

#[test]
fn burn_metric_accumulates_over_batches_and_clears() {
    use burn::train::metric::{Metric, Numeric, NumericEntry};
    use squeeze_segnet_train::{Score, SegmentationMetric, SegmentationMetricInput};
    let device = Device::flex();
    let batch = |t: [i64; 4], p: [i64; 4]| SegmentationMetricInput {
        targets: Tensor::from_data(TensorData::new(t.to_vec(), [1, 2, 2]), &device),
        predictions: Tensor::from_data(TensorData::new(p.to_vec(), [1, 2, 2]), &device),
    };
    let meta = burn::train::metric::MetricMetadata {
        progress: burn::data::dataloader::Progress {
            items_processed: 1,
            items_total: 2,
            unit: None,
        },
        iteration: Some(0),
        lr: None,
    };
    let mut m = SegmentationMetric::new(Score::ClassAverageAccuracy, 3, 9);
    m.update(&batch([0, 0, 1, 9], [0, 1, 1, 2]), &meta).unwrap();
    m.update(&batch([2, 2, 1, 1], [2, 0, 0, 1]), &meta).unwrap();
    // Recalls: class 0 1/2, class 1 2/3, class 2 1/2.
    let expected = (0.5 + 2.0 / 3.0 + 0.5) / 3.0;
    match m.final_value() {
        NumericEntry::Final(v) => assert!((v - expected).abs() < 1e-12, "{v}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.matrix().total(), 7);
    m.clear();
    assert_eq!(m.matrix().total(), 0);
}

/// The gradient of `loss` with respect to the logits `ROWS` (on `device` with autodiff, which
/// `loss` is given too), channel-major like `logits`.
fn logit_gradient(device: &Device, loss: impl FnOnce(Tensor<4>, &Device) -> Tensor<1>) -> Vec<f32> {
    let ad = device.clone().autodiff();
    let z = logits(ROWS, &ad).require_grad();
    let grads = loss(z.clone(), &ad).backward();
    z.grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn soft_jaccard_matches_a_hand_computation() {
    let device = Device::flex();
    let softmax = |row: [f32; 3]| log_softmax(row).map(f64::exp);
    // Labels: class 0, class 0, class 1, void. Class 2 is absent (left out of the mean).
    let t = [0i64, 0, 1, VOID as i64];
    let (mut inter, mut sum_p, mut count) = ([0f64; 3], [0f64; 3], [0f64; 3]);
    for p in 0..3 {
        let prob = softmax(ROWS[p]);
        for c in 0..3 {
            sum_p[c] += prob[c];
        }
        inter[t[p] as usize] += prob[t[p] as usize];
        count[t[p] as usize] += 1.0;
    }
    let iou = |c: usize| inter[c] / (sum_p[c] + count[c] - inter[c]);
    let expected = 1.0 - (iou(0) + iou(1)) / 2.0;
    let got: f32 =
        soft_jaccard_loss(logits(ROWS, &device), targets(t, &device), VOID).into_scalar();
    assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");

    // A perfect, confident prediction scores 0; nothing labelled scores 0.
    let sure = [
        [30.0, 0.0, 0.0],
        [30.0, 0.0, 0.0],
        [0.0, 30.0, 0.0],
        [0.0, 0.0, 0.0],
    ];
    let perfect: f32 =
        soft_jaccard_loss(logits(sure, &device), targets(t, &device), VOID).into_scalar();
    assert!(perfect.abs() < 1e-5, "{perfect}");
    let void = [VOID as i64; 4];
    let none: f32 =
        soft_jaccard_loss(logits(ROWS, &device), targets(void, &device), VOID).into_scalar();
    assert_eq!(none, 0.0);

    // Void pixels get no gradient.
    let g = logit_gradient(&device, |z, ad| soft_jaccard_loss(z, targets(t, ad), VOID));
    for c in 0..3 {
        assert_eq!(g[c * 4 + 3], 0.0, "void pixel, class {c}");
        assert!(g[c * 4].abs() > 0.0, "labelled pixel, class {c}");
    }
}

/// Lovász-softmax by its definition: per present class, the errors sorted in decreasing order,
/// each weighted by how much the class's Jaccard loss `|M| / |G ∪ M|` grows when its pixel joins
/// the mispredicted set `M` (sets counted as sets, not with running sums).
fn lovasz_by_definition(rows: &[[f32; 3]], t: &[i64]) -> f64 {
    let softmax = |row: [f32; 3]| log_softmax(row).map(f64::exp);
    let labelled: Vec<usize> = (0..t.len()).filter(|&p| t[p] != VOID as i64).collect();
    let mut sum = 0.0;
    let mut present = 0;
    for c in 0..3 {
        let truth: std::collections::BTreeSet<usize> = labelled
            .iter()
            .copied()
            .filter(|&p| t[p] == c as i64)
            .collect();
        if truth.is_empty() {
            continue;
        }
        present += 1;
        let error = |p: usize| ((t[p] == c as i64) as u8 as f64 - softmax(rows[p])[c]).abs();
        let mut order = labelled.clone();
        order.sort_by(|&a, &b| error(b).total_cmp(&error(a)));
        let delta = |m: &std::collections::BTreeSet<usize>| {
            m.len() as f64 / truth.union(m).count().max(1) as f64
        };
        let mut mispredicted = std::collections::BTreeSet::new();
        let mut before = 0.0;
        for p in order {
            mispredicted.insert(p);
            let after = delta(&mispredicted);
            sum += error(p) * (after - before);
            before = after;
        }
    }
    if present == 0 {
        0.0
    } else {
        sum / present as f64
    }
}

#[test]
fn lovasz_softmax_matches_its_definition_and_its_gradient_a_finite_difference() {
    let device = Device::flex();
    let lovasz = |rows: [[f32; 3]; 4], t: [i64; 4]| -> f64 {
        lovasz_softmax_loss(logits(rows, &device), targets(t, &device), VOID)
            .unwrap()
            .into_scalar::<f32>() as f64
    };
    // Two and three classes present, one pixel void or none.
    for t in [[0i64, 0, 1, VOID as i64], [2, 0, 1, 1], [1, 1, 1, 0]] {
        let expected = lovasz_by_definition(&ROWS, &t);
        let got = lovasz(ROWS, t);
        assert!(
            (got - expected).abs() < 1e-5,
            "labels {t:?}: {got} vs {expected}"
        );
        assert!(expected > 0.05, "a non-trivial case: {expected}");
    }

    // A perfect, confident prediction scores 0; nothing labelled scores 0.
    let t = [0i64, 0, 1, VOID as i64];
    let sure = [
        [30.0, 0.0, 0.0],
        [30.0, 0.0, 0.0],
        [0.0, 30.0, 0.0],
        [0.0, 0.0, 0.0],
    ];
    assert!(lovasz(sure, t).abs() < 1e-5);
    assert_eq!(lovasz(ROWS, [VOID as i64; 4]), 0.0);

    // The gradient against central differences of the definition (no ties in the errors, so
    // the order, and with it the weights, is the same on both sides of each step).
    let g = logit_gradient(&device, |z, ad| {
        lovasz_softmax_loss(z, targets(t, ad), VOID).unwrap()
    });
    let h = 1e-3f32;
    for p in 0..4 {
        for c in 0..3 {
            let shifted = |d: f32| {
                let mut rows = ROWS;
                rows[p][c] += d;
                lovasz_by_definition(&rows, &t)
            };
            let numeric = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
            let analytic = g[c * 4 + p] as f64;
            assert!(
                (numeric - analytic).abs() < 1e-3,
                "pixel {p}, class {c}: {analytic} vs finite difference {numeric}"
            );
        }
    }
    for c in 0..3 {
        assert_eq!(g[c * 4 + 3], 0.0, "void pixel, class {c}");
    }
}

#[test]
fn scoring_a_model_on_data_with_other_classes_is_an_error() {
    use squeeze_segnet::{SqueezeSegNetConfig, TestTimeAugmentation};
    use squeeze_segnet_data::loader::CachedDataset;
    use squeeze_segnet_data::{TransformConfig, camvid, camvid_sample_root};
    use squeeze_segnet_train::{TrainError, evaluate};
    let device = Device::flex();
    let val = camvid(camvid_sample_root(), "val").unwrap();
    let data = std::sync::Arc::new(CachedDataset::new(val, false));
    for classes in [5, 12] {
        let model = SqueezeSegNetConfig::camvid()
            .with_num_classes(classes)
            .init(&device)
            .unwrap();
        let err = evaluate(
            &model,
            data.clone(),
            TransformConfig::eval([64, 80]),
            2,
            &TestTimeAugmentation::none(),
            &device,
        )
        .unwrap_err();
        assert!(
            matches!(err, TrainError::ClassCount { model, data: 11 } if model == classes),
            "{err}"
        );
    }
}
