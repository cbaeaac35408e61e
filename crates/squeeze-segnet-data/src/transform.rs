//! Seeded, reproducible transforms: resize, random scale-and-crop, horizontal flip, colour
//! jitter, per-channel normalisation. Images are resized bilinearly, masks by nearest
//! neighbour, so a mask never gains a label it did not have.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::config::Config;
use burn::data::dataset::{Dataset, DatasetError};
use image::{GrayImage, RgbImage, imageops};

use crate::{DataError, SegmentationSample};

pub use squeeze_segnet::{CAMVID_MEAN, CAMVID_STD};

/// Scale range of [`TransformConfig::train`]'s scale-and-crop: the sample is resized to
/// `scale × size` with `scale` drawn from this range, then cropped to `size`.
pub const TRAIN_SCALE: [f64; 2] = [1.0, 1.5];

/// Colour jitter strength of [`TransformConfig::train`].
pub const TRAIN_JITTER: f32 = 0.2;

/// What happens to each sample on its way to a batch.
#[derive(Config, Debug, PartialEq)]
pub struct TransformConfig {
    /// Output `[height, width]` of the image (and of the mask unless `full_mask`).
    pub size: [usize; 2],
    /// Probability of a horizontal flip. Default: 0 (set 0.5 for training).
    #[config(default = 0.0)]
    pub hflip: f64,
    /// Random scale range: the sample is resized to `scale × size` and a random `size` crop is
    /// taken. Default: `[1.0, 1.0]` (no scale-and-crop). Both bounds must be at least 1.
    #[config(default = "[1.0, 1.0]")]
    pub scale: [f64; 2],
    /// Colour jitter strength `j`: brightness, contrast and saturation are each multiplied by
    /// a factor drawn from `[1 − j, 1 + j]`. Default: 0 (off).
    #[config(default = 0.0)]
    pub jitter: f32,
    /// Per-channel mean subtracted after scaling pixels to `[0, 1]`. Default: CamVid's.
    #[config(default = "CAMVID_MEAN")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by. Default: CamVid's.
    #[config(default = "CAMVID_STD")]
    pub std: [f32; 3],
    /// Keep the mask at its file's resolution (for evaluation at the labels' full resolution
    /// whatever size the model runs at). Only without scale-and-crop and flips. Default: false.
    #[config(default = false)]
    pub full_mask: bool,
}

impl TransformConfig {
    /// Training augmentation at `size`: flips, scale-and-crop over [`TRAIN_SCALE`] (1–1.5),
    /// colour jitter [`TRAIN_JITTER`] (0.2).
    pub fn train(size: [usize; 2]) -> Self {
        Self::new(size)
            .with_hflip(0.5)
            .with_scale(TRAIN_SCALE)
            .with_jitter(TRAIN_JITTER)
    }

    /// Evaluation: resize only; the mask stays at full resolution.
    pub fn eval(size: [usize; 2]) -> Self {
        Self::new(size).with_full_mask(true)
    }

    /// Checks the options, naming the bad one.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(m));
        if self.size.contains(&0) {
            return bad(format!("size {:?} has a zero side", self.size));
        }
        let max = crate::MAX_IMAGE_SIDE as f64;
        if self.size.iter().any(|&s| s as f64 * self.scale[1] > max) {
            return bad(format!(
                "size {:?} at scale up to {} exceeds {max} pixels a side",
                self.size, self.scale[1]
            ));
        }
        if !(0.0..=1.0).contains(&self.hflip) {
            return bad(format!("hflip probability {} is outside 0..=1", self.hflip));
        }
        if !(self.scale[0] >= 1.0 && self.scale[1] >= self.scale[0]) {
            return bad(format!(
                "scale range {:?} must satisfy 1 <= min <= max",
                self.scale
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return bad(format!("jitter {} is outside 0..1", self.jitter));
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return bad(format!("std {:?} must be positive", self.std));
        }
        if self.full_mask && (self.hflip > 0.0 || self.scale != [1.0, 1.0]) {
            return bad("full_mask cannot be combined with flips or scale-and-crop".into());
        }
        Ok(())
    }

    /// Applies the transform to one sample with the given random generator.
    pub fn apply(&self, sample: &SegmentationSample, rng: &mut SplitMix64) -> SegmentationItem {
        let [h, w] = self.size;
        let (mut image, mut mask) = (sample.image.clone(), sample.mask.clone());
        let scale = self.scale[0] + rng.uniform() * (self.scale[1] - self.scale[0]);
        if scale > 1.0 {
            let (sh, sw) = (
                (h as f64 * scale).round() as u32,
                (w as f64 * scale).round() as u32,
            );
            image = resize_rgb(&image, sw, sh);
            mask = resize_mask(&mask, sw, sh);
            let y0 = rng.below(sh as usize - h + 1) as u32;
            let x0 = rng.below(sw as usize - w + 1) as u32;
            image = imageops::crop_imm(&image, x0, y0, w as u32, h as u32).to_image();
            mask = imageops::crop_imm(&mask, x0, y0, w as u32, h as u32).to_image();
        } else {
            image = resize_rgb(&image, w as u32, h as u32);
            if !self.full_mask {
                mask = resize_mask(&mask, w as u32, h as u32);
            }
        }
        if rng.uniform() < self.hflip {
            imageops::flip_horizontal_in_place(&mut image);
            imageops::flip_horizontal_in_place(&mut mask);
        }
        let factors = if self.jitter > 0.0 {
            let mut f = || 1.0 + self.jitter * (2.0 * rng.uniform() as f32 - 1.0);
            Some([f(), f(), f()])
        } else {
            None
        };
        let image = match factors {
            Some(factors) => self.jittered_chw(&image, factors),
            None => squeeze_segnet::normalize_image(&image, self.size, self.mean, self.std),
        };
        SegmentationItem {
            image,
            size: self.size,
            mask_size: [mask.height() as usize, mask.width() as usize],
            mask: mask.into_raw(),
        }
    }

    /// An image for inference: resized to `size` and normalised, `[3, size[0], size[1]]`
    /// row-major (no augmentation).
    pub fn prepare_image(&self, image: &RgbImage) -> Vec<f32> {
        squeeze_segnet::normalize_image(image, self.size, self.mean, self.std)
    }

    /// `[3, h, w]` floats: `(pixel / 255 − mean) / std` after colour jitter by the brightness,
    /// contrast and saturation factors `[b, c, s]` (without jitter:
    /// [`squeeze_segnet::normalize_image`]).
    fn jittered_chw(&self, image: &RgbImage, [b, c, s]: [f32; 3]) -> Vec<f32> {
        let plane = (image.width() * image.height()) as usize;
        let mut out = vec![0f32; 3 * plane];
        let raw = image.as_raw();
        let mean_gray = raw
            .chunks_exact(3)
            .map(|p| gray([p[0] as f32, p[1] as f32, p[2] as f32]))
            .sum::<f32>()
            / (255.0 * plane as f32);
        for (i, p) in raw.chunks_exact(3).enumerate() {
            let mut rgb = [
                p[0] as f32 / 255.0,
                p[1] as f32 / 255.0,
                p[2] as f32 / 255.0,
            ];
            let g = gray(rgb);
            for v in &mut rgb {
                let sat = g + (*v - g) * s;
                *v = ((sat * b - mean_gray) * c + mean_gray).clamp(0.0, 1.0);
            }
            for ch in 0..3 {
                out[ch * plane + i] = (rgb[ch] - self.mean[ch]) / self.std[ch];
            }
        }
        out
    }
}

fn gray(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn resize_rgb(image: &RgbImage, w: u32, h: u32) -> RgbImage {
    if image.dimensions() == (w, h) {
        return image.clone();
    }
    imageops::resize(image, w, h, imageops::FilterType::Triangle)
}

fn resize_mask(mask: &GrayImage, w: u32, h: u32) -> GrayImage {
    if mask.dimensions() == (w, h) {
        return mask.clone();
    }
    imageops::resize(mask, w, h, imageops::FilterType::Nearest)
}

/// A transformed sample, ready for batching.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationItem {
    /// Normalised image, `[3, size[0], size[1]]` row-major.
    pub image: Vec<f32>,
    /// Image `[height, width]`.
    pub size: [usize; 2],
    /// Labels, `[mask_size[0], mask_size[1]]` row-major.
    pub mask: Vec<u8>,
    /// Mask `[height, width]` (equal to `size` unless the transform keeps full-resolution masks).
    pub mask_size: [usize; 2],
}

/// SplitMix64: a small, fast generator whose stream depends only on its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// A dataset with a transform applied on access — in the data loader's worker threads.
///
/// Randomness is reproducible whatever the worker count or order: sample `i`'s `k`-th access
/// uses [`crate::loader::sample_rng`]`(seed, k, i)` — the augmentation [`crate::loader`] gives
/// sample `i` in epoch `k` — so each epoch sees new augmentations, and a resumed run continues
/// them with [`set_accesses`](Self::set_accesses).
pub struct TransformedDataset<D> {
    inner: D,
    transform: TransformConfig,
    seed: u64,
    accesses: Vec<AtomicU64>,
}

impl<D: Dataset<SegmentationSample>> TransformedDataset<D> {
    /// Wraps `inner`.
    ///
    /// # Errors
    /// [`DataError::Config`] for invalid transform options.
    pub fn new(inner: D, transform: TransformConfig, seed: u64) -> Result<Self, DataError> {
        transform.validate()?;
        let accesses = (0..inner.len()).map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            inner,
            transform,
            seed,
            accesses,
        })
    }

    /// How many times each sample has been accessed (one per epoch in training).
    pub fn accesses(&self) -> Vec<u64> {
        self.accesses
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Sets every sample's access count (to resume a run after `n` epochs: `n`).
    pub fn set_accesses(&self, n: u64) {
        for a in &self.accesses {
            a.store(n, Ordering::Relaxed);
        }
    }
}

impl<D: Dataset<SegmentationSample>> Dataset<SegmentationItem> for TransformedDataset<D> {
    fn get(&self, index: usize) -> Result<SegmentationItem, DatasetError> {
        let sample = self.inner.get(index)?;
        let k = self.accesses[index].fetch_add(1, Ordering::Relaxed);
        // The k-th access is epoch k's: the pipeline's own seed derivation.
        let mut rng = crate::loader::sample_rng(self.seed, k as usize, index);
        Ok(self.transform.apply(&sample, &mut rng))
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}
