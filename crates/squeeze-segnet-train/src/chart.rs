//! The training chart: training loss (left) and validation scores (right) per epoch, drawn into a
//! PNG with the `image` crate and a built-in 5×7 pixel font (no system fonts needed).

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::{EpochRecord, TrainError};

const W: u32 = 960;
const H: u32 = 400;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const LOSS: Rgb<u8> = Rgb([90, 90, 90]);
const CLASS_AVG: Rgb<u8> = Rgb([214, 39, 40]);
const MIOU: Rgb<u8> = Rgb([31, 119, 180]);
const GLOBAL: Rgb<u8> = Rgb([44, 160, 44]);

/// Draws the chart of `history` (one record per epoch).
pub fn render(history: &[EpochRecord]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, WHITE);
    let xs: Vec<f64> = history.iter().map(|r| r.epoch as f64).collect();
    let losses: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    let max_loss = losses.iter().cloned().fold(0.0, f64::max).max(1e-6) * 1.05;
    let left = Panel::new(60, 40, 400, 310, xs.len(), [0.0, max_loss]);
    left.frame(&mut img, "TRAIN LOSS");
    left.series(&mut img, &xs, &losses, LOSS);

    let right = Panel::new(540, 40, 400, 310, xs.len(), [0.0, 1.0]);
    right.frame(&mut img, "VALIDATION");
    let pick = |f: fn(&EpochRecord) -> Option<f64>| -> (Vec<f64>, Vec<f64>) {
        history
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .unzip()
    };
    for (i, (name, colour, f)) in [
        (
            "CLASS AVG",
            CLASS_AVG,
            (|r: &EpochRecord| r.val.as_ref().map(|v| v.class_average_accuracy))
                as fn(&EpochRecord) -> Option<f64>,
        ),
        ("MIOU", MIOU, |r| r.val.as_ref().map(|v| v.mean_iou)),
        ("GLOBAL", GLOBAL, |r| {
            r.val.as_ref().map(|v| v.global_accuracy)
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let (x, y) = pick(f);
        right.series(&mut img, &x, &y, colour);
        text(&mut img, 880, 48 + 12 * i as u32, name, colour);
    }
    img
}

/// Renders and writes the chart to `path` atomically.
pub fn write_chart(path: &Path, history: &[EpochRecord]) -> Result<(), TrainError> {
    let img = render(history);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| TrainError::io(path, std::io::Error::other(e)))?;
    crate::checkpoint::write_atomic(path, &bytes)
}

struct Panel {
    x0: i64,
    y0: i64,
    w: i64,
    h: i64,
    epochs: usize,
    y_range: [f64; 2],
}

impl Panel {
    fn new(x0: i64, y0: i64, w: i64, h: i64, epochs: usize, y_range: [f64; 2]) -> Self {
        Self {
            x0,
            y0,
            w,
            h,
            epochs: epochs.max(1),
            y_range,
        }
    }

    fn px(&self, epoch: f64) -> i64 {
        let span = (self.epochs.max(2) - 1) as f64;
        self.x0 + ((epoch - 1.0) / span * self.w as f64).round() as i64
    }

    fn py(&self, v: f64) -> i64 {
        let [lo, hi] = self.y_range;
        let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        self.y0 + self.h - (t * self.h as f64).round() as i64
    }

    fn frame(&self, img: &mut RgbImage, title: &str) {
        for k in 0..=4 {
            let v = self.y_range[0] + (self.y_range[1] - self.y_range[0]) * k as f64 / 4.0;
            let y = self.py(v);
            line(img, self.x0, y, self.x0 + self.w, y, GRID);
            let label = if self.y_range[1] > 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            };
            text(
                img,
                (self.x0 - 8 - 6 * label.len() as i64) as u32,
                (y - 3) as u32,
                &label,
                INK,
            );
        }
        let (x1, y1) = (self.x0 + self.w, self.y0 + self.h);
        line(img, self.x0, self.y0, self.x0, y1, INK);
        line(img, self.x0, y1, x1, y1, INK);
        text(img, self.x0 as u32, (self.y0 - 18) as u32, title, INK);
        text(
            img,
            (self.x0 + self.w / 2 - 15) as u32,
            (y1 + 24) as u32,
            "EPOCH",
            INK,
        );
        text(img, self.x0 as u32, (y1 + 8) as u32, "1", INK);
        let last = self.epochs.to_string();
        text(
            img,
            (x1 - 6 * last.len() as i64) as u32,
            (y1 + 8) as u32,
            &last,
            INK,
        );
    }

    fn series(&self, img: &mut RgbImage, xs: &[f64], ys: &[f64], colour: Rgb<u8>) {
        let pts: Vec<(i64, i64)> = xs
            .iter()
            .zip(ys)
            .map(|(&x, &y)| (self.px(x), self.py(y)))
            .collect();
        for p in pts.windows(2) {
            line(img, p[0].0, p[0].1, p[1].0, p[1].1, colour);
            line(img, p[0].0, p[0].1 + 1, p[1].0, p[1].1 + 1, colour);
        }
        for &(x, y) in &pts {
            for dy in -2..=2 {
                for dx in -2..=2 {
                    put(img, x + dx, y + dy, colour);
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Bresenham's line.
fn line(img: &mut RgbImage, mut x0: i64, mut y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        put(img, x0, y0, c);
        if x0 == x1 && y0 == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x0 += sx;
        }
        if e2 <= dx {
            err += dx;
            y0 += sy;
        }
    }
}

/// Writes `s` (digits, upper-case letters, `. - /` and spaces) with the 5×7 font.
fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let rows = glyph(ch);
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    put(
                        img,
                        (x + 6 * i as u32 + col) as i64,
                        (y + r as u32) as i64,
                        c,
                    );
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        _ => [0; 7],
    }
}
