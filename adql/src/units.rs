//! ADQL 2.1 `IN_UNIT(value, 'unit')` (§2.3.5): a value converted to another unit.
//!
//! The source unit is the `unit` metadata of the value's field (from `TUNITn`, Parquet field
//! metadata or the upload), so `IN_UNIT(ra, 'arcmin')` works on any column that says what it
//! is in. Units are read in the IVOA VOUnits syntax, for the common astronomical ones:
//! SI-prefixed base units, products with `.`, one `/`, powers written `m-2`, `m**2` or
//! `m^2`. A unit the parser does not know, a column without a unit, or units of different
//! kinds (`deg` to `Jy`) is an error, never a silent wrong number.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub const IN_UNIT: &str = "adql_in_unit";

/// A unit as a factor to SI and powers of (rad, m, s, kg, K); magnitudes are their own kind.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quantity {
    factor: f64,
    dims: [i32; 6],
}

impl Quantity {
    const ONE: Quantity = Quantity {
        factor: 1.0,
        dims: [0; 6],
    };

    fn pow(self, n: i32) -> Quantity {
        Quantity {
            factor: self.factor.powi(n),
            dims: self.dims.map(|d| d * n),
        }
    }

    fn times(self, other: Quantity) -> Quantity {
        let mut dims = self.dims;
        for (d, o) in dims.iter_mut().zip(other.dims) {
            *d += o;
        }
        Quantity {
            factor: self.factor * other.factor,
            dims,
        }
    }
}

/// (name, factor to SI, dims) of the units insitu knows.
fn base(name: &str) -> Option<Quantity> {
    use std::f64::consts::PI;
    let q = |factor: f64, dims: [i32; 6]| Some(Quantity { factor, dims });
    const ANGLE: [i32; 6] = [1, 0, 0, 0, 0, 0];
    const LENGTH: [i32; 6] = [0, 1, 0, 0, 0, 0];
    const TIME: [i32; 6] = [0, 0, 1, 0, 0, 0];
    const MASS: [i32; 6] = [0, 0, 0, 1, 0, 0];
    const FLUX_DENSITY: [i32; 6] = [0, 0, -2, 1, 0, 0]; // W m-2 Hz-1 = kg s-2
    const ENERGY: [i32; 6] = [0, 2, -2, 1, 0, 0];
    const POWER: [i32; 6] = [0, 2, -3, 1, 0, 0];
    match name {
        "rad" => q(1.0, ANGLE),
        "deg" => q(PI / 180.0, ANGLE),
        "arcmin" => q(PI / 180.0 / 60.0, ANGLE),
        "arcsec" => q(PI / 180.0 / 3600.0, ANGLE),
        "mas" => q(PI / 180.0 / 3.6e6, ANGLE),
        "uas" => q(PI / 180.0 / 3.6e9, ANGLE),
        "sr" => q(1.0, [2, 0, 0, 0, 0, 0]),
        "m" => q(1.0, LENGTH),
        "Angstrom" | "angstrom" => q(1e-10, LENGTH),
        "AU" | "au" => q(1.495_978_707e11, LENGTH),
        "pc" => q(3.085_677_581_491_367e16, LENGTH),
        "lyr" => q(9.460_730_472_580_8e15, LENGTH),
        "s" => q(1.0, TIME),
        "min" => q(60.0, TIME),
        "h" => q(3600.0, TIME),
        "d" => q(86400.0, TIME),
        "yr" | "a" => q(365.25 * 86400.0, TIME),
        "g" => q(1e-3, MASS),
        "solMass" => q(1.988_409_87e30, MASS),
        "K" => q(1.0, [0, 0, 0, 0, 1, 0]),
        "Hz" => q(1.0, [0, 0, -1, 0, 0, 0]),
        "Jy" => q(1e-26, FLUX_DENSITY),
        "J" => q(1.0, ENERGY),
        "erg" => q(1e-7, ENERGY),
        "eV" => q(1.602_176_634e-19, ENERGY),
        "W" => q(1.0, POWER),
        "mag" => q(1.0, [0, 0, 0, 0, 0, 1]),
        _ => None,
    }
}

/// One factor: a known unit, or an SI prefix and a known unit, with an optional power.
fn factor(text: &str) -> Option<Quantity> {
    let split = text
        .find(|c: char| c == '-' || c == '+' || c == '^' || c == '*' || c.is_ascii_digit())
        .unwrap_or(text.len());
    let (name, power) = text.split_at(split);
    let power = power.trim_start_matches("**").trim_start_matches('^');
    let power: i32 = if power.is_empty() {
        1
    } else {
        power.trim_start_matches('+').parse().ok()?
    };
    let unit = base(name).or_else(|| {
        let (prefix, rest) = name.split_at(name.char_indices().nth(1)?.0);
        let scale = match prefix {
            "y" => 1e-24,
            "z" => 1e-21,
            "a" => 1e-18,
            "f" => 1e-15,
            "p" => 1e-12,
            "n" => 1e-9,
            "u" => 1e-6,
            "m" => 1e-3,
            "c" => 1e-2,
            "d" => 1e-1,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            _ => return None,
        };
        let unit = base(rest).filter(|u| u.dims[5] == 0)?;
        Some(Quantity {
            factor: unit.factor * scale,
            ..unit
        })
    })?;
    Some(unit.pow(power))
}

/// A VOUnits string as a quantity.
fn parse(unit: &str) -> Option<Quantity> {
    let unit = unit.trim();
    if unit.is_empty() {
        return None;
    }
    let (numerator, denominator) = match unit.split_once('/') {
        Some((n, d)) => (n, Some(d)),
        None => (unit, None),
    };
    let product = |text: &str| -> Option<Quantity> {
        text.split(['.', ' '])
            .filter(|f| !f.is_empty())
            .try_fold(Quantity::ONE, |acc, f| Some(acc.times(factor(f)?)))
    };
    let mut q = product(numerator)?;
    if let Some(d) = denominator {
        q = q.times(product(d)?.pow(-1));
    }
    Some(q)
}

/// The factor that converts values in `from` into `to`.
pub fn conversion(from: &str, to: &str) -> std::result::Result<f64, String> {
    let known = |u: &str| parse(u).ok_or_else(|| format!("IN_UNIT: unknown unit {u:?}"));
    let (a, b) = (known(from)?, known(to)?);
    if a.dims != b.dims {
        return Err(format!("IN_UNIT: cannot convert {from} to {to}"));
    }
    Ok(a.factor / b.factor)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct InUnit {
    signature: Signature,
}

/// The `adql_in_unit(value, 'unit')` UDF.
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(InUnit {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

impl ScalarUDFImpl for InUnit {
    fn name(&self) -> &str {
        IN_UNIT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let fail = |m: String| DataFusionError::Execution(m);
        let target = match args.args.get(1) {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(u))
                | ScalarValue::LargeUtf8(Some(u))
                | ScalarValue::Utf8View(Some(u)),
            )) => u.clone(),
            _ => return Err(fail("IN_UNIT takes a unit as a string literal".into())),
        };
        let source = args
            .arg_fields
            .first()
            .and_then(|f| f.metadata().get("unit").cloned())
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                fail(
                    "IN_UNIT: the value has no unit (only columns with a unit can be converted)"
                        .into(),
                )
            })?;
        let k = conversion(&source, &target).map_err(fail)?;
        let value = match args.args.first() {
            Some(v) => v.to_array(args.number_rows)?,
            None => return Err(fail("IN_UNIT takes a value and a unit".into())),
        };
        let value = cast(&value, &DataType::Float64)?;
        let converted: Float64Array = value
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|v| v * k))
            .collect();
        debug_assert_eq!(converted.len(), value.len());
        Ok(ColumnarValue::Array(Arc::new(converted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_between_units_of_one_kind_only() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
        assert!(close(conversion("deg", "arcsec").unwrap(), 3600.0));
        assert!(close(conversion("mas/yr", "arcsec/a").unwrap(), 1e-3));
        assert!(close(conversion("mJy", "Jy").unwrap(), 1e-3));
        assert!(close(conversion("erg.s-1.cm-2.Hz-1", "Jy").unwrap(), 1e23));
        assert!(close(conversion("km/s", "m.s**-1").unwrap(), 1e3));
        assert!(close(conversion("kpc", "pc").unwrap(), 1e3));
        assert!(conversion("deg", "Jy").is_err());
        assert!(conversion("mag", "mmag").is_err()); // no prefixes on magnitudes
        assert!(conversion("furlong", "m").is_err());
    }
}
