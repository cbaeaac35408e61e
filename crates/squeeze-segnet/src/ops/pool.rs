//! Max-pooling with indices: options, the ceil-mode output-size rule, and the checked function.

use burn::backend::Dispatch;
use burn::prelude::*;
use burn::tensor::{DType, Shape};
use serde::{Deserialize, Serialize};

use super::SegNetOps;
use crate::OpError;

/// Window and stride of a max-pooling with indices (padding 0, ceil mode).
///
/// ```
/// use squeeze_segnet::ops::PoolOptions;
/// // SqueezeNet's pooling: 3×3 windows every 2 pixels; 179×239 → 89×119.
/// let pool = PoolOptions::new([3, 3], [2, 2]);
/// assert_eq!(pool.output_size([179, 239]), Some([89, 119]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolOptions {
    /// Window size `[height, width]`.
    pub kernel: [usize; 2],
    /// Step between windows `[height, width]`.
    pub stride: [usize; 2],
}

impl PoolOptions {
    /// Options with the given window and stride.
    pub const fn new(kernel: [usize; 2], stride: [usize; 2]) -> Self {
        Self { kernel, stride }
    }

    /// Output `[height, width]` for an input of `[height, width]`, or `None` when the input is
    /// smaller than the window (or a window or stride is zero).
    pub fn output_size(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        Some([
            pooled_len(input[0], self.kernel[0], self.stride[0])?,
            pooled_len(input[1], self.kernel[1], self.stride[1])?,
        ])
    }
}

/// Ceil-mode pooled length without padding, PyTorch's rule:
/// `ceil((len - kernel) / stride) + 1`, minus one when the last window would start at or past
/// the end of the input. `None` when `len < kernel` or `kernel`/`stride` is zero.
///
/// ```
/// use squeeze_segnet::ops::pooled_len;
/// assert_eq!(pooled_len(179, 3, 2), Some(89));
/// assert_eq!(pooled_len(5, 2, 2), Some(3)); // the last window holds one column
/// assert_eq!(pooled_len(3, 2, 3), Some(1)); // a second window would start at 3 == len
/// assert_eq!(pooled_len(2, 3, 2), None);
/// ```
pub fn pooled_len(len: usize, kernel: usize, stride: usize) -> Option<usize> {
    if kernel == 0 || stride == 0 || len < kernel {
        return None;
    }
    let mut out = (len - kernel).div_ceil(stride) + 1;
    if (out - 1) * stride >= len {
        out -= 1;
    }
    Some(out)
}

/// Shape of the pooled output; zero-sized when the input is smaller than the window
/// (the checked API rejects that case before any kernel runs).
pub(crate) fn pooled_shape(x: &Shape, kernel: [usize; 2], stride: [usize; 2]) -> Shape {
    let h = pooled_len(x[2], kernel[0], stride[0]).unwrap_or(0);
    let w = pooled_len(x[3], kernel[1], stride[1]).unwrap_or(0);
    Shape::new([x[0], x[1], h, w])
}

pub(crate) fn check_float_dtype(dtype: DType) -> Result<(), OpError> {
    match dtype {
        DType::F32 | DType::F64 => Ok(()),
        other => Err(OpError::UnsupportedDType {
            dtype: format!("{other:?}"),
        }),
    }
}

/// Max-pooling with indices, checked: PyTorch's `MaxPool2d(kernel, stride, padding=0,
/// ceil_mode=True, return_indices=True)`.
///
/// Returns the pooled values and, for each, the flat position `h * W + w` of the maximum inside
/// its input plane (ties: first maximum), as the device's integer dtype.
///
/// # Shapes
/// - `x`: `[batch, channels, height, width]`
/// - output and indices: `[batch, channels, out_height, out_width]`
///   (see [`PoolOptions::output_size`])
///
/// # Errors
/// [`OpError::InputTooSmall`] when the input is smaller than the window,
/// [`OpError::ZeroWindow`] for a zero kernel or stride, [`OpError::UnsupportedDType`] for a
/// float dtype other than f32/f64.
///
/// ```
/// use burn::prelude::*;
/// use squeeze_segnet::ops::{max_pool2d_with_indices, PoolOptions};
/// let device = Device::flex();
/// let x = Tensor::<4>::from_floats([[[[1., 5., 2.], [4., 3., 9.], [0., 8., 7.]]]], &device);
/// let (values, indices) = max_pool2d_with_indices(x, PoolOptions::new([2, 2], [2, 2]))?;
/// assert_eq!(values.dims(), [1, 1, 2, 2]);
/// assert_eq!(values.into_data().try_to_vec::<f32>().unwrap(), vec![5., 9., 8., 7.]);
/// assert_eq!(indices.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), vec![1, 5, 7, 8]);
/// # Ok::<(), squeeze_segnet::OpError>(())
/// ```
pub fn max_pool2d_with_indices(
    x: Tensor<4>,
    options: PoolOptions,
) -> Result<(Tensor<4>, Tensor<4, Int>), OpError> {
    let PoolOptions { kernel, stride } = options;
    if kernel.contains(&0) || stride.contains(&0) {
        return Err(OpError::ZeroWindow { kernel, stride });
    }
    let [_, _, h, w] = x.dims();
    if h < kernel[0] || w < kernel[1] {
        return Err(OpError::InputTooSmall {
            input: [h, w],
            kernel,
        });
    }
    check_float_dtype(x.dtype())?;
    Ok(max_pool2d_with_indices_unchecked(x, options))
}

/// [`max_pool2d_with_indices`] without argument checks, for callers that already know the input
/// is valid (the network does). Panics where the checked version returns an error.
pub fn max_pool2d_with_indices_unchecked(
    x: Tensor<4>,
    options: PoolOptions,
) -> (Tensor<4>, Tensor<4, Int>) {
    let indices_dtype = x.device().settings().int_dtype;
    let (values, indices) = Dispatch::seg_max_pool2d_with_indices(
        x.into_dispatch(),
        options.kernel[0],
        options.kernel[1],
        options.stride[0],
        options.stride[1],
        indices_dtype,
    );
    (
        Tensor::from_dispatch(values),
        Tensor::from_dispatch(indices),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeezenet_sizes_at_360x480() {
        let pool = PoolOptions::new([3, 3], [2, 2]);
        // conv1: (360 - 3) / 2 + 1 = 179, (480 - 3) / 2 + 1 = 239
        assert_eq!(pool.output_size([179, 239]), Some([89, 119]));
        // ceil((89 - 3) / 2) + 1 = 44, ceil((119 - 3) / 2) + 1 = 59
        assert_eq!(pool.output_size([89, 119]), Some([44, 59]));
        // ceil(41 / 2) + 1 = 22, ceil(56 / 2) + 1 = 29
        assert_eq!(pool.output_size([44, 59]), Some([22, 29]));
    }

    #[test]
    fn ceil_mode_drops_a_window_that_starts_outside() {
        // stride > kernel: ceil((4 - 1) / 3) + 1 = 2 windows start at 0 and 3; 3 < 4 is kept.
        assert_eq!(pooled_len(4, 1, 3), Some(2));
        // ceil((3 - 1) / 3) + 1 = 2, but the second would start at 3 == len: dropped.
        assert_eq!(pooled_len(3, 1, 3), Some(1));
        assert_eq!(pooled_len(3, 3, 2), Some(1));
        assert_eq!(pooled_len(4, 3, 2), Some(2));
        assert_eq!(pooled_len(0, 1, 1), None);
        assert_eq!(pooled_len(5, 0, 1), None);
        assert_eq!(pooled_len(5, 1, 0), None);
    }
}
