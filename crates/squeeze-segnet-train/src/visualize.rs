//! Colourised class masks and overlays on the input image, for `examples/predict` and reports.

use image::{Rgb, RgbImage, imageops};

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

/// The images next to each other, left to right, with a `gap` of white pixels between them
/// (top-aligned; the height is the tallest one's).
pub fn side_by_side(images: &[&RgbImage], gap: u32) -> RgbImage {
    let width =
        images.iter().map(|i| i.width()).sum::<u32>() + gap * images.len().saturating_sub(1) as u32;
    let height = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut x = 0;
    for image in images {
        imageops::replace(&mut out, *image, x as i64, 0);
        x += image.width() + gap;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_places_each_image_after_the_previous_and_a_gap() {
        let red = RgbImage::from_pixel(2, 3, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(4, 2, Rgb([0, 0, 255]));
        let both = side_by_side(&[&red, &blue], 1);
        assert_eq!(both.dimensions(), (7, 3));
        assert_eq!(both.get_pixel(1, 2).0, [255, 0, 0]);
        assert_eq!(both.get_pixel(2, 0).0, [255, 255, 255], "the gap");
        assert_eq!(both.get_pixel(3, 1).0, [0, 0, 255]);
        assert_eq!(
            both.get_pixel(6, 2).0,
            [255, 255, 255],
            "below the shorter image"
        );
    }

    #[test]
    fn colorize_paints_void_black() {
        let img = colorize(&[0, 1, 11], [1, 3], &[[1, 2, 3], [4, 5, 6]]);
        assert_eq!(img.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(img.get_pixel(1, 0).0, [4, 5, 6]);
        assert_eq!(img.get_pixel(2, 0).0, [0, 0, 0]);
    }
}
