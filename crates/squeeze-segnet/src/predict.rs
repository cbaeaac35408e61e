//! Inference at any output size: logits with optional test-time augmentation, class maps
//! upsampled to the labels' or the photo's size, and a low-memory path for one large image.

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use image::RgbImage;

use crate::{SegNetError, SqueezeSegNet, TestTimeAugmentation, photo_input};

/// The class of every pixel of a photo, at the photo's own size: the photo runs through the
/// model at `size` (`[height, width]`, resized and normalised by [`photo_input`]), then the
/// logits are upsampled to the photo's size as in [`predict_full_size`] (one byte a pixel),
/// with the passes of `tta` ([`TestTimeAugmentation::default`]: the model alone).
///
/// ```no_run
/// use burn::prelude::*;
/// use squeeze_segnet::{CAMVID_PALETTE, SavedModel, TestTimeAugmentation, colorize, segment_photo};
/// let saved = SavedModel::camvid()?; // weights, network and the size they validated at
/// let model = saved.init(&Device::flex())?.for_inference();
/// let photo = image::open("street.png").expect("a photo").to_rgb8();
/// let size = saved.input_size.unwrap_or([360, 480]);
/// let classes = segment_photo(&model, &photo, size, &TestTimeAugmentation::default())?;
/// let (h, w) = (photo.height() as usize, photo.width() as usize);
/// colorize(&classes, [h, w], &CAMVID_PALETTE)?.save("street_mask.png").expect("written");
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
///
/// # Errors
/// [`SegNetError::Config`] for an empty photo or size, or bad test-time scales; the errors of
/// [`SqueezeSegNet::forward`] (e.g. a size below [`crate::min_input_len`]).
pub fn segment_photo(
    model: &SqueezeSegNet,
    photo: &RgbImage,
    size: [usize; 2],
    tta: &TestTimeAugmentation,
) -> Result<Vec<u8>, SegNetError> {
    let x = photo_input(photo, size, &model.deconv1.weight.device())?;
    let output_size = [photo.height() as usize, photo.width() as usize];
    predict_full_size(model, x, output_size, tta)
}

/// Class indices for `images` at `output_size`: the logits are upsampled bilinearly (when the
/// model runs at another size), then the best class is taken per pixel. The logits are those of
/// [`logits`]: the model alone, or summed over the passes of `tta`.
///
/// # Shapes
/// - `images`: `[batch, 3, height, width]`
/// - output: `[batch, output_size[0], output_size[1]]`
pub fn predict_at(
    model: &SqueezeSegNet,
    images: Tensor<4>,
    output_size: [usize; 2],
    tta: &TestTimeAugmentation,
) -> Result<Tensor<3, Int>, SegNetError> {
    let logits = upsample_logits(logits(model, images, tta)?, output_size);
    let [n, _, h, w] = logits.dims();
    Ok(logits.argmax(1).reshape([n, h, w]))
}

/// The model's logits for `images`: one forward pass when `tta` is the default, else the sum
/// over its passes: the images rescaled by each of `tta.scales` (bilinear, corners aligned)
/// and, with `tta.flip`, mirrored too; each pass's logits resized back to the images' size and
/// mirrored back (the argmax of a sum is that of the mean).
///
/// # Errors
/// [`SegNetError::Config`] for bad scales ([`TestTimeAugmentation::validate`],
/// [`TestTimeAugmentation::scaled_size`]) or a rescaled input the network refuses (the scale
/// named); the errors of [`SqueezeSegNet::forward`] for the input itself (e.g. a size below
/// [`crate::min_input_len`]).
///
/// # Shapes
/// - `images`: `[batch, 3, height, width]`
/// - output: `[batch, classes, height, width]`
pub fn logits(
    model: &SqueezeSegNet,
    images: Tensor<4>,
    tta: &TestTimeAugmentation,
) -> Result<Tensor<4>, SegNetError> {
    tta.run(model, images)
}

/// Class indices of one image at `output_size`, without materialising full-size logits: the
/// model's logits are read back at its own size, then each output pixel takes the best class of
/// the bilinearly interpolated logits (Burn's `interpolate` with `align_corners`, as
/// [`predict_at`] does). Memory is one byte per output pixel whatever the output size, where
/// [`predict_at`] holds `classes × 4` bytes per pixel.
///
/// # Shapes
/// - `image`: `[1, 3, height, width]`
/// - output: `output_size[0] × output_size[1]` class indices, row-major
pub fn predict_full_size(
    model: &SqueezeSegNet,
    image: Tensor<4>,
    output_size: [usize; 2],
    tta: &TestTimeAugmentation,
) -> Result<Vec<u8>, SegNetError> {
    let logits = logits(model, image, tta)?;
    let [n, c, h, w] = logits.dims();
    if n != 1 || c > 256 {
        return Err(SegNetError::Config(format!(
            "predict_full_size takes one image and at most 256 classes, not {n} images of {c}"
        )));
    }
    let values: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| SegNetError::Readback(format!("{e:?}")))?;
    upsample_argmax(&values, [c, h, w], output_size)
}

/// Bilinear upsampling (corners aligned) of `[classes, h, w]` logits to `[out_h, out_w]`,
/// followed by the argmax over classes (the first best class on a tie), one row at a time.
///
/// # Errors
/// [`SegNetError::Config`] when `logits` is not `c·h·w` values, or has more than 256 classes.
pub fn upsample_argmax(
    logits: &[f32],
    [c, h, w]: [usize; 3],
    [out_h, out_w]: [usize; 2],
) -> Result<Vec<u8>, SegNetError> {
    if logits.len() != c * h * w || c > 256 {
        return Err(SegNetError::Config(format!(
            "upsample_argmax: {} logits are not [classes {c}, {h}, {w}] with at most 256 classes",
            logits.len()
        )));
    }
    if out_h * out_w > 0 && h * w == 0 {
        return Err(SegNetError::Config(format!(
            "upsample_argmax: no logits ({h}x{w}) to upsample to {out_h}x{out_w}"
        )));
    }
    let (rows, cols) = (aligned_taps(out_h, h), aligned_taps(out_w, w));
    let plane = h * w;
    let mut out = vec![0u8; out_h * out_w];
    let mut row = vec![0f32; c * w];
    for (y, &(y0, y1, wy)) in rows.iter().enumerate() {
        // The two source rows blended vertically, for every class.
        for k in 0..c {
            let (a, b) = (
                &logits[k * plane + y0 * w..][..w],
                &logits[k * plane + y1 * w..][..w],
            );
            for x in 0..w {
                row[k * w + x] = a[x] + wy * (b[x] - a[x]);
            }
        }
        for (x, &(x0, x1, wx)) in cols.iter().enumerate() {
            let (mut best, mut best_v) = (0usize, f32::NEG_INFINITY);
            for k in 0..c {
                let (a, b) = (row[k * w + x0], row[k * w + x1]);
                let v = a + wx * (b - a);
                if v > best_v {
                    (best, best_v) = (k, v);
                }
            }
            out[y * out_w + x] = best as u8;
        }
    }
    Ok(out)
}

/// Bilinear resize of `[batch, classes, h, w]` logits to `output_size` (a no-op at that size).
pub fn upsample_logits(logits: Tensor<4>, output_size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = logits.dims();
    if [h, w] == output_size {
        return logits;
    }
    interpolate(
        logits,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size(output_size),
    )
}

/// 1-D linear interpolation with aligned corners from `len` samples to `out`: for each output
/// index `i`, the two source indices around `i · (len − 1) / (out − 1)` (0 when `out` is 1) and
/// the weight of the second. Shared by [`upsample_argmax`] and the context module's stretch.
pub(crate) fn aligned_taps(out: usize, len: usize) -> Vec<(usize, usize, f32)> {
    (0..out)
        .map(|i| {
            let s = if out > 1 {
                i as f64 * (len - 1) as f64 / (out - 1) as f64
            } else {
                0.0
            };
            let lo = (s.floor() as usize).min(len - 1);
            let hi = (lo + 1).min(len - 1);
            (lo, hi, (s - lo as f64) as f32)
        })
        .collect()
}
