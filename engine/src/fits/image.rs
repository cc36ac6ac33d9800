//! Image data units: element types, scaling (`BSCALE`/`BZERO`/`BLANK`) and row access in place.

use super::header::Header;
use super::layout::{axes, bitpix_bytes};
use crate::byteswap;

/// The stored element type of an image (FITS 4.0 Table 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bitpix {
    U8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

impl Bitpix {
    pub fn from_value(bitpix: i64) -> Option<Bitpix> {
        Some(match bitpix {
            8 => Bitpix::U8,
            16 => Bitpix::I16,
            32 => Bitpix::I32,
            64 => Bitpix::I64,
            -32 => Bitpix::F32,
            -64 => Bitpix::F64,
            _ => return None,
        })
    }

    pub fn bytes(self) -> usize {
        match self {
            Bitpix::U8 => 1,
            Bitpix::I16 => 2,
            Bitpix::I32 | Bitpix::F32 => 4,
            Bitpix::I64 | Bitpix::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Bitpix::F32 | Bitpix::F64)
    }
}

/// Linear scaling of stored values: physical = BZERO + BSCALE × stored (FITS 4.0 §4.4.2.5);
/// integer pixels equal to `BLANK` are undefined (NaN once scaled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub bscale: f64,
    pub bzero: f64,
    pub blank: Option<i64>,
}

impl Scaling {
    pub fn is_identity(&self) -> bool {
        self.bscale == 1.0 && self.bzero == 0.0
    }
}

/// An image HDU's data, in place (a slice of the memory map, or cfitsio's decompressed copy).
#[derive(Debug, Clone)]
pub struct Image<'a> {
    header: &'a Header,
    bitpix: Bitpix,
    axes: Vec<usize>,
    scaling: Scaling,
    data: &'a [u8],
}

impl<'a> Image<'a> {
    pub(crate) fn new(header: &'a Header, data: &'a [u8]) -> Result<Image<'a>, String> {
        let bitpix_value = header.integer("BITPIX").ok_or("BITPIX is missing")?;
        bitpix_bytes(bitpix_value).map_err(|e| e.0)?;
        let bitpix = Bitpix::from_value(bitpix_value).ok_or("bad BITPIX")?;
        let axes = axes(header).map_err(|e| e.0)?;
        if axes.len() < 2 {
            return Err("an image needs at least two axes".into());
        }
        let expected = axes
            .iter()
            .try_fold(bitpix.bytes(), |acc, &n| acc.checked_mul(n));
        if expected != Some(data.len()) {
            return Err(format!(
                "data unit has {} bytes, the header describes {expected:?}",
                data.len()
            ));
        }
        let scaling = Scaling {
            bscale: header.real("BSCALE").unwrap_or(1.0),
            bzero: header.real("BZERO").unwrap_or(0.0),
            blank: header.integer("BLANK").filter(|_| !bitpix.is_float()),
        };
        Ok(Image {
            header,
            bitpix,
            axes,
            scaling,
            data,
        })
    }

    pub fn header(&self) -> &'a Header {
        self.header
    }

    pub fn bitpix(&self) -> Bitpix {
        self.bitpix
    }

    pub fn scaling(&self) -> Scaling {
        self.scaling
    }

    /// NAXIS1 (the fastest-varying axis, x).
    pub fn width(&self) -> usize {
        self.axes[0]
    }

    /// NAXIS2 (y).
    pub fn height(&self) -> usize {
        self.axes[1]
    }

    /// Number of 2-D planes: the product of NAXIS3.. (1 for a 2-D image).
    pub fn planes(&self) -> usize {
        self.axes[2..].iter().product()
    }

    /// NAXIS1..NAXISn.
    pub fn axes(&self) -> &[usize] {
        &self.axes
    }

    /// The stored bytes (big-endian) of row `y` of plane `plane`, or `None` outside the image.
    pub fn row(&self, plane: usize, y: usize) -> Option<&'a [u8]> {
        if plane >= self.planes() || y >= self.height() {
            return None;
        }
        let row_len = self.width() * self.bitpix.bytes();
        let start = (plane * self.height() + y) * row_len;
        self.data.get(start..start + row_len)
    }

    /// Converts stored big-endian values to physical `f32` values (BLANK → NaN).
    pub fn to_physical(&self, stored: &[u8], out: &mut [f32]) {
        physical_f32(self.bitpix, self.scaling, stored, out);
    }

    /// The stored value that fills pixels outside the image in `partial` cutouts: NaN for
    /// floating-point images, `BLANK` for integer images (0 when there is no `BLANK`).
    pub fn fill_bytes(&self) -> Vec<u8> {
        match self.bitpix {
            Bitpix::F32 => f32::NAN.to_be_bytes().to_vec(),
            Bitpix::F64 => f64::NAN.to_be_bytes().to_vec(),
            other => {
                let blank = self.scaling.blank.unwrap_or(0);
                let be = blank.to_be_bytes();
                be[8 - other.bytes()..].to_vec()
            }
        }
    }
}

/// Stored big-endian values to physical f32, `out.len()` elements.
pub fn physical_f32(bitpix: Bitpix, scaling: Scaling, stored: &[u8], out: &mut [f32]) {
    let Scaling {
        bscale,
        bzero,
        blank,
    } = scaling;
    let scale = |v: f64| (bzero + bscale * v) as f32;
    let int = |v: i64| {
        if Some(v) == blank {
            f32::NAN
        } else {
            scale(v as f64)
        }
    };
    let n = out.len();
    match bitpix {
        Bitpix::F32 if scaling.is_identity() => byteswap::be_f32_to_native(&stored[..n * 4], out),
        Bitpix::F32 => {
            byteswap::be_f32_to_native(&stored[..n * 4], out);
            out.iter_mut().for_each(|v| *v = scale(*v as f64));
        }
        Bitpix::F64 => {
            for (o, c) in out.iter_mut().zip(stored.chunks_exact(8)) {
                *o = scale(f64::from_be_bytes(c.try_into().unwrap_or([0; 8])));
            }
        }
        Bitpix::U8 => {
            for (o, &b) in out.iter_mut().zip(stored) {
                *o = int(b as i64);
            }
        }
        Bitpix::I16 => {
            for (o, c) in out.iter_mut().zip(stored.chunks_exact(2)) {
                *o = int(i16::from_be_bytes([c[0], c[1]]) as i64);
            }
        }
        Bitpix::I32 => {
            for (o, c) in out.iter_mut().zip(stored.chunks_exact(4)) {
                *o = int(i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as i64);
            }
        }
        Bitpix::I64 => {
            for (o, c) in out.iter_mut().zip(stored.chunks_exact(8)) {
                *o = int(i64::from_be_bytes(c.try_into().unwrap_or([0; 8])));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_unsigned_and_blank() {
        let s = Scaling {
            bscale: 1.0,
            bzero: 32768.0,
            blank: None,
        };
        let stored: Vec<u8> = [-32768i16, 0, 32767]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let mut out = [0f32; 3];
        physical_f32(Bitpix::I16, s, &stored, &mut out);
        assert_eq!(out, [0.0, 32768.0, 65535.0]);
        let s = Scaling {
            bscale: 0.5,
            bzero: 100.0,
            blank: Some(-1),
        };
        let stored: Vec<u8> = [-1i32, 4].iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut out = [0f32; 2];
        physical_f32(Bitpix::I32, s, &stored, &mut out);
        assert!(out[0].is_nan());
        assert_eq!(out[1], 102.0);
    }
}
