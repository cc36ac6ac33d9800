//! What a tensor batch is made of (planes of variable size) and how it is made (a [`Recipe`]).

use crate::resample::Filter;
use crate::stretch::{Interval, Stretch};
use crate::{Error, Result};

/// One channel of one item: a row-major `width × height` image of physical values, NaN (or
/// ±inf) where there is no data.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [f32],
}

impl<'a> Plane<'a> {
    /// A plane over `data`, which must hold exactly `width × height` values.
    pub fn new(width: usize, height: usize, data: &'a [f32]) -> Result<Plane<'a>> {
        if width == 0 || height == 0 || width.checked_mul(height) != Some(data.len()) {
            return Err(Error::Input(format!(
                "a {width}×{height} plane needs {} values, got {}",
                width.saturating_mul(height),
                data.len()
            )));
        }
        Ok(Plane {
            width,
            height,
            data,
        })
    }
}

/// `items × channels` planes, item-major (the planes of item 0, then of item 1, …): the
/// tensor's `N` and `C`.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    pub items: usize,
    pub channels: usize,
    pub planes: Vec<Plane<'a>>,
}

impl<'a> Batch<'a> {
    pub fn new(items: usize, channels: usize, planes: Vec<Plane<'a>>) -> Result<Batch<'a>> {
        let batch = Batch {
            items,
            channels,
            planes,
        };
        batch.check()?;
        Ok(batch)
    }

    /// The checks of [`Batch::new`] and [`Plane::new`] again (the fields are public): both
    /// paths refuse a batch that does not add up rather than read out of bounds.
    pub fn check(&self) -> Result<()> {
        if self.channels == 0 || self.items.checked_mul(self.channels) != Some(self.planes.len()) {
            return Err(Error::Input(format!(
                "{} items of {} channels need {} planes, got {}",
                self.items,
                self.channels,
                self.items.saturating_mul(self.channels),
                self.planes.len()
            )));
        }
        for p in &self.planes {
            Plane::new(p.width, p.height, p.data)?;
        }
        Ok(())
    }
}

/// The display scaling of each plane after resampling: limits from its own finite values,
/// then a stretch to [0, 1], as astropy's `ImageNormalize(interval=…, stretch=…, clip=True)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// [`Interval::MinMax`] or [`Interval::Percentile`]; zscale is for previews only.
    pub interval: Interval,
    pub stretch: Stretch,
}

/// How planes become a `[N, C, H, W]` float32 tensor: resampled to `height × width`
/// ([`Filter`], optionally flux-conserving), optionally scaled ([`Scaling`]), and every
/// value that is not finite then replaced by `fill`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub height: usize,
    pub width: usize,
    pub filter: Filter,
    /// Multiply by the area of an output pixel in input pixels, so that sums (fluxes) are kept
    /// rather than surface brightness.
    pub flux_conserving: bool,
    /// `None` keeps the resampled physical values.
    pub scaling: Option<Scaling>,
    /// What NaN and ±inf become at the end (NaN keeps them).
    pub fill: f32,
}

/// The largest output side: 2048 pixels, so that a plane's percentiles are exact on both paths
/// (up to [`crate::stretch::EXACT_PERCENTILE_MAX`] values).
pub const MAX_SIDE: usize = 2048;

impl Recipe {
    /// `height × width` with Lanczos-3, asinh (astropy's `a = 0.1`) on the central 99.5 %,
    /// non-finite values as 0: the usual recipe for morphology networks.
    pub fn new(height: usize, width: usize) -> Recipe {
        Recipe {
            height,
            width,
            filter: Filter::Lanczos3,
            flux_conserving: false,
            scaling: Some(Scaling {
                interval: Interval::central_percentile(99.5),
                stretch: Stretch::ASINH,
            }),
            fill: 0.0,
        }
    }

    /// Refuses sizes of zero or above [`MAX_SIDE`], zscale, and stretch parameters or
    /// percentiles outside their domains, with a message naming the field.
    pub fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Recipe(why));
        if self.height == 0 || self.width == 0 {
            return bad(format!(
                "output size {}×{} is empty",
                self.width, self.height
            ));
        }
        if self.height > MAX_SIDE || self.width > MAX_SIDE {
            return bad(format!(
                "output size {}×{} exceeds {MAX_SIDE} pixels a side",
                self.width, self.height
            ));
        }
        let Some(scaling) = self.scaling else {
            return Ok(());
        };
        match scaling.interval {
            Interval::MinMax => {}
            Interval::Percentile { lower, upper } => {
                let inside = |p: f32| (0.0..=100.0).contains(&p);
                if !(inside(lower) && inside(upper) && lower <= upper) {
                    return bad(format!(
                        "percentiles {lower} and {upper} must satisfy 0 ≤ lower ≤ upper ≤ 100"
                    ));
                }
            }
            _ => return bad("only minmax and percentile intervals make tensors".into()),
        }
        match scaling.stretch {
            Stretch::Log { a } | Stretch::Asinh { a } if !(a.is_finite() && a > 0.0) => {
                bad(format!("stretch parameter a = {a} must be finite and > 0"))
            }
            _ => Ok(()),
        }
    }
}

/// A `[N, C, H, W]` float32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl Tensor {
    /// The tensor as `uint8`: `round(255 · clamp(v, 0, 1))`, for scaled tensors; NaN → 0.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| {
                let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                (v * 255.0).round() as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_recipes_and_inputs_are_refused_with_the_reason() {
        let ok = Recipe::new(224, 224);
        assert!(ok.check().is_ok());
        let cases = [
            (Recipe { width: 0, ..ok }, "empty"),
            (Recipe { height: 2049, ..ok }, "exceeds"),
            (
                Recipe {
                    scaling: Some(Scaling {
                        interval: Interval::ZScale,
                        stretch: Stretch::Linear,
                    }),
                    ..ok
                },
                "minmax and percentile",
            ),
            (
                Recipe {
                    scaling: Some(Scaling {
                        interval: Interval::Percentile {
                            lower: 10.0,
                            upper: 101.0,
                        },
                        stretch: Stretch::Linear,
                    }),
                    ..ok
                },
                "percentiles",
            ),
            (
                Recipe {
                    scaling: Some(Scaling {
                        interval: Interval::MinMax,
                        stretch: Stretch::Asinh { a: f32::NAN },
                    }),
                    ..ok
                },
                "stretch parameter",
            ),
        ];
        for (recipe, why) in cases {
            let message = recipe.check().unwrap_err().to_string();
            assert!(message.contains(why), "{message}");
        }
        assert!(Plane::new(3, 2, &[0.0; 5]).is_err());
        assert!(Plane::new(0, 0, &[]).is_err());
        let p = Plane::new(1, 1, &[1.0]).unwrap();
        assert!(Batch::new(2, 2, vec![p; 3]).is_err());
        assert!(Batch::new(0, 0, vec![]).is_err());
        assert!(Batch::new(0, 3, vec![]).is_ok());
        let mut forged = Batch::new(1, 1, vec![p]).unwrap();
        forged.planes[0].width = 2;
        let message = forged.check().unwrap_err().to_string();
        assert!(
            message.contains("a 2×1 plane needs 2 values, got 1"),
            "{message}"
        );
        assert!(crate::reference::tensor(&forged, &ok).is_err());
    }

    #[test]
    fn u8_rounds_and_clamps() {
        let t = Tensor {
            shape: [1, 1, 1, 5],
            data: vec![-1.0, 0.0, 0.5, 1.0, f32::NAN],
        };
        assert_eq!(t.to_u8(), [0, 0, 128, 255, 0]);
    }
}
