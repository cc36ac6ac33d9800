//! ADQL geometry functions (ADQL 2.1 §4.2) as scalar UDFs on degrees, with exact spherical math.
//!
//! Geometry values are not materialised: [`crate::rewrite`] turns each geometry predicate or
//! measure into a call on numbers. The two that carry cone searches and cross-matches have
//! their own UDFs, which the HEALPix pushdown and the spatial join recognise:
//! `CONTAINS(POINT(a, d), CIRCLE(a0, d0, r))` → `adql_contains_point_circle(a, d, a0, d0, r)`
//! and `DISTANCE(POINT, POINT)` (or the 2.1 four-number form) → `adql_distance(a1, d1, a2, d2)`.
//! The rest take their shapes flattened as numbers ([`Shape::decode`]): `adql_contains`,
//! `adql_intersects`, `adql_area` (square degrees), `adql_centroid_ra`/`adql_centroid_dec`.
//!
//! Shapes: a POINT; a CIRCLE (a spherical cap); a POLYGON with great-circle edges, smaller
//! than a hemisphere, either orientation; a BOX is the polygon whose corners lie at
//! (±width/2, ±height/2) in the plane tangent at its centre, so its sides are great circles
//! and its width and height are the arcs through the centre (as in STC).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_float64_array;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub const DISTANCE: &str = "adql_distance";
pub const CONTAINS_POINT_CIRCLE: &str = "adql_contains_point_circle";
pub const CONTAINS: &str = "adql_contains";
pub const INTERSECTS: &str = "adql_intersects";
pub const AREA: &str = "adql_area";
pub const CENTROID_RA: &str = "adql_centroid_ra";
pub const CENTROID_DEC: &str = "adql_centroid_dec";

/// Codes that lead each flattened shape: `POINT a d`, `CIRCLE a d r`, `BOX a d w h`,
/// `POLYGON n a1 d1 … an dn`.
pub const POINT_CODE: f64 = 1.0;
pub const CIRCLE_CODE: f64 = 2.0;
pub const BOX_CODE: f64 = 3.0;
pub const POLYGON_CODE: f64 = 4.0;

type V3 = [f64; 3];

fn unit(ra: f64, dec: f64) -> V3 {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn add(a: V3, b: V3, k: f64) -> V3 {
    [a[0] + k * b[0], a[1] + k * b[1], a[2] + k * b[2]]
}

fn normalized(a: V3) -> Option<V3> {
    let n = dot(a, a).sqrt();
    (n > 0.0 && n.is_finite()).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

/// Angle in radians between unit vectors (atan2 form: accurate at every separation).
fn angle(a: V3, b: V3) -> f64 {
    let c = cross(a, b);
    dot(c, c).sqrt().atan2(dot(a, b))
}

fn radec(v: V3) -> (f64, f64) {
    let ra = v[1].atan2(v[0]).to_degrees().rem_euclid(360.0);
    (ra, v[2].clamp(-1.0, 1.0).asin().to_degrees())
}

/// A geometry on the unit sphere.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Point(V3),
    /// Centre and radius in radians.
    Circle(V3, f64),
    /// Vertices in order; edges are the shorter great-circle arcs between them.
    Polygon(Vec<V3>),
}

impl Shape {
    /// Reads one flattened shape off the front of `args`; the shape and what follows it.
    /// `None` on a null/NaN coordinate or a malformed encoding (the UDF gives null).
    pub fn decode(args: &[f64]) -> Option<(Shape, &[f64])> {
        let (&code, rest) = args.split_first()?;
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if code == POINT_CODE {
            let (v, rest) = rest.split_at_checked(2)?;
            finite(v).then(|| (Shape::Point(unit(v[0], v[1])), rest))
        } else if code == CIRCLE_CODE {
            let (v, rest) = rest.split_at_checked(3)?;
            (finite(v) && v[2] >= 0.0)
                .then(|| (Shape::Circle(unit(v[0], v[1]), v[2].to_radians()), rest))
        } else if code == BOX_CODE {
            let (v, rest) = rest.split_at_checked(4)?;
            if !(finite(v) && v[2] >= 0.0 && v[3] >= 0.0 && v[2] < 180.0 && v[3] < 180.0) {
                return None;
            }
            let (ra, dec) = (v[0].to_radians(), v[1].to_radians());
            let centre = unit(v[0], v[1]);
            let east = [-ra.sin(), ra.cos(), 0.0];
            let north = [-dec.sin() * ra.cos(), -dec.sin() * ra.sin(), dec.cos()];
            let (x, y) = (
                (v[2] / 2.0).to_radians().tan(),
                (v[3] / 2.0).to_radians().tan(),
            );
            let corner =
                |sx: f64, sy: f64| normalized(add(add(centre, east, sx * x), north, sy * y));
            let corners = [(1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)]
                .iter()
                .map(|&(sx, sy)| corner(sx, sy))
                .collect::<Option<Vec<V3>>>()?;
            Some((Shape::Polygon(corners), rest))
        } else if code == POLYGON_CODE {
            let (&n, rest) = rest.split_first()?;
            let n = n as usize;
            let (v, rest) = rest.split_at_checked(2 * n)?;
            (n >= 3 && finite(v)).then(|| {
                let vertices = v.chunks_exact(2).map(|c| unit(c[0], c[1])).collect();
                (Shape::Polygon(vertices), rest)
            })
        } else {
            None
        }
    }

    fn edges(vertices: &[V3]) -> impl Iterator<Item = (V3, V3)> + '_ {
        vertices
            .iter()
            .zip(vertices.iter().cycle().skip(1))
            .map(|(&a, &b)| (a, b))
    }

    /// Whether `p` lies in the shape (its boundary included, up to rounding).
    fn holds_point(&self, p: V3) -> bool {
        match self {
            Shape::Point(q) => angle(p, *q) == 0.0,
            Shape::Circle(c, r) => angle(p, *c) <= *r,
            // The winding angle of the polygon seen from p is 2π inside, 0 outside, and −2π
            // in the polygon's antipodal image: inside is where it has the sign of the
            // polygon's own orientation (its signed area).
            Shape::Polygon(v) => {
                let winding: f64 = Self::edges(v)
                    .map(|(a, b)| {
                        let y = dot(p, cross(a, b));
                        let x = dot(a, b) - dot(p, a) * dot(p, b);
                        y.atan2(x)
                    })
                    .sum();
                (winding.abs() > std::f64::consts::PI && winding * signed_excess(v) > 0.0)
                    || Self::edges(v).any(|(a, b)| arc_distance(p, a, b) < 1e-15)
            }
        }
    }

    /// ADQL `CONTAINS(self, other)`: self lies within other.
    pub fn within(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Point(p), _) => other.holds_point(*p),
            (Shape::Circle(c, r), Shape::Circle(c2, r2)) => angle(*c, *c2) + r <= *r2,
            (Shape::Circle(c, r), Shape::Polygon(v)) => {
                other.holds_point(*c) && Self::edges(v).all(|(a, b)| arc_distance(*c, a, b) >= *r)
            }
            (Shape::Polygon(v), Shape::Circle(..)) => v.iter().all(|&p| other.holds_point(p)),
            (Shape::Polygon(v), Shape::Polygon(w)) => {
                v.iter().all(|&p| other.holds_point(p)) && !edges_cross(v, w)
            }
            (_, Shape::Point(_)) => false,
        }
    }

    /// ADQL `INTERSECTS(self, other)`: the shapes share a point.
    pub fn intersects(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Point(p), _) => other.holds_point(*p),
            (_, Shape::Point(p)) => self.holds_point(*p),
            (Shape::Circle(c, r), Shape::Circle(c2, r2)) => angle(*c, *c2) <= r + r2,
            (Shape::Circle(c, r), Shape::Polygon(v)) | (Shape::Polygon(v), Shape::Circle(c, r)) => {
                Shape::Polygon(v.clone()).holds_point(*c)
                    || Self::edges(v).any(|(a, b)| arc_distance(*c, a, b) <= *r)
            }
            (Shape::Polygon(v), Shape::Polygon(w)) => {
                v.iter().any(|&p| other.holds_point(p))
                    || w.iter().any(|&p| self.holds_point(p))
                    || edges_cross(v, w)
            }
        }
    }

    /// Area in square degrees.
    pub fn area(&self) -> f64 {
        let steradians = match self {
            Shape::Point(_) => 0.0,
            Shape::Circle(_, r) => 2.0 * std::f64::consts::PI * (1.0 - r.cos()),
            // Spherical excess of a fan of triangles (Van Oosterom & Strackee).
            Shape::Polygon(v) => signed_excess(v).abs(),
        };
        steradians * (180.0 / std::f64::consts::PI).powi(2)
    }

    /// Centre of a circle, the point itself, or a polygon's area-weighted centre direction.
    pub fn centroid(&self) -> Option<(f64, f64)> {
        let v = match self {
            Shape::Point(p) | Shape::Circle(p, _) => *p,
            Shape::Polygon(v) => {
                let mut sum = [0.0; 3];
                for w in v[1..].windows(2) {
                    let weight = triangle_excess(v[0], w[0], w[1]);
                    let centre = normalized(add(add(v[0], w[0], 1.0), w[1], 1.0))?;
                    sum = add(sum, centre, weight);
                }
                normalized(sum)?
            }
        };
        Some(radec(v))
    }
}

/// The polygon's area in steradians, positive when its vertices turn anticlockwise seen from
/// outside the sphere.
fn signed_excess(v: &[V3]) -> f64 {
    v[1..]
        .windows(2)
        .map(|w| triangle_excess(v[0], w[0], w[1]))
        .sum()
}

fn triangle_excess(a: V3, b: V3, c: V3) -> f64 {
    2.0 * dot(a, cross(b, c)).atan2(1.0 + dot(a, b) + dot(b, c) + dot(c, a))
}

/// Whether `p` (on the great circle of arc a–b) lies on that arc.
fn on_arc(p: V3, a: V3, b: V3) -> bool {
    let n = cross(a, b);
    dot(cross(a, p), n) >= 0.0 && dot(cross(p, b), n) >= 0.0 && dot(p, add(a, b, 1.0)) > 0.0
}

/// Angular distance in radians from `p` to the arc a–b.
fn arc_distance(p: V3, a: V3, b: V3) -> f64 {
    let ends = angle(p, a).min(angle(p, b));
    let Some(n) = normalized(cross(a, b)) else {
        return ends;
    };
    let along = add(p, n, -dot(p, n));
    match normalized(along) {
        Some(q) if on_arc(q, a, b) => dot(p, n).abs().clamp(0.0, 1.0).asin(),
        _ => ends,
    }
}

/// Whether an edge of polygon `v` crosses an edge of polygon `w`.
fn edges_cross(v: &[V3], w: &[V3]) -> bool {
    Shape::edges(v).any(|(a, b)| {
        Shape::edges(w).any(|(c, d)| {
            let Some(x) = normalized(cross(cross(a, b), cross(c, d))) else {
                return false; // same great circle
            };
            [x, [-x[0], -x[1], -x[2]]]
                .iter()
                .any(|&x| on_arc(x, a, b) && on_arc(x, c, d))
        })
    })
}

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
    let one = |v: &[f64]| match Shape::decode(v) {
        Some((shape, [])) => Some(shape),
        _ => None,
    };
    let two = |v: &[f64]| {
        let (a, rest) = Shape::decode(v)?;
        match Shape::decode(rest)? {
            (b, []) => Some((a, b)),
            _ => None,
        }
    };
    vec![
        RowUdf::scalar(CONTAINS, DataType::Int32, move |v| {
            two(v).map(|(a, b)| f64::from(u8::from(a.within(&b))))
        }),
        RowUdf::scalar(INTERSECTS, DataType::Int32, move |v| {
            two(v).map(|(a, b)| f64::from(u8::from(a.intersects(&b))))
        }),
        RowUdf::scalar(AREA, DataType::Float64, move |v| one(v).map(|s| s.area())),
        RowUdf::scalar(CENTROID_RA, DataType::Float64, move |v| {
            one(v)?.centroid().map(|c| c.0)
        }),
        RowUdf::scalar(CENTROID_DEC, DataType::Float64, move |v| {
            one(v)?.centroid().map(|c| c.1)
        }),
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

/// A UDF of any number of Float64 arguments computed row by row (the flattened shapes).
struct RowUdf {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    f: RowFn,
}

type RowFn = Box<dyn Fn(&[f64]) -> Option<f64> + Send + Sync>;

impl RowUdf {
    fn scalar(
        name: &'static str,
        returns: DataType,
        f: impl Fn(&[f64]) -> Option<f64> + Send + Sync + 'static,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(RowUdf {
            name,
            signature: Signature::variadic(vec![DataType::Float64], Volatility::Immutable),
            returns,
            f: Box::new(f),
        })
    }
}

impl std::fmt::Debug for RowUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowUdf({})", self.name)
    }
}

impl PartialEq for RowUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowUdf {}

impl std::hash::Hash for RowUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for RowUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = map_rows(&args.args, &self.f)?;
        let array: ArrayRef = match self.returns {
            DataType::Int32 => Arc::new(
                values
                    .iter()
                    .map(|v| v.map(|v| v as i32))
                    .collect::<Int32Array>(),
            ),
            _ => Arc::new(values),
        };
        // Constant arguments give a constant.
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }
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
