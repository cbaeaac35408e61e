//! Walks over a module's float tensors by record path (`fire2.squeeze.conv.weight`,
//! `conv10.norm.running_mean`): counting, reading and replacing them.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// Trainable parameters of any module: weights, biases, batch norm's scales and shifts — not
/// batch norm's running statistics, which Burn's `Module::num_params` also counts.
///
/// ```
/// use burn::prelude::*;
/// use squeeze_segnet::{SqueezeSegNetConfig, num_trainable_params};
/// let model = SqueezeSegNetConfig::paper().init(&Device::flex())?;
/// assert_eq!(num_trainable_params(&model), 2_692_555);
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
pub fn num_trainable_params<M: Module>(module: &M) -> usize {
    let mut count = 0;
    visit_float_params(module, |path, shape, _| {
        let buffer = matches!(
            path.rsplit('.').next(),
            Some("running_mean" | "running_var")
        );
        if !buffer {
            count += shape.iter().product::<usize>();
        }
    });
    count
}

/// Calls `f(path, shape, value)` for every float parameter and statistic of `module`, in module
/// order: `path` is its record path (`fire2.squeeze.conv.weight`, `conv10.norm.running_mean`),
/// `shape` its shape, read without initialising a lazy parameter, and `value()` its values
/// flattened (which does initialise it). The one walk over module paths that summaries, weight
/// checks and exports share.
///
/// ```
/// use burn::prelude::*;
/// use squeeze_segnet::{SqueezeSegNetConfig, visit_float_params};
/// let model = SqueezeSegNetConfig::paper().init(&Device::flex())?;
/// let mut names = Vec::new();
/// visit_float_params(&model, |path, _, _| names.push(path.to_string()));
/// assert_eq!(names[0], "conv1.conv.weight");
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
pub fn visit_float_params<M: Module>(
    module: &M,
    f: impl FnMut(&str, &[usize], &dyn Fn() -> Tensor<1>),
) {
    struct Walk<F> {
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(&str, &[usize], &dyn Fn() -> Tensor<1>)> ModuleVisitor for Walk<F> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.lazy_shape().to_vec();
            let len = shape.iter().product::<usize>();
            let value = || param.val().reshape([len]);
            (self.f)(&self.path.join("."), &shape, &value);
        }
    }
    module.visit(&mut Walk {
        path: Vec::new(),
        f,
    });
}

/// Float tensors by record path, each with its shape and its values flattened.
pub(crate) type FloatTensors = HashMap<String, (Vec<usize>, Tensor<1>)>;

/// `module` with float tensors replaced by record path: `f(path, shape)` is called for every float
/// parameter and statistic in module order ([`visit_float_params`]' paths; `shape` read without
/// initialising a lazy parameter) and returns the replacement, flattened, or `None` to keep it.
/// A replacement takes the parameter's device and id; a replaced lazy parameter's random
/// initialisation is never drawn. The one path-tracking mapper of the workspace.
///
/// ```
/// use burn::prelude::*;
/// use squeeze_segnet::{SqueezeSegNetConfig, map_float_params, visit_float_params};
/// let device = Device::flex();
/// let model = SqueezeSegNetConfig::paper_with_batch_norm().init(&device)?;
/// let model = map_float_params(model, |path, shape| {
///     let n = shape.iter().product::<usize>();
///     path.ends_with("running_mean").then(|| Tensor::<1>::full([n], 0.5, &device))
/// });
/// let mut means = Vec::new();
/// visit_float_params(&model, |path, _, value| {
///     if path == "conv1.norm.running_mean" { means = value().into_data().to_vec::<f32>().unwrap() }
/// });
/// assert!(means.len() == 64 && means.iter().all(|&m| m == 0.5));
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
pub fn map_float_params<M: Module>(
    module: M,
    f: impl FnMut(&str, &[usize]) -> Option<Tensor<1>>,
) -> M {
    struct Map<F> {
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(&str, &[usize]) -> Option<Tensor<1>>> ModuleMapper for Map<F> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let shape = param.lazy_shape();
            match (self.f)(&self.path.join("."), &shape.to_vec()) {
                Some(value) => {
                    let device = param.lazy_device();
                    let value = value.reshape::<D, _>(shape).to_device(&device);
                    let id = param.id;
                    param.transform_for_load(value, id)
                }
                None => param,
            }
        }
    }
    module.map(&mut Map {
        path: Vec::new(),
        f,
    })
}

/// `module` with every float tensor replaced by `tensors`' (by record path, as
/// [`visit_float_params`] walks them), each on its parameter's device, without initialising the
/// parameters it replaces (a freshly built module's random initialisation is never drawn).
///
/// # Errors
/// The record path of a tensor `module` has but `tensors` lacks, or has with another shape, or
/// of one `tensors` has and `module` lacks.
pub(crate) fn assign_float_params<M: Module>(
    module: M,
    mut tensors: FloatTensors,
) -> Result<M, String> {
    let mut error = None;
    let module = map_float_params(module, |path, shape| match tensors.remove(path) {
        Some((found, value)) if found == shape => Some(value),
        found => {
            let found = found.map(|(s, _)| format!("shape {s:?}"));
            let found = found.unwrap_or_else(|| "nothing".into());
            error.get_or_insert(format!(
                "'{path}' needs shape {shape:?} and was given {found}"
            ));
            None
        }
    });
    if let Some(error) = error {
        return Err(error);
    }
    match tensors.keys().min() {
        Some(extra) => Err(format!("'{extra}' belongs to no parameter of the module")),
        None => Ok(module),
    }
}
