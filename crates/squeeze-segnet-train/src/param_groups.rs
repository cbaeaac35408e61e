//! The encoder's own learning rate ([`TrainingConfig::encoder_lr_scale`](crate::TrainingConfig)):
//! the encoder's gradients are split off from the network's and stepped at the scaled rate.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use squeeze_segnet::SqueezeSegNet;

/// Moves the gradients of `model`'s encoder (conv1, fire2–fire9: the layers an ImageNet
/// encoder sets) out of `grads` into a set of their own.
pub(crate) fn split_encoder(model: &SqueezeSegNet, grads: &mut GradientsParams) -> GradientsParams {
    let mut mover = Mover {
        from: grads,
        to: GradientsParams::new(),
    };
    model.conv1.visit(&mut mover);
    for fire in model.encoder_fires() {
        fire.visit(&mut mover);
    }
    mover.to
}

struct Mover<'a> {
    from: &'a mut GradientsParams,
    to: GradientsParams,
}

impl ModuleVisitor for Mover<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.from.remove::<D>(param.id) {
            self.to.register::<D>(param.id, grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squeeze_segnet::SqueezeSegNetConfig;

    #[test]
    fn the_encoder_gradients_move_and_the_rest_stay() {
        let device = Device::flex().autodiff();
        let model = SqueezeSegNetConfig::paper_with_batch_norm()
            .init(&device)
            .unwrap();
        let x = Tensor::<4>::ones([1, 3, 32, 32], &device);
        let grads = model.forward(x).unwrap().sum().backward();
        let mut all = GradientsParams::from_grads(grads, &model);
        let total = all.len();
        let encoder = split_encoder(&model, &mut all);
        // conv1 (weight, gamma, beta) and eight Fires of three convolutions with batch norm.
        assert_eq!(encoder.len(), 3 + 8 * 3 * 3);
        assert_eq!(encoder.len() + all.len(), total);
        let conv1 = model.conv1.conv.weight.id;
        assert!(encoder.get::<4>(conv1).is_some() && all.get::<4>(conv1).is_none());
        let last = model.deconv1.weight.id;
        assert!(all.get::<4>(last).is_some() && encoder.get::<4>(last).is_none());
    }
}
