//! Max-unpooling: the checked function.

use burn::backend::Dispatch;
use burn::prelude::*;

use super::{SegNetOps, pool::check_float_dtype};
use crate::OpError;

/// Max-unpooling, checked: PyTorch's `MaxUnpool2d` with an explicit output size.
///
/// Returns a zeroed `[batch, channels, output_size[0], output_size[1]]` tensor where each value
/// of `x` is written at its flat position `indices` (`h * out_width + w`) in its plane. When
/// several cells name the same position, the last in row-major order wins.
///
/// # Shapes
/// - `x`, `indices`: `[batch, channels, height, width]`
/// - output: `[batch, channels, output_size[0], output_size[1]]`
///
/// # Errors
/// [`OpError::ShapeMismatch`] when `x` and `indices` differ in shape,
/// [`OpError::IndexOutOfRange`] when an index does not fit in the output plane (this reads the
/// smallest and largest index back from the device), [`OpError::UnsupportedDType`].
///
/// ```
/// use burn::prelude::*;
/// use squeeze_segnet::ops::{max_pool2d_with_indices, max_unpool2d, PoolOptions};
/// let device = Device::flex();
/// let x = Tensor::<4>::from_floats([[[[1., 5., 2.], [4., 3., 9.], [0., 8., 7.]]]], &device);
/// let (values, indices) = max_pool2d_with_indices(x, PoolOptions::new([2, 2], [2, 2]))?;
/// let restored = max_unpool2d(values, indices, [3, 3])?;
/// assert_eq!(
///     restored.into_data().try_to_vec::<f32>().unwrap(),
///     vec![0., 5., 0., 0., 0., 9., 0., 8., 7.]
/// );
/// # Ok::<(), squeeze_segnet::OpError>(())
/// ```
pub fn max_unpool2d(
    x: Tensor<4>,
    indices: Tensor<4, Int>,
    output_size: [usize; 2],
) -> Result<Tensor<4>, OpError> {
    if x.dims() != indices.dims() {
        return Err(OpError::ShapeMismatch {
            values: x.dims(),
            indices: indices.dims(),
        });
    }
    check_float_dtype(x.dtype())?;
    if x.shape().num_elements() > 0 {
        let plane = output_size[0] * output_size[1];
        let dtype = indices.dtype();
        let read = |t: Tensor<1, Int>| {
            scalar_i64(t).map_err(|reason| OpError::Device {
                dtype: format!("{dtype:?}"),
                reason,
            })
        };
        let low = read(indices.clone().min())?;
        let high = read(indices.clone().max())?;
        for index in [low, high] {
            if index < 0 || index as u128 >= plane as u128 {
                return Err(OpError::IndexOutOfRange { index, output_size });
            }
        }
    }
    Ok(max_unpool2d_unchecked(x, indices, output_size))
}

fn scalar_i64(t: Tensor<1, Int>) -> Result<i64, String> {
    let data = t.try_into_data().map_err(|e| {
        let text = format!("{e:?}");
        // The first line names the failure; the rest is the backend's nested causes.
        text.lines().next().unwrap_or_default().to_string()
    })?;
    Ok(data
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("an i64 vector after convert")[0])
}

/// [`max_unpool2d`] without argument checks, for callers that know the indices are valid
/// (the network does: they come from its own pooling). Out-of-range indices are skipped.
pub fn max_unpool2d_unchecked(
    x: Tensor<4>,
    indices: Tensor<4, Int>,
    output_size: [usize; 2],
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::seg_max_unpool2d(
        x.into_dispatch(),
        indices.into_dispatch(),
        output_size[0],
        output_size[1],
    ))
}
