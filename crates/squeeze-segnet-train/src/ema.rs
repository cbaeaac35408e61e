//! An exponential moving average of the weights (Polyak averaging): after every optimiser step,
//! `ema ← decay · ema + (1 − decay) · model`, over every parameter and batch-norm statistic.
//! The average is a smoother, usually better-generalising model than the last step's; the trainer
//! validates and saves it instead of the raw weights when `TrainingConfig::ema_decay` is set.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use squeeze_segnet::SqueezeSegNet;

use crate::TrainError;

/// The moving average of a model's weights.
///
/// Parameters are paired by their position in the module tree (both models come from the same
/// config), and every pair's shapes are checked.
#[derive(Debug, Clone)]
pub struct Ema {
    decay: f64,
    model: SqueezeSegNet,
}

impl Ema {
    /// An average that starts at `model` (an inference model, e.g. `autodiff_model.valid()`).
    ///
    /// # Errors
    /// [`TrainError::Config`] when `decay` is not in `[0, 1)`.
    pub fn new(model: SqueezeSegNet, decay: f64) -> Result<Self, TrainError> {
        if !(0.0..1.0).contains(&decay) {
            return Err(TrainError::Config(format!(
                "EMA decay {decay} must be in [0, 1)"
            )));
        }
        Ok(Self { decay, model })
    }

    /// The decay per step.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The averaged model.
    pub fn model(&self) -> &SqueezeSegNet {
        &self.model
    }

    /// Moves the average towards `model` (an inference model of the same config):
    /// `ema ← decay · ema + (1 − decay) · model` for every parameter and running statistic.
    ///
    /// # Errors
    /// [`TrainError::Config`] when the two models' parameters differ in number or shape (the
    /// average is then left unchanged).
    pub fn update(&mut self, model: &SqueezeSegNet) -> Result<(), TrainError> {
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        let mut blend = Blend {
            decay: self.decay,
            current: collect.0.into_iter(),
            mismatch: None,
        };
        let updated = self.model.clone().map(&mut blend);
        if let Some(m) = blend.mismatch {
            return Err(TrainError::Config(format!("EMA update: {m}")));
        }
        if blend.current.len() > 0 {
            return Err(TrainError::Config(format!(
                "EMA update: the model has {} more parameters than the average",
                blend.current.len()
            )));
        }
        self.model = updated;
        Ok(())
    }
}

/// Every float parameter and running statistic, in module order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Blend {
    decay: f64,
    current: std::vec::IntoIter<Tensor<1>>,
    mismatch: Option<String>,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.current.next() else {
            self.mismatch
                .get_or_insert_with(|| "the model has fewer parameters than the average".into());
            return param;
        };
        let decay = self.decay;
        let mismatch = &mut self.mismatch;
        param.map(|average| {
            let shape = average.shape();
            if current.shape().num_elements() != shape.num_elements() {
                mismatch.get_or_insert_with(|| {
                    format!(
                        "a parameter of shape {:?} meets one of {} values",
                        shape.dims::<D>(),
                        current.shape().num_elements()
                    )
                });
                return average;
            }
            average.mul_scalar(decay) + current.reshape(shape).mul_scalar(1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squeeze_segnet::SqueezeSegNetConfig;

    fn flat(model: &SqueezeSegNet) -> Vec<f32> {
        let mut c = Collect(Vec::new());
        model.visit(&mut c);
        c.0.into_iter()
            .flat_map(|t| t.into_data().to_vec::<f32>().unwrap())
            .collect()
    }

    fn tiny(seed: u64) -> SqueezeSegNet {
        let device = Device::flex();
        device.seed(seed);
        SqueezeSegNetConfig::new()
            .with_num_classes(3)
            .init(&device)
            .unwrap()
    }

    #[test]
    fn two_updates_match_the_closed_form() {
        let (a, b, c) = (tiny(1), tiny(2), tiny(3));
        let (fa, fb, fc) = (flat(&a), flat(&b), flat(&c));
        let mut ema = Ema::new(a, 0.9).unwrap();
        ema.update(&b).unwrap();
        ema.update(&c).unwrap();
        let got = flat(ema.model());
        assert_eq!(got.len(), fa.len());
        let mut differs = 0;
        for i in 0..got.len() {
            // ((a·0.9 + b·0.1)·0.9 + c·0.1)
            let want = 0.81 * fa[i] + 0.09 * fb[i] + 0.1 * fc[i];
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
    fn a_model_of_another_shape_is_refused() {
        let device = Device::flex();
        let other = SqueezeSegNetConfig::new()
            .with_num_classes(5)
            .init(&device)
            .unwrap();
        let a = tiny(1);
        let before = flat(&a);
        let mut ema = Ema::new(a, 0.5).unwrap();
        let err = ema.update(&other).unwrap_err().to_string();
        assert!(err.contains("EMA update"), "{err}");
        assert_eq!(
            flat(ema.model()),
            before,
            "a refused update changed the average"
        );
        assert!(Ema::new(tiny(1), 1.0).is_err());
    }
}
