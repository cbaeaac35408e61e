//! An exponential moving average of the weights (Polyak averaging): after optimiser step `t`,
//! `ema ← d · ema + (1 − d) · model` with `d = min(decay, (1 + t) / (10 + t))` (the warm-up
//! keeps a random start from lingering in the average), over every parameter and batch-norm
//! statistic. The average is a smoother, usually better-generalising model than the last step's;
//! the trainer validates and saves it instead of the raw weights when
//! `TrainingConfig::ema_decay` is set.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use squeeze_segnet::{SqueezeSegNet, SqueezeSegNetConfig};

use crate::TrainError;

/// The moving average of a model's weights.
///
/// Parameters are paired by their position in the module tree (both models come from the same
/// config), and every pair's shapes are checked before anything is averaged. The average owns
/// its storage: Burn's `clone` and `valid` share batch-norm statistics with the original, so
/// [`Ema::new`] copies into a network of its own.
#[derive(Debug, Clone)]
pub struct Ema {
    decay: f64,
    model: SqueezeSegNet,
}

impl Ema {
    /// An average that starts at `start` (an inference model of network `config`, e.g.
    /// `autodiff_model.valid()`), held in a new network on `start`'s device.
    ///
    /// # Errors
    /// [`TrainError::Config`] when `decay` is not in `[0, 1)` or `start` is not a `config`
    /// network.
    pub fn new(
        config: &SqueezeSegNetConfig,
        start: &SqueezeSegNet,
        decay: f64,
    ) -> Result<Self, TrainError> {
        if !(0.0..1.0).contains(&decay) {
            return Err(TrainError::Config(format!(
                "EMA decay {decay} must be in [0, 1)"
            )));
        }
        let device = start
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(Device::flex);
        let mut ema = Self {
            decay,
            model: config.init(&device)?,
        };
        ema.blend(start, 0.0)?;
        Ok(ema)
    }

    /// The decay per step.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The averaged model.
    pub fn model(&self) -> &SqueezeSegNet {
        &self.model
    }

    /// Moves the average towards `model` (an inference model of the same config) after
    /// optimiser step `step` (1 for the first): `ema ← d · ema + (1 − d) · model` with
    /// `d = min(decay, (1 + step) / (10 + step))`, for every parameter and running statistic.
    ///
    /// # Errors
    /// [`TrainError::Config`] when the two models' parameters differ in number or shape (the
    /// average is then left unchanged).
    pub fn update(&mut self, model: &SqueezeSegNet, step: usize) -> Result<(), TrainError> {
        let warm = (1.0 + step as f64) / (10.0 + step as f64);
        self.blend(model, self.decay.min(warm))
    }

    /// `ema ← d · ema + (1 − d) · model`, after checking every shape.
    pub(crate) fn blend(&mut self, model: &SqueezeSegNet, d: f64) -> Result<(), TrainError> {
        let mut current = Collect {
            read_values: true,
            ..Collect::default()
        };
        let mut average = Collect::default();
        model.visit(&mut current);
        self.model.visit(&mut average);
        if current.shapes != average.shapes {
            let (n, m) = (current.shapes.len(), average.shapes.len());
            let first = current
                .shapes
                .iter()
                .zip(&average.shapes)
                .position(|(a, b)| a != b);
            return Err(TrainError::Config(match first {
                Some(i) => format!(
                    "EMA update: parameter {i} has shape {:?}, the average {:?}",
                    current.shapes[i], average.shapes[i]
                ),
                None => format!("EMA update: the model has {n} parameters, the average {m}"),
            }));
        }
        let mut blend = Blend {
            decay: d,
            current: current.values.into_iter(),
        };
        self.model = self.model.clone().map(&mut blend);
        Ok(())
    }
}

/// Every float parameter and running statistic: shapes, and the values flattened when
/// `read_values` (the average's own values are not needed to check shapes), in module order.
#[derive(Default)]
struct Collect {
    read_values: bool,
    values: Vec<Tensor<1>>,
    shapes: Vec<Vec<usize>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let shape = value.dims().to_vec();
        if self.read_values {
            let n = value.shape().num_elements();
            self.values.push(value.reshape([n]));
        }
        self.shapes.push(shape);
    }
}

/// Blends each parameter with the next of `current` (shapes checked beforehand).
struct Blend {
    decay: f64,
    current: std::vec::IntoIter<Tensor<1>>,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.current.next() else {
            return param; // not reached: the shapes were compared first
        };
        let decay = self.decay;
        param.map(|average| {
            let shape = average.shape();
            average.mul_scalar(decay) + current.reshape(shape).mul_scalar(1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squeeze_segnet::SqueezeSegNetConfig;

    fn flat(model: &SqueezeSegNet) -> Vec<f32> {
        let mut c = Collect {
            read_values: true,
            ..Collect::default()
        };
        model.visit(&mut c);
        c.values
            .into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    fn config() -> SqueezeSegNetConfig {
        SqueezeSegNetConfig::paper_with_batch_norm().with_num_classes(3)
    }

    /// A batch-norm network whose running statistics have moved off 0 and 1 (seeded).
    fn trained(seed: u64) -> SqueezeSegNet {
        let device = Device::flex().autodiff();
        device.seed(seed);
        let model = config().init(&device).unwrap().train();
        let x = Tensor::<4>::random([2, 3, 40, 40], burn::tensor::Distribution::Default, &device);
        let _ = model.forward(x).unwrap();
        model.valid()
    }

    #[test]
    fn two_updates_match_the_closed_form_with_the_warm_up() {
        let (a, b, c) = (trained(1), trained(2), trained(3));
        let (fa, fb, fc) = (flat(&a), flat(&b), flat(&c));
        let mut ema = Ema::new(&config(), &a, 0.9).unwrap();
        assert_eq!(flat(ema.model()), fa);
        // Step 30: min(0.9, 31/40) = 0.775; step 100: min(0.9, 101/110) = 0.9.
        ema.update(&b, 30).unwrap();
        ema.update(&c, 100).unwrap();
        let got = flat(ema.model());
        assert_eq!(got.len(), fa.len());
        let mut differs = 0;
        for i in 0..got.len() {
            let want = (0.775 * fa[i] + 0.225 * fb[i]) * 0.9 + 0.1 * fc[i];
            assert!(
                (got[i] - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "value {i}: {} vs {want}",
                got[i]
            );
            differs += usize::from((fa[i] - fc[i]).abs() > 1e-6);
        }
        assert!(differs > got.len() / 2, "the three models are too alike");
    }

    #[test]
    fn the_average_owns_its_batch_norm_statistics() {
        // Burn's clone and valid() share running statistics; the average must not, or averaging
        // would write into the training model (and a resumed run, whose average is loaded from
        // its own file, would differ from an uninterrupted one).
        let (a, b) = (trained(1), trained(2));
        let before = flat(&a);
        let mut ema = Ema::new(&config(), &a, 0.5).unwrap();
        ema.update(&b, 1000).unwrap();
        assert_eq!(
            flat(&a),
            before,
            "updating the average changed the model it started from"
        );
        assert_ne!(flat(ema.model()), before);
    }

    #[test]
    fn a_model_of_another_shape_is_refused_and_changes_nothing() {
        let a = trained(1);
        let mut ema = Ema::new(&config(), &a, 0.5).unwrap();
        let before = flat(ema.model());
        let device = Device::flex().autodiff();
        device.seed(4);
        let other = SqueezeSegNetConfig::paper_with_batch_norm()
            .with_num_classes(5)
            .init(&device)
            .unwrap()
            .train();
        let _ = other
            .forward(Tensor::<4>::ones([1, 3, 40, 40], &device))
            .unwrap();
        let err = ema.update(&other.valid(), 1000).unwrap_err().to_string();
        assert!(err.contains("EMA update"), "{err}");
        assert_eq!(
            flat(ema.model()),
            before,
            "a refused update changed the average"
        );
        assert!(Ema::new(&config(), &a, 1.0).is_err());
    }
}
