//! ADQL geometry functions (ADQL 2.1 §4.2) as scalar UDFs on degrees, with exact spherical math.
//!
//! `POINT` and `CIRCLE` values are not materialised: the parser rewrites
//! `CONTAINS(POINT(a, d), CIRCLE(a0, d0, r))` into `adql_contains_point_circle(a, d, a0, d0, r)`
//! and `DISTANCE(POINT(...), POINT(...))` (or the 2.1 four-argument form) into
//! `adql_distance(a1, d1, a2, d2)`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_float64_array;
use datafusion::error::Result;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};

pub const DISTANCE: &str = "adql_distance";
pub const CONTAINS_POINT_CIRCLE: &str = "adql_contains_point_circle";

/// Angular distance in degrees between two positions in degrees, by the haversine formula in
/// its atan2 form (accurate at every separation, unlike acos near 0 and 180°).
pub fn angular_distance(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (d1, d2) = (dec1.to_radians(), dec2.to_radians());
    let dra = (ra2 - ra1).to_radians();
    let (sin_dra, cos_dra) = dra.sin_cos();
    let x = d1.cos() * d2.sin() - d1.sin() * d2.cos() * cos_dra;
    let y = d2.cos() * sin_dra;
    let z = d1.sin() * d2.sin() + d1.cos() * d2.cos() * cos_dra;
    x.hypot(y).atan2(z).to_degrees()
}

/// The geometry UDFs to register in a session.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        create_udf(
            DISTANCE,
            vec![DataType::Float64; 4],
            DataType::Float64,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| {
                map_rows(args, |v| Some(angular_distance(v[0], v[1], v[2], v[3])))
                    .map(|a: Float64Array| ColumnarValue::Array(Arc::new(a)))
            }),
        ),
        create_udf(
            CONTAINS_POINT_CIRCLE,
            vec![DataType::Float64; 5],
            DataType::Int32,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| {
                let d: Float64Array = map_rows(args, |v| {
                    Some(angular_distance(v[0], v[1], v[2], v[3]) - v[4])
                })?;
                // ADQL 2.1 §4.2.6: 1 when the point lies in the circle (its edge included).
                let contained: Int32Array =
                    d.iter().map(|x| x.map(|x| i32::from(x <= 0.0))).collect();
                Ok(ColumnarValue::Array(Arc::new(contained) as ArrayRef))
            }),
        ),
    ]
}

/// Applies `f` row by row to Float64 arguments (scalars broadcast); a null argument gives null.
fn map_rows(args: &[ColumnarValue], f: impl Fn(&[f64]) -> Option<f64>) -> Result<Float64Array> {
    let rows = args
        .iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let arrays: Vec<ArrayRef> = args
        .iter()
        .map(|a| a.clone().into_array(rows))
        .collect::<Result<_>>()?;
    let columns: Vec<&Float64Array> = arrays
        .iter()
        .map(|a| as_float64_array(a))
        .collect::<Result<_>>()?;
    let mut values = vec![0.0; columns.len()];
    Ok((0..rows)
        .map(|i| {
            for (v, c) in values.iter_mut().zip(&columns) {
                if c.is_null(i) {
                    return None;
                }
                *v = c.value(i);
            }
            f(&values)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_at_poles_wrap_and_antipodes() {
        assert!((angular_distance(359.5, 0.0, 0.5, 0.0) - 1.0).abs() < 1e-12);
        assert!((angular_distance(10.0, 89.0, 190.0, 89.0) - 2.0).abs() < 1e-12);
        assert!((angular_distance(0.0, 0.0, 180.0, 0.0) - 180.0).abs() < 1e-12);
        // A milliarcsecond is resolved (acos would round it away).
        let mas = 1.0 / 3_600_000.0;
        assert!(((angular_distance(20.0, 0.0, 20.0, mas) - mas) / mas).abs() < 1e-9);
    }
}
