//! A per-layer summary, like torchsummary: output shape, parameters and multiply-accumulates.

use std::fmt;

use crate::SegNetError;
use crate::config::{
    CONTEXT_BINS, CONTEXT_BRANCH_CHANNELS, CONV1_CHANNELS, CONV10_CHANNELS, DECODER_DFIRES,
    ENCODER_FIRES, POOLED_AFTER, SqueezeSegNetConfig, UNPOOLED_AFTER,
};

/// One row of a [`ModelSummary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// Layer name, as in [`SqueezeSegNet`](crate::SqueezeSegNet)'s fields.
    pub name: &'static str,
    /// What the layer is.
    pub kind: &'static str,
    /// Output shape `[batch, channels, height, width]`.
    pub output: [usize; 4],
    /// Trainable parameters (batch norm's running statistics are not counted).
    pub params: usize,
    /// Multiply-accumulates of the convolutions for the whole batch (batch norm, ReLU, pooling
    /// and unpooling are not counted).
    pub macs: u64,
}

/// Per-layer table of a Squeeze-SegNet for one input shape. `Display` prints it.
///
/// ```
/// use squeeze_segnet::SqueezeSegNetConfig;
/// let summary = SqueezeSegNetConfig::paper().summary([1, 3, 360, 480])?;
/// assert_eq!(summary.total_params(), 2_692_555);
/// println!("{summary}");
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    /// Input shape.
    pub input: [usize; 4],
    /// Layers in execution order.
    pub layers: Vec<LayerSummary>,
}

impl ModelSummary {
    /// Sum of the layers' parameters.
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Sum of the layers' multiply-accumulates.
    pub fn total_macs(&self) -> u64 {
        self.layers.iter().map(|l| l.macs).sum()
    }

    /// Size of the parameters in fp32, in bytes.
    pub fn fp32_bytes(&self) -> usize {
        4 * self.total_params()
    }
}

/// Parameters and MACs (per output pixel) of a k×k convolution with optional bias and batch norm.
fn conv(cin: usize, cout: usize, k: usize, bn: bool) -> (usize, u64) {
    let weights = cin * cout * k * k;
    let extra = if bn { 2 * cout } else { cout };
    (weights + extra, weights as u64)
}

impl SqueezeSegNetConfig {
    /// The per-layer summary for an input of `[batch, input_channels, height, width]`.
    ///
    /// # Errors
    /// The same input errors as [`SqueezeSegNet::forward`](crate::SqueezeSegNet::forward).
    pub fn summary(&self, input: [usize; 4]) -> Result<ModelSummary, SegNetError> {
        self.validate()?;
        let [n, c, h, w] = input;
        let [hs, ws] = crate::config::check_input(input, self.input_channels)?;
        let bn = self.batch_norm;
        let mut layers = Vec::new();
        let mut row = |name, kind, ch: usize, level: usize, params: usize, macs_per_px: u64| {
            let (oh, ow) = (hs[level], ws[level]);
            layers.push(LayerSummary {
                name,
                kind,
                output: [n, ch, oh, ow],
                params,
                macs: macs_per_px * (n * oh * ow) as u64,
            });
        };
        // Sizes: level 0 = conv1's output, 1 = after pool1, 2 = after pool3, 3 = after pool5.
        let fire_cost = |i: usize| {
            let s = ENCODER_FIRES[i];
            let parts = [
                conv(s.input, s.squeeze, 1, bn),
                conv(s.squeeze, s.expand, 1, bn),
                conv(s.squeeze, s.expand, 3, bn),
            ];
            (
                s,
                parts.iter().map(|p| p.0).sum(),
                parts.iter().map(|p| p.1).sum(),
            )
        };
        let dfire_cost = |i: usize| {
            let s = DECODER_DFIRES[i];
            let parts = [
                conv(s.input, s.expand, 1, bn),
                conv(s.input, s.expand, 3, bn),
                conv(2 * s.expand, s.output, 1, bn),
            ];
            (
                s,
                parts.iter().map(|p| p.0).sum(),
                parts.iter().map(|p| p.1).sum(),
            )
        };

        let (p, m) = conv(c, CONV1_CHANNELS, 3, bn);
        row("conv1", "Conv 3×3/2", CONV1_CHANNELS, 0, p, m);
        row("pool1", "MaxPool 3×3/2 + indices", CONV1_CHANNELS, 1, 0, 0);
        // Level 1 after pool1, one more after each of the encoder's later poolings.
        let mut level = 1;
        for i in 0..ENCODER_FIRES.len() {
            let (s, p, m) = fire_cost(i);
            row(s.name, "Fire", 2 * s.expand, level, p, m);
            if let Some(&(_, name)) = POOLED_AFTER.iter().find(|p| p.0 == s.name) {
                level += 1;
                row(name, "MaxPool 3×3/2 + indices", 2 * s.expand, level, 0, 0);
            }
        }
        let (p, m) = conv(CONV10_CHANNELS, CONV10_CHANNELS, 1, bn);
        row("conv10", "Conv 1×1", CONV10_CHANNELS, level, p, m);
        row("conv10_d", "Conv 1×1", CONV10_CHANNELS, level, p, m);
        for i in 0..DECODER_DFIRES.len() {
            let (s, p, m) = dfire_cost(i);
            row(s.name, "DFire", s.output, level, p, m);
            if let Some(&(_, name, kind)) = UNPOOLED_AFTER.iter().find(|u| u.0 == s.name) {
                level -= 1;
                row(name, kind, s.output, level, 0, 0);
            }
        }
        if self.refine {
            let (p, m) = conv(CONV1_CHANNELS, CONV1_CHANNELS, 3, bn);
            row("refine", "Conv 3×3", CONV1_CHANNELS, 0, p, m);
        }
        if self.context {
            // After conv10 (at pool5's size). The branches run on b×b grids; the fusion on every bottleneck pixel.
            let branches: u64 = CONTEXT_BINS
                .iter()
                .map(|&b| (b * b * CONV10_CHANNELS * CONTEXT_BRANCH_CHANNELS) as u64)
                .sum();
            let fuse = (CONTEXT_BINS.len() * CONTEXT_BRANCH_CHANNELS * CONV10_CHANNELS) as u64;
            let (oh, ow) = (hs[3], ws[3]);
            let after_conv10 = layers
                .iter()
                .position(|l| l.name == "conv10")
                .map_or(0, |i| i + 1);
            layers.insert(
                after_conv10,
                LayerSummary {
                    name: "context",
                    kind: "PyramidPool 1,2,3,6 (+)",
                    output: [n, CONV10_CHANNELS, oh, ow],
                    params: crate::model::context_config().num_params(),
                    macs: n as u64 * (branches + fuse * (oh * ow) as u64),
                },
            );
        }
        // The transposed convolution: every input pixel feeds a 3×3 patch of every class.
        let k = self.num_classes;
        let macs = (n * hs[0] * ws[0] * CONV1_CHANNELS * k * 9) as u64;
        layers.push(LayerSummary {
            name: "deconv1",
            kind: "ConvTranspose 3×3/2",
            output: [n, k, h, w],
            params: CONV1_CHANNELS * k * 9 + k,
            macs,
        });
        Ok(ModelSummary { input, layers })
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = "-".repeat(82);
        writeln!(f, "Squeeze-SegNet, input {:?}", self.input)?;
        writeln!(f, "{line}")?;
        writeln!(
            f,
            "{:<10} {:<24} {:<22} {:>10} {:>12}",
            "layer", "type", "output shape", "params", "MMAC"
        )?;
        writeln!(f, "{line}")?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<10} {:<24} {:<22} {:>10} {:>12.1}",
                l.name,
                l.kind,
                format!("{:?}", l.output),
                l.params,
                l.macs as f64 / 1e6
            )?;
        }
        writeln!(f, "{line}")?;
        writeln!(f, "parameters: {}", self.total_params())?;
        writeln!(
            f,
            "fp32 size: {:.2} MiB ({:.2} MB)",
            self.fp32_bytes() as f64 / (1024.0 * 1024.0),
            self.fp32_bytes() as f64 / 1e6
        )?;
        write!(
            f,
            "multiply-accumulates: {:.3} G ({:.2} GFLOP)",
            self.total_macs() as f64 / 1e9,
            2.0 * self.total_macs() as f64 / 1e9
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_network_has_2_692_555_parameters() {
        let s = SqueezeSegNetConfig::paper()
            .summary([1, 3, 360, 480])
            .unwrap();
        assert_eq!(s.total_params(), 2_692_555);
        // 2,692,555 × 4 bytes = 10.27 MiB in fp32 (the paper: 2.7 M, 10.35 MB).
        assert_eq!(s.fp32_bytes(), 10_770_220);
    }

    #[test]
    fn macs_at_360x480_are_3_31_g() {
        let s = SqueezeSegNetConfig::paper()
            .summary([1, 3, 360, 480])
            .unwrap();
        let g = s.total_macs() as f64 / 1e9;
        assert!((g - 3.31).abs() < 0.01, "{g} GMAC");
        let batch4 = SqueezeSegNetConfig::paper()
            .summary([4, 3, 360, 480])
            .unwrap();
        assert_eq!(batch4.total_macs(), 4 * s.total_macs());
    }

    #[test]
    fn shapes_follow_the_network() {
        let s = SqueezeSegNetConfig::paper_with_batch_norm()
            .summary([2, 3, 360, 480])
            .unwrap();
        let shape = |name| s.layers.iter().find(|l| l.name == name).unwrap().output;
        assert_eq!(shape("conv1"), [2, 64, 179, 239]);
        assert_eq!(shape("pool1"), [2, 64, 89, 119]);
        assert_eq!(shape("pool3"), [2, 128, 44, 59]);
        assert_eq!(shape("pool5"), [2, 256, 22, 29]);
        assert_eq!(shape("conv10"), [2, 512, 22, 29]);
        assert_eq!(shape("unpool5"), [2, 256, 44, 59]);
        assert_eq!(shape("unpool3"), [2, 128, 89, 119]);
        assert_eq!(shape("unpool1"), [2, 64, 179, 239]);
        assert_eq!(shape("deconv1"), [2, 11, 360, 480]);
        assert_eq!(s.layers.len(), 26);
        let refined = SqueezeSegNetConfig::camvid()
            .summary([2, 3, 360, 480])
            .unwrap();
        let refine = refined.layers.iter().find(|l| l.name == "refine").unwrap();
        assert_eq!(refine.output, [2, 64, 179, 239]);
    }

    #[test]
    fn refinement_adds_a_3x3_convolution_at_conv1_resolution() {
        let plain = SqueezeSegNetConfig::paper_with_batch_norm().with_refine(false);
        let [a, b] =
            [plain.clone(), plain.with_refine(true)].map(|c| c.summary([1, 3, 360, 480]).unwrap());
        // 64·64·9 weights + batch norm's 2·64.
        assert_eq!(b.total_params() - a.total_params(), 36_992);
        assert_eq!(b.total_macs() - a.total_macs(), 64 * 64 * 9 * 179 * 239);
        assert_eq!(b.layers.len(), a.layers.len() + 1);
    }

    #[test]
    fn too_small_input_is_an_error() {
        let e = SqueezeSegNetConfig::paper_with_batch_norm()
            .summary([1, 3, 24, 100])
            .unwrap_err();
        assert!(
            matches!(e, SegNetError::InputTooSmall { height: 24, .. }),
            "{e}"
        );
    }
}
