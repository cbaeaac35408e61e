//! Colourised class masks and overlays on the input image, for `examples/predict` and reports.

use image::{Rgb, RgbImage};

/// Paints each class index with its palette colour (indices past the palette, e.g. void, are
/// black).
///
/// `classes` is `[height, width]` row-major.
pub fn colorize(classes: &[i64], [h, w]: [usize; 2], palette: &[[u8; 3]]) -> RgbImage {
    assert_eq!(classes.len(), h * w, "one class per pixel");
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let c = classes[y as usize * w + x as usize];
        let rgb = usize::try_from(c)
            .ok()
            .and_then(|c| palette.get(c))
            .copied()
            .unwrap_or([0, 0, 0]);
        Rgb(rgb)
    })
}

/// Blends `mask` over `image` (`alpha` = weight of the mask, 0–1); both must have one size.
pub fn overlay(image: &RgbImage, mask: &RgbImage, alpha: f32) -> RgbImage {
    assert_eq!(
        image.dimensions(),
        mask.dimensions(),
        "overlay sizes differ"
    );
    let a = alpha.clamp(0.0, 1.0);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let (p, m) = (image.get_pixel(x, y).0, mask.get_pixel(x, y).0);
        Rgb([0, 1, 2].map(|i| (p[i] as f32 * (1.0 - a) + m[i] as f32 * a).round() as u8))
    })
}
