//! Pictures of predictions: colourised class maps, overlays on the input, and side-by-side
//! panels.

use image::{Rgb, RgbImage, imageops};

use crate::SegNetError;

/// Paints each class index with its palette colour; indices past the palette (e.g. void) and
/// negative ones are black.
///
/// `classes` is `[height, width]` row-major, as [`crate::predict_full_size`] returns it (`u8`)
/// or as read from [`crate::predict_at`]'s tensor (`i64`).
///
/// ```
/// let palette = [[128, 64, 128], [0, 0, 192]];
/// let mask = squeeze_segnet::colorize(&[0u8, 1, 7], [1, 3], &palette)?;
/// assert_eq!(mask.get_pixel(1, 0).0, [0, 0, 192]);
/// assert_eq!(mask.get_pixel(2, 0).0, [0, 0, 0]);
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
///
/// # Errors
/// [`SegNetError::SizeMismatch`] when `classes` does not hold `height × width` values.
pub fn colorize<T: Copy + TryInto<usize>>(
    classes: &[T],
    [h, w]: [usize; 2],
    palette: &[[u8; 3]],
) -> Result<RgbImage, SegNetError> {
    if classes.len() != h * w {
        return Err(SegNetError::SizeMismatch(format!(
            "colorize: {} classes for a {h}x{w} image",
            classes.len()
        )));
    }
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let c = classes[y as usize * w + x as usize];
        let rgb = c
            .try_into()
            .ok()
            .and_then(|c| palette.get(c))
            .copied()
            .unwrap_or([0, 0, 0]);
        Rgb(rgb)
    }))
}

/// Blends `mask` over `image` (`alpha` = weight of the mask, clamped to 0–1).
///
/// # Errors
/// [`SegNetError::SizeMismatch`] when the two images differ in size.
pub fn overlay(image: &RgbImage, mask: &RgbImage, alpha: f32) -> Result<RgbImage, SegNetError> {
    if image.dimensions() != mask.dimensions() {
        return Err(SegNetError::SizeMismatch(format!(
            "overlay: the image is {:?} but the mask {:?} (width, height)",
            image.dimensions(),
            mask.dimensions()
        )));
    }
    let a = alpha.clamp(0.0, 1.0);
    Ok(RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let (p, m) = (image.get_pixel(x, y).0, mask.get_pixel(x, y).0);
        Rgb([0, 1, 2].map(|i| (p[i] as f32 * (1.0 - a) + m[i] as f32 * a).round() as u8))
    }))
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
    fn colorize_paints_void_and_negative_black() {
        let img = colorize(&[0i64, 1, 11, -1], [2, 2], &[[1, 2, 3], [4, 5, 6]]).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(img.get_pixel(1, 0).0, [4, 5, 6]);
        assert_eq!(img.get_pixel(0, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
    }

    #[test]
    fn mismatched_sizes_are_errors() {
        let err = colorize(&[0u8; 5], [2, 3], &[[1, 2, 3]]).unwrap_err();
        assert!(err.to_string().contains("5 classes for a 2x3"), "{err}");
        let (a, b) = (RgbImage::new(2, 2), RgbImage::new(2, 3));
        assert!(matches!(
            overlay(&a, &b, 0.5),
            Err(SegNetError::SizeMismatch(_))
        ));
    }

    #[test]
    fn overlay_blends_by_alpha() {
        let image = RgbImage::from_pixel(1, 1, Rgb([100, 0, 200]));
        let mask = RgbImage::from_pixel(1, 1, Rgb([200, 100, 0]));
        assert_eq!(
            overlay(&image, &mask, 0.25).unwrap().get_pixel(0, 0).0,
            [125, 25, 150]
        );
        assert_eq!(
            overlay(&image, &mask, 7.0).unwrap().get_pixel(0, 0).0,
            [200, 100, 0]
        );
    }
}
