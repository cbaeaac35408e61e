//! ClassMix against hand-built batches: exactly half the source's classes (rounded up) are
//! pasted, image and labels together, void never; nothing changes where it must not.

use squeeze_segnet_data::{SegmentationItem, SplitMix64, class_mix};

const VOID: u8 = 11;

/// A 2×3 item: labels `mask`, image channel `c` at pixel `p` = `base + 10·c + p`.
fn item(mask: [u8; 6], base: f32) -> SegmentationItem {
    SegmentationItem {
        image: (0..18)
            .map(|i| base + (10 * (i / 6) + i % 6) as f32)
            .collect(),
        size: [2, 3],
        mask: mask.to_vec(),
        mask_size: [2, 3],
    }
}

/// Checks that `mixed` is `target` with exactly the pixels of the classes in `pasted` taken
/// from `source`, and returns those classes.
fn pasted_classes(
    mixed: &SegmentationItem,
    target: &SegmentationItem,
    source: &SegmentationItem,
) -> Vec<u8> {
    let mut pasted: Vec<u8> = (0..6)
        .filter(|&p| mixed.mask[p] != target.mask[p] || mixed.image[p] != target.image[p])
        .map(|p| source.mask[p])
        .collect();
    pasted.sort();
    pasted.dedup();
    for p in 0..6 {
        let from_source = pasted.contains(&source.mask[p]);
        let expected = if from_source { source } else { target };
        assert_eq!(mixed.mask[p], expected.mask[p], "label at pixel {p}");
        for c in 0..3 {
            assert_eq!(
                mixed.image[c * 6 + p],
                expected.image[c * 6 + p],
                "channel {c}, pixel {p}"
            );
        }
    }
    pasted
}

#[test]
fn half_of_the_next_images_classes_are_pasted_with_their_pixels() {
    let a = item([0, 0, 1, 1, 2, VOID], 100.0);
    let b = item([3, 4, 4, 5, VOID, VOID], 200.0);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut batch = vec![a.clone(), b.clone()];
        class_mix(&mut batch, 1.0, VOID, &mut SplitMix64::new(seed));
        // a takes 2 of b's 3 classes (rounded up), b takes 2 of a's 3; void is never pasted.
        let into_a = pasted_classes(&batch[0], &a, &b);
        let into_b = pasted_classes(&batch[1], &b, &a);
        assert_eq!(into_a.len(), 2, "seed {seed}: {into_a:?}");
        assert_eq!(into_b.len(), 2, "seed {seed}: {into_b:?}");
        assert!(!into_a.contains(&VOID) && !into_b.contains(&VOID));
        seen.insert(into_a);
        // The same draws mix the same way.
        let mut again = vec![a.clone(), b.clone()];
        class_mix(&mut again, 1.0, VOID, &mut SplitMix64::new(seed));
        assert_eq!(again, batch);
    }
    // Every pair of b's classes is drawn now and then.
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn nothing_is_mixed_where_it_must_not_be() {
    let a = item([0, 0, 1, 1, 2, VOID], 100.0);
    let b = item([3, 4, 4, 5, VOID, VOID], 200.0);
    let rng = || SplitMix64::new(5);
    // Probability 0, a batch of one.
    let mut batch = vec![a.clone(), b.clone()];
    class_mix(&mut batch, 0.0, VOID, &mut rng());
    assert_eq!(batch, vec![a.clone(), b.clone()]);
    let mut one = vec![a.clone()];
    class_mix(&mut one, 1.0, VOID, &mut rng());
    assert_eq!(one, vec![a.clone()]);
    // Another size, or labels kept at another resolution than the image.
    let mut wide = item([3, 4, 4, 5, 5, 5], 200.0);
    wide.size = [3, 2];
    wide.mask_size = [3, 2];
    let mut batch = vec![a.clone(), wide.clone()];
    class_mix(&mut batch, 1.0, VOID, &mut rng());
    assert_eq!(batch, vec![a.clone(), wide]);
    let mut full = b.clone();
    full.mask_size = [1, 6];
    let mut batch = vec![a.clone(), full.clone()];
    class_mix(&mut batch, 1.0, VOID, &mut rng());
    assert_eq!(batch, vec![a.clone(), full]);
    // A source of void only gives nothing.
    let void = item([VOID; 6], 200.0);
    let mut batch = vec![a.clone(), void.clone()];
    class_mix(&mut batch, 1.0, VOID, &mut rng());
    assert_eq!(batch[0], a);
}

#[test]
fn about_the_given_share_of_images_is_mixed() {
    let a = item([0, 0, 1, 1, 2, VOID], 100.0);
    let b = item([3, 3, 3, 3, 3, 3], 200.0);
    let mut rng = SplitMix64::new(9);
    let mut mixed = 0;
    for _ in 0..2000 {
        let mut batch = vec![a.clone(), b.clone()];
        class_mix(&mut batch, 0.3, VOID, &mut rng);
        mixed += usize::from(batch[0] != a);
    }
    assert!(
        (500..700).contains(&mixed),
        "{mixed} of 2000 mixed at p = 0.3"
    );
}
