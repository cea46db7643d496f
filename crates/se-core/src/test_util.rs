//! Helpers shared by the unit tests.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The CPU backend the unit tests run on.
pub type TestBackend = burn::backend::Flex;

/// A tensor of the given shape from (nested) arrays, flattened in row-major order.
pub fn tensor<B: Backend, const D: usize>(
    values: impl Into<TensorData>,
    shape: [usize; D],
) -> Tensor<B, D> {
    let flat: Vec<f32> = values.into().convert::<f32>().to_vec().unwrap();
    Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape(shape)
}

/// The values of a tensor, flattened.
pub fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec().unwrap()
}

/// Asserts that `actual`, flattened, equals `expected` to 1e-5, relative to the value's size
/// above 1 (f32 keeps about seven digits: a gradient of 45 is exact to about 4e-6).
pub fn assert_close<B: Backend, const D: usize>(actual: Tensor<B, D>, expected: &[f32]) {
    let actual = values(actual);
    assert_eq!(actual.len(), expected.len(), "number of elements");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-5 * e.abs().max(1.0),
            "element {i}: got {a}, expected {e}\n{actual:?}"
        );
    }
}
