//! World coordinate systems of celestial images: sky (ICRS) ↔ 0-based pixel, as astropy.wcs.
//!
//! Follows Greisen & Calabretta 2002 (Paper I, linear part), Calabretta & Greisen 2002
//! (Paper II, projections and the spherical rotation), the SIP convention (Shupe et al. 2005)
//! and TPV (the SCAMP/IRAF polynomial on intermediate world coordinates). Sky → pixel inverts
//! the distortions iteratively, as astropy's `all_world2pix` does, rather than trusting the
//! approximate inverse `AP`/`BP` polynomials. The ICRS → FK5 and → galactic rotations use
//! astropy's own constants so that `Cutout2D` positions agree.
//!
//! Supported: projections TAN, SIN (without slant), ARC, ZEA, STG, CAR, CEA, MER, SFL/GLS
//! and AIT; SIP (`-SIP`) and TPV distortions; frames ICRS, FK5 J2000 and galactic. Anything
//! else (ZPN, MOL, FK4, ecliptic, other equinoxes, fiducial offsets `PVi_1`/`PVi_2` on the
//! longitude axis) is an [`Error::Wcs`] naming the keyword.
//!
//! The projection formulas are the short closed forms of Paper II; the `mapproj` crate has
//! them too, but its rotation conventions (a centred projection with a position angle) do
//! not carry `LONPOLE`/`LATPOLE` through, so they are written here against the paper. The
//! native pole's choice and the pole-aligned special case follow wcslib (`cel.c`, `sph.c`),
//! which astropy wraps, so that agreement holds to 1e-6 pixel on the edges of the domain too.

use crate::fits::Header;
use crate::{Error, Result};

const D2R: f64 = std::f64::consts::PI / 180.0;
const R2D: f64 = 180.0 / std::f64::consts::PI;

/// A celestial WCS for image axes 1 and 2.
#[derive(Debug, Clone)]
pub struct Wcs {
    crpix: [f64; 2],
    /// Linear transform pixel offsets → intermediate world coordinates (degrees).
    cd: [[f64; 2]; 2],
    cd_inv: [[f64; 2]; 2],
    sip: Option<Sip>,
    tpv: Option<Tpv>,
    projection: Projection,
    /// Native spherical ↔ the WCS frame.
    rotation: Rotation,
    /// ICRS → the WCS frame; `None` when the frame is ICRS.
    icrs_to_frame: Option<[[f64; 3]; 3]>,
    /// Axis 1 holds latitude and axis 2 longitude (e.g. `DEC--TAN`, `RA---TAN`).
    swapped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Projection {
    Tan,
    Sin,
    Arc,
    Zea,
    Stg,
    Car,
    Cea { lambda: f64 },
    Mer,
    Sfl,
    Ait,
}

impl Projection {
    fn parse(code: &str, h: &Header, lat_axis: usize) -> Result<Projection> {
        let pv = |m: usize| h.real(&format!("PV{lat_axis}_{m}"));
        Ok(match code {
            "TAN" | "TPV" => Projection::Tan,
            "SIN" => {
                if pv(1).unwrap_or(0.0) != 0.0 || pv(2).unwrap_or(0.0) != 0.0 {
                    return Err(Error::Wcs(format!(
                        "SIN with PV{lat_axis}_1/PV{lat_axis}_2 (slant orthographic) is not supported"
                    )));
                }
                Projection::Sin
            }
            "ARC" => Projection::Arc,
            "ZEA" => Projection::Zea,
            "STG" => Projection::Stg,
            "CAR" => Projection::Car,
            "CEA" => {
                let lambda = pv(1).unwrap_or(1.0);
                if !(lambda > 0.0 && lambda <= 1.0) {
                    return Err(Error::Wcs(format!("CEA needs 0 < PV{lat_axis}_1 <= 1, got {lambda}")));
                }
                Projection::Cea { lambda }
            }
            "MER" => Projection::Mer,
            "SFL" | "GLS" => Projection::Sfl,
            "AIT" => Projection::Ait,
            other => {
                return Err(Error::Wcs(format!(
                    "projection {other} is not supported (TAN, TPV, SIN, ARC, ZEA, STG, CAR, CEA, MER, SFL, AIT are)"
                )))
            }
        })
    }

    /// Native latitude of the reference point, θ0 (Paper II Table 13).
    fn theta0(self) -> f64 {
        match self {
            Projection::Tan
            | Projection::Sin
            | Projection::Arc
            | Projection::Zea
            | Projection::Stg => 90.0,
            _ => 0.0,
        }
    }

    /// Native (φ, θ) in degrees → intermediate world (x, y) in degrees.
    fn forward(self, phi: f64, theta: f64) -> Option<(f64, f64)> {
        let zenithal = |r: f64| Some((r * (phi * D2R).sin(), -r * (phi * D2R).cos()));
        let t = theta * D2R;
        match self {
            Projection::Tan if theta > 0.0 => zenithal(R2D * t.cos() / t.sin()),
            Projection::Tan => None,
            Projection::Sin if theta >= 0.0 => zenithal(R2D * t.cos()),
            Projection::Sin => None,
            Projection::Arc => zenithal(90.0 - theta),
            Projection::Zea => zenithal(2.0 * R2D * ((90.0 - theta) * D2R / 2.0).sin()),
            Projection::Stg if theta > -90.0 => {
                zenithal(2.0 * R2D * ((90.0 - theta) * D2R / 2.0).tan())
            }
            Projection::Stg => None,
            Projection::Car => Some((phi, theta)),
            Projection::Cea { lambda } => Some((phi, R2D * t.sin() / lambda)),
            Projection::Mer if theta.abs() < 90.0 => {
                Some((phi, R2D * ((90.0 + theta) * D2R / 2.0).tan().ln()))
            }
            Projection::Mer => None,
            Projection::Sfl => Some((phi * t.cos(), theta)),
            Projection::Ait => {
                let half = phi * D2R / 2.0;
                let gamma = R2D * (2.0 / (1.0 + t.cos() * half.cos())).sqrt();
                Some((2.0 * gamma * t.cos() * half.sin(), gamma * t.sin()))
            }
        }
    }

    /// Intermediate world (x, y) in degrees → native (φ, θ) in degrees.
    fn inverse(self, x: f64, y: f64) -> Option<(f64, f64)> {
        let r = x.hypot(y);
        // φ = arg(−y, x) (Paper II eq. 14); undefined at the pole, where 0 is conventional.
        let phi = if r == 0.0 { 0.0 } else { R2D * x.atan2(-y) };
        match self {
            Projection::Tan => Some((phi, R2D * R2D.atan2(r))),
            Projection::Sin => {
                let s = r * D2R;
                (s <= 1.0).then(|| (phi, R2D * (1.0 - s * s).sqrt().atan2(s)))
            }
            Projection::Arc => (r <= 180.0).then_some((phi, 90.0 - r)),
            Projection::Zea => {
                let s = r * D2R / 2.0;
                (s <= 1.0).then(|| (phi, 90.0 - 2.0 * R2D * s.asin()))
            }
            Projection::Stg => Some((phi, 90.0 - 2.0 * R2D * (r * D2R / 2.0).atan())),
            Projection::Car => (y.abs() <= 90.0 && x.abs() <= 180.0).then_some((x, y)),
            Projection::Cea { lambda } => {
                let s = lambda * y * D2R;
                (s.abs() <= 1.0 && x.abs() <= 180.0).then(|| (x, R2D * s.asin()))
            }
            Projection::Mer => {
                (x.abs() <= 180.0).then(|| (x, 2.0 * R2D * (y * D2R).exp().atan() - 90.0))
            }
            Projection::Sfl => {
                let c = (y * D2R).cos();
                (y.abs() <= 90.0 && (c > 0.0 || x == 0.0))
                    .then(|| (if c > 0.0 { x / c } else { 0.0 }, y))
                    .filter(|(p, _)| p.abs() <= 180.0)
            }
            Projection::Ait => {
                // Paper II eq. 108.
                let zz = 1.0 - (x * D2R / 4.0).powi(2) - (y * D2R / 2.0).powi(2);
                if zz < 0.5 {
                    return None;
                }
                let z = zz.sqrt();
                let phi = 2.0 * R2D * (z * x * D2R / 2.0).atan2(2.0 * zz - 1.0);
                Some((phi, R2D * (y * z * D2R).asin()))
            }
        }
    }
}

/// SIP polynomials on pixel offsets from CRPIX (Shupe et al. 2005).
#[derive(Debug, Clone)]
struct Sip {
    a: Vec<(i32, i32, f64)>,
    b: Vec<(i32, i32, f64)>,
}

impl Sip {
    fn parse(h: &Header) -> Result<Sip> {
        let poly = |name: &str| -> Result<Vec<(i32, i32, f64)>> {
            let order = h
                .integer(&format!("{name}_ORDER"))
                .ok_or_else(|| Error::Wcs(format!("-SIP projection without {name}_ORDER")))?;
            if !(0..=9).contains(&order) {
                return Err(Error::Wcs(format!(
                    "{name}_ORDER = {order} is outside 0..9"
                )));
            }
            let order = order as i32;
            let mut terms = Vec::new();
            for p in 0..=order {
                for q in 0..=order - p {
                    if let Some(c) = h.real(&format!("{name}_{p}_{q}")).filter(|c| *c != 0.0) {
                        terms.push((p, q, c));
                    }
                }
            }
            Ok(terms)
        };
        Ok(Sip {
            a: poly("A")?,
            b: poly("B")?,
        })
    }

    /// (u, v) → (u + f(u, v), v + g(u, v)).
    fn apply(&self, u: f64, v: f64) -> (f64, f64) {
        let eval = |terms: &[(i32, i32, f64)]| {
            terms
                .iter()
                .map(|&(p, q, c)| c * u.powi(p) * v.powi(q))
                .sum::<f64>()
        };
        (u + eval(&self.a), v + eval(&self.b))
    }
}

/// TPV polynomials on intermediate world coordinates (degrees).
#[derive(Debug, Clone)]
struct Tpv {
    xi: [f64; 40],
    eta: [f64; 40],
}

impl Tpv {
    fn parse(h: &Header, lon_axis: usize, lat_axis: usize) -> Tpv {
        let read = |axis: usize| {
            let mut c = [0.0; 40];
            c[1] = 1.0;
            for (m, slot) in c.iter_mut().enumerate() {
                if let Some(v) = h.real(&format!("PV{axis}_{m}")) {
                    *slot = v;
                }
            }
            c
        };
        Tpv {
            xi: read(lon_axis),
            eta: read(lat_axis),
        }
    }

    /// The TPV monomials x^i y^j (and odd powers of r) in the order of the convention.
    fn terms(x: f64, y: f64) -> [f64; 40] {
        let r = x.hypot(y);
        let mut t = [0.0; 40];
        t[0] = 1.0;
        let mut k = 1;
        for n in 1..=7 {
            for j in 0..=n {
                t[k] = x.powi(n - j) * y.powi(j);
                k += 1;
            }
            if n % 2 == 1 {
                t[k] = r.powi(n);
                k += 1;
            }
        }
        t
    }

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let tx = Tpv::terms(x, y);
        let ty = Tpv::terms(y, x);
        let dot = |c: &[f64; 40], t: &[f64; 40]| c.iter().zip(t).map(|(a, b)| a * b).sum::<f64>();
        (dot(&self.xi, &tx), dot(&self.eta, &ty))
    }
}

impl Wcs {
    /// Reads the celestial WCS of axes 1 and 2.
    pub fn from_header(h: &Header) -> Result<Wcs> {
        let ctype1 = h.string("CTYPE1").unwrap_or("");
        let ctype2 = h.string("CTYPE2").unwrap_or("");
        let (kind1, code1) = split_ctype(ctype1);
        let (kind2, code2) = split_ctype(ctype2);
        let swapped = match (kind1, kind2) {
            (Some(CoordKind::Lon(_)), Some(CoordKind::Lat(_))) => false,
            (Some(CoordKind::Lat(_)), Some(CoordKind::Lon(_))) => true,
            _ => {
                return Err(Error::Wcs(format!(
                    "CTYPE1 {ctype1:?} and CTYPE2 {ctype2:?} are not a celestial longitude/latitude pair"
                )))
            }
        };
        if code1 != code2 {
            return Err(Error::Wcs(format!(
                "CTYPE1 {ctype1:?} and CTYPE2 {ctype2:?} name different projections"
            )));
        }
        let (lon_axis, lat_axis) = if swapped { (2, 1) } else { (1, 2) };
        let (base, sip) = match code1.strip_suffix("-SIP") {
            Some(base) => (base, true),
            None => (code1.as_str(), false),
        };
        let projection = Projection::parse(base, h, lat_axis).map_err(|e| match e {
            Error::Wcs(reason) => Error::Wcs(format!("CTYPE1 {ctype1:?}: {reason}")),
            other => other,
        })?;
        for axis in [1, 2] {
            match h.string(&format!("CUNIT{axis}")).map(str::trim) {
                None | Some("") | Some("deg") | Some("DEG") | Some("degree") => {}
                Some(other) => {
                    return Err(Error::Wcs(format!(
                        "CUNIT{axis} = {other:?}: only degrees are supported"
                    )))
                }
            }
        }

        let crpix = [
            h.real("CRPIX1").unwrap_or(0.0),
            h.real("CRPIX2").unwrap_or(0.0),
        ];
        let cd = linear_matrix(h)?;
        let det = cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0];
        if det == 0.0 || !det.is_finite() {
            return Err(Error::Wcs(
                "the CD (or PC × CDELT) matrix is singular".into(),
            ));
        }
        let cd_inv = [
            [cd[1][1] / det, -cd[0][1] / det],
            [-cd[1][0] / det, cd[0][0] / det],
        ];

        let crval_lon = h.real(&format!("CRVAL{lon_axis}")).unwrap_or(0.0);
        let crval_lat = h.real(&format!("CRVAL{lat_axis}")).unwrap_or(0.0);
        let (lonpole, latpole) = pole_keywords(h, base, lon_axis, projection.theta0())?;
        let rotation = Rotation::new(projection.theta0(), crval_lon, crval_lat, lonpole, latpole)?;
        let icrs_to_frame = frame_matrix(h, kind1.or(kind2))?;

        Ok(Wcs {
            crpix,
            cd,
            cd_inv,
            sip: if sip { Some(Sip::parse(h)?) } else { None },
            tpv: (base == "TPV").then(|| Tpv::parse(h, lon_axis, lat_axis)),
            projection,
            rotation,
            icrs_to_frame,
            swapped,
        })
    }

    /// 0-based pixel → ICRS (ra, dec) in degrees, ra in [0, 360).
    pub fn pixel_to_sky(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let (u, v) = (x + 1.0 - self.crpix[0], y + 1.0 - self.crpix[1]);
        let (u, v) = match &self.sip {
            Some(sip) => sip.apply(u, v),
            None => (u, v),
        };
        let (mut ix, mut iy) = mul2(&self.cd, u, v);
        if self.swapped {
            std::mem::swap(&mut ix, &mut iy);
        }
        let (ix, iy) = match &self.tpv {
            Some(tpv) => tpv.apply(ix, iy),
            None => (ix, iy),
        };
        let (phi, theta) = self.projection.inverse(ix, iy)?;
        let (lon, lat) = self.rotation.to_frame(phi, theta);
        let icrs = match &self.icrs_to_frame {
            Some(m) => lon_lat(mul3_transposed(m, unit_vector(lon, lat))),
            None => (lon.rem_euclid(360.0), lat),
        };
        // rem_euclid can round a tiny negative longitude up to exactly 360.
        let ra = if icrs.0 >= 360.0 { 0.0 } else { icrs.0 };
        finite((ra, icrs.1))
    }

    /// ICRS (ra, dec) in degrees → 0-based pixel, as astropy's
    /// `skycoord_to_pixel(SkyCoord(ra, dec), wcs, origin=0, mode='all')`.
    pub fn sky_to_pixel(&self, ra: f64, dec: f64) -> Option<(f64, f64)> {
        // An ICRS image keeps the caller's longitude as given, as astropy does (an identity
        // frame transform): on a pole the longitude still picks the native meridian.
        let (lon, lat) = match &self.icrs_to_frame {
            Some(m) => lon_lat_signed(mul3(m, unit_vector(ra, dec))),
            None => (ra, dec),
        };
        let (phi, theta) = self.rotation.to_native(lon, lat);
        let (ix, iy) = self.projection.forward(phi, theta)?;
        let (mut ix, mut iy) = match &self.tpv {
            Some(tpv) => invert(|x, y| tpv.apply(x, y), ix, iy)?,
            None => (ix, iy),
        };
        if self.swapped {
            std::mem::swap(&mut ix, &mut iy);
        }
        let (u, v) = mul2(&self.cd_inv, ix, iy);
        let (u, v) = match &self.sip {
            Some(sip) => invert(|a, b| sip.apply(a, b), u, v)?,
            None => (u, v),
        };
        finite((u + self.crpix[0] - 1.0, v + self.crpix[1] - 1.0))
    }

    /// Degrees per pixel along x and y, as astropy's `proj_plane_pixel_scales`.
    pub fn pixel_scales(&self) -> (f64, f64) {
        (
            self.cd[0][0].hypot(self.cd[1][0]),
            self.cd[0][1].hypot(self.cd[1][1]),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CoordKind {
    Lon(&'static str),
    Lat(&'static str),
}

/// `RA---TAN-SIP` → (longitude of the equatorial frame, "TAN-SIP").
fn split_ctype(ctype: &str) -> (Option<CoordKind>, String) {
    let ctype = ctype.trim();
    let (name, code) = match ctype.find('-') {
        Some(p) => (&ctype[..p], ctype[p..].trim_start_matches('-')),
        None => (ctype, ""),
    };
    let kind = match name {
        "RA" => Some(CoordKind::Lon("eq")),
        "DEC" => Some(CoordKind::Lat("eq")),
        "GLON" => Some(CoordKind::Lon("gal")),
        "GLAT" => Some(CoordKind::Lat("gal")),
        "ELON" => Some(CoordKind::Lon("ecl")),
        "ELAT" => Some(CoordKind::Lat("ecl")),
        _ => None,
    };
    (kind, code.to_string())
}

/// The linear part (Paper I §2.1.2): CD, else PC × CDELT, else CDELT with CROTA2 (§6.1 of
/// Paper II's backward compatibility notes).
fn linear_matrix(h: &Header) -> Result<[[f64; 2]; 2]> {
    let key = |k: &str| h.real(k);
    let has_cd = ["CD1_1", "CD1_2", "CD2_1", "CD2_2"]
        .iter()
        .any(|k| h.contains(k));
    if has_cd {
        let g = |k: &str| key(k).unwrap_or(0.0);
        return Ok([[g("CD1_1"), g("CD1_2")], [g("CD2_1"), g("CD2_2")]]);
    }
    let cdelt = [key("CDELT1").unwrap_or(1.0), key("CDELT2").unwrap_or(1.0)];
    let has_pc = ["PC1_1", "PC1_2", "PC2_1", "PC2_2"]
        .iter()
        .any(|k| h.contains(k));
    let pc = if has_pc {
        [
            [key("PC1_1").unwrap_or(1.0), key("PC1_2").unwrap_or(0.0)],
            [key("PC2_1").unwrap_or(0.0), key("PC2_2").unwrap_or(1.0)],
        ]
    } else if let Some(rot) = key("CROTA2").filter(|r| *r != 0.0) {
        let (s, c) = (rot * D2R).sin_cos();
        [[c, -s * cdelt[1] / cdelt[0]], [s * cdelt[0] / cdelt[1], c]]
    } else {
        [[1.0, 0.0], [0.0, 1.0]]
    };
    Ok([
        [cdelt[0] * pc[0][0], cdelt[0] * pc[0][1]],
        [cdelt[1] * pc[1][0], cdelt[1] * pc[1][1]],
    ])
}

/// LONPOLE and LATPOLE (Paper II §2.4), where wcslib lets `PVi_3`/`PVi_4` of the longitude
/// axis override them; TPV's `PVi_m` are distortion coefficients instead.
fn pole_keywords(
    h: &Header,
    code: &str,
    lon_axis: usize,
    theta0: f64,
) -> Result<(Option<f64>, f64)> {
    let lonpole = h.real("LONPOLE");
    let latpole = h.real("LATPOLE").unwrap_or(90.0);
    if code == "TPV" {
        return Ok((lonpole, latpole));
    }
    let pv = |m: usize| h.real(&format!("PV{lon_axis}_{m}"));
    // PVi_1/PVi_2 move the fiducial point off (φ0, θ0) (Paper II §2.5): not worth the code.
    for (m, default) in [(1, 0.0), (2, theta0)] {
        if let Some(v) = pv(m).filter(|v| *v != default) {
            return Err(Error::Wcs(format!(
                "PV{lon_axis}_{m} = {v} (a fiducial point offset) is not supported"
            )));
        }
    }
    Ok((pv(3).or(lonpole), pv(4).unwrap_or(latpole)))
}

/// wcslib's tolerance for the pole geometry (`cel.c`), in degrees.
const POLE_TOL: f64 = 1e-10;

/// The rotation between native spherical and celestial coordinates (Paper II §2.3).
#[derive(Debug, Clone)]
struct Rotation {
    /// Native → celestial unit vectors (rows are the celestial axes).
    matrix: [[f64; 3]; 3],
    /// When the native and celestial poles coincide the rotation is a shift in longitude,
    /// φ = offset + sign·α, θ = sign·δ: wcslib (`sph.c`) special-cases it, which keeps a
    /// longitude given on a pole meaningful (the top row of an all-sky CAR map).
    shift: Option<(f64, f64)>,
}

impl Rotation {
    /// Paper II eqs. 8–10, with wcslib's branch choices (`celset` in `cel.c`): the celestial
    /// coordinates (αp, δp) of the native pole from the fiducial point, LONPOLE and LATPOLE.
    fn new(
        theta0: f64,
        alpha0: f64,
        delta0: f64,
        lonpole: Option<f64>,
        latpole: f64,
    ) -> Result<Rotation> {
        let phi0 = 0.0;
        let phip = lonpole.unwrap_or(if delta0 < theta0 { 180.0 } else { 0.0 });
        let (alphap, deltap) = if theta0 == 90.0 {
            (alpha0, delta0)
        } else {
            let (sd0, cd0) = (delta0 * D2R).sin_cos();
            let (st0, ct0) = (theta0 * D2R).sin_cos();
            let (sphi, cphi) = ((phip - phi0) * D2R).sin_cos();
            let (u, v) = if phip == phi0 {
                (theta0, 90.0 - delta0)
            } else {
                let z = (ct0 * cphi).hypot(st0);
                if z == 0.0 {
                    return Err(Error::Wcs(format!(
                        "LONPOLE {phip} with CRVAL latitude {delta0}: no native pole fits"
                    )));
                }
                let slz = sd0 / z;
                if slz.abs() > 1.0 + POLE_TOL || !slz.is_finite() {
                    return Err(Error::Wcs(format!(
                        "CRVAL latitude {delta0} cannot be reached with LONPOLE {phip}"
                    )));
                }
                (
                    R2D * st0.atan2(ct0 * cphi),
                    R2D * slz.clamp(-1.0, 1.0).acos(),
                )
            };
            let wrap = |d: f64| {
                if d > 180.0 {
                    d - 360.0
                } else if d < -180.0 {
                    d + 360.0
                } else {
                    d
                }
            };
            let (p1, p2) = (wrap(u + v), wrap(u - v));
            let valid = |d: f64| d.abs() < 90.0 + POLE_TOL;
            let deltap = if (latpole - p1).abs() < (latpole - p2).abs() {
                if valid(p1) {
                    p1
                } else {
                    p2
                }
            } else if valid(p2) {
                p2
            } else {
                p1
            };
            if !valid(deltap) {
                return Err(Error::Wcs(format!(
                    "no native pole latitude fits CRVAL latitude {delta0} with LONPOLE {phip}"
                )));
            }
            let deltap = deltap.clamp(-90.0, 90.0);
            let z = (deltap * D2R).cos() * cd0;
            let alphap = if z.abs() < POLE_TOL {
                if cd0.abs() < POLE_TOL {
                    alpha0
                } else if deltap > 0.0 {
                    alpha0 + phip - phi0 - 180.0
                } else {
                    alpha0 - phip + phi0
                }
            } else {
                let x = (st0 - (deltap * D2R).sin() * sd0) / z;
                let y = sphi * ct0 / cd0;
                alpha0 - R2D * y.atan2(x)
            };
            (alphap, deltap)
        };
        // c = Rz(αp) · M(δp) · Rz(−φp) · n: Paper II eq. 2 written for unit vectors.
        let (sa, ca) = (alphap * D2R).sin_cos();
        let (sd, cd) = (deltap * D2R).sin_cos();
        let (sp, cp) = (phip * D2R).sin_cos();
        let rz_a = [[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]];
        let m = [[-sd, 0.0, cd], [0.0, -1.0, 0.0], [cd, 0.0, sd]];
        let rz_p = [[cp, sp, 0.0], [-sp, cp, 0.0], [0.0, 0.0, 1.0]];
        let shift = if deltap == 90.0 {
            Some((phip - 180.0 - alphap, 1.0))
        } else if deltap == -90.0 {
            Some((phip + alphap, -1.0))
        } else {
            None
        };
        Ok(Rotation {
            matrix: mat_mul(&mat_mul(&rz_a, &m), &rz_p),
            shift,
        })
    }

    /// Celestial (α, δ) → native (φ, θ), φ in [−180, 180].
    fn to_native(&self, lon: f64, lat: f64) -> (f64, f64) {
        match self.shift {
            Some((offset, sign)) => {
                let phi = (offset + sign * lon) % 360.0;
                let phi = if phi > 180.0 {
                    phi - 360.0
                } else if phi < -180.0 {
                    phi + 360.0
                } else {
                    phi
                };
                (phi, sign * lat)
            }
            None => lon_lat_signed(mul3_transposed(&self.matrix, unit_vector(lon, lat))),
        }
    }

    /// Native (φ, θ) → celestial (α, δ), α in any turn.
    fn to_frame(&self, phi: f64, theta: f64) -> (f64, f64) {
        match self.shift {
            Some((offset, sign)) => (sign * (phi - offset), sign * theta),
            None => lon_lat_signed(mul3(&self.matrix, unit_vector(phi, theta))),
        }
    }
}

/// ICRS → the image's frame, with astropy's matrices (`icrs_fk5_transforms.py`,
/// `galactic_transforms.py`); `None` for ICRS itself.
fn frame_matrix(h: &Header, kind: Option<CoordKind>) -> Result<Option<[[f64; 3]; 3]>> {
    // astropy's rotation_matrix(angle, axis): a passive rotation of the frame.
    let rot = |deg: f64, axis: usize| -> [[f64; 3]; 3] {
        let (s, c) = (deg * D2R).sin_cos();
        match axis {
            0 => [[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]],
            1 => [[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]],
            _ => [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]],
        }
    };
    let icrs_to_fk5 = {
        let (eta0, xi0, da0) = (-19.9 / 3_600_000.0, 9.1 / 3_600_000.0, -22.9 / 3_600_000.0);
        mat_mul(&mat_mul(&rot(-eta0, 0), &rot(xi0, 1)), &rot(da0, 2))
    };
    match kind {
        Some(CoordKind::Lon("gal")) | Some(CoordKind::Lat("gal")) => {
            let fk5_to_gal = mat_mul(
                &mat_mul(
                    &rot(180.0 - 122.9319185680026, 2),
                    &rot(90.0 - 27.12825118085622, 1),
                ),
                &rot(192.8594812065348, 2),
            );
            Ok(Some(mat_mul(&fk5_to_gal, &icrs_to_fk5)))
        }
        Some(CoordKind::Lon("eq")) | Some(CoordKind::Lat("eq")) => {
            let equinox = h.real("EQUINOX").or_else(|| h.real("EPOCH"));
            let radesys = h
                .string("RADESYS")
                .or_else(|| h.string("RADECSYS"))
                .map(str::trim);
            // Paper II §3.1: with no RADESYS, ICRS without EQUINOX, FK4 before 1984, else FK5.
            let system = match (radesys, equinox) {
                (Some(s), _) => s.to_ascii_uppercase(),
                (None, None) => "ICRS".into(),
                (None, Some(e)) if e < 1984.0 => "FK4".into(),
                (None, Some(_)) => "FK5".into(),
            };
            match system.as_str() {
                "ICRS" => Ok(None),
                "FK5" if equinox.unwrap_or(2000.0) == 2000.0 => Ok(Some(icrs_to_fk5)),
                other => Err(Error::Wcs(format!(
                    "frame {other} with EQUINOX {equinox:?} is not supported (ICRS, FK5 J2000 and galactic are)"
                ))),
            }
        }
        _ => Err(Error::Wcs("ecliptic frames are not supported".into())),
    }
}

/// Solves `f(p) = target` for p by Newton's method with a numerical Jacobian, starting from
/// `target` (the distortions are small corrections). Converges to ~1e-12 in a few steps.
fn invert(f: impl Fn(f64, f64) -> (f64, f64), tx: f64, ty: f64) -> Option<(f64, f64)> {
    let (mut x, mut y) = (tx, ty);
    for _ in 0..50 {
        let (fx, fy) = f(x, y);
        let (rx, ry) = (fx - tx, fy - ty);
        let h = 1e-6 * (1.0 + x.abs().max(y.abs()));
        let (ax, ay) = f(x + h, y);
        let (bx, by) = f(x, y + h);
        let (j00, j10, j01, j11) = ((ax - fx) / h, (ay - fy) / h, (bx - fx) / h, (by - fy) / h);
        let det = j00 * j11 - j01 * j10;
        if det == 0.0 || !det.is_finite() {
            return None;
        }
        let dx = (j11 * rx - j01 * ry) / det;
        let dy = (-j10 * rx + j00 * ry) / det;
        x -= dx;
        y -= dy;
        if dx.abs().max(dy.abs()) < 1e-13 * (1.0 + x.abs().max(y.abs())) {
            return Some((x, y));
        }
    }
    let (fx, fy) = f(x, y);
    ((fx - tx).abs().max((fy - ty).abs()) < 1e-9).then_some((x, y))
}

fn unit_vector(lon: f64, lat: f64) -> [f64; 3] {
    let (sl, cl) = (lon * D2R).sin_cos();
    let (sb, cb) = (lat * D2R).sin_cos();
    [cb * cl, cb * sl, sb]
}

/// (longitude in [0, 360), latitude) of a unit vector, accurate near the poles.
fn lon_lat(v: [f64; 3]) -> (f64, f64) {
    let (lon, lat) = lon_lat_signed(v);
    (lon.rem_euclid(360.0), lat)
}

fn lon_lat_signed(v: [f64; 3]) -> (f64, f64) {
    let r = v[0].hypot(v[1]);
    let lon = if r == 0.0 {
        0.0
    } else {
        R2D * v[1].atan2(v[0])
    };
    (lon, R2D * v[2].atan2(r))
}

fn finite((a, b): (f64, f64)) -> Option<(f64, f64)> {
    (a.is_finite() && b.is_finite()).then_some((a, b))
}

fn mul2(m: &[[f64; 2]; 2], x: f64, y: f64) -> (f64, f64) {
    (m[0][0] * x + m[0][1] * y, m[1][0] * x + m[1][1] * y)
}

fn mul3(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

fn mul3_transposed(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[0][i] * v[0] + m[1][i] * v[1] + m[2][i] * v[2])
}

fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    [0, 1, 2].map(|i| [0, 1, 2].map(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header from `KEY = value` lines, padded into 80-column cards.
    fn cards(text: &str) -> Header {
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                format!("{:<8}= {}", k.trim(), v.trim())
            })
            .collect();
        Header::from_card_lines(&lines.join("\n")).unwrap()
    }

    fn header(ctype: &str, crval: (f64, f64), extra: &str) -> Header {
        let (c1, c2) = ctype.split_once(',').unwrap();
        cards(
            format!(
            "CTYPE1  = '{c1}'\nCTYPE2  = '{c2}'\nCRVAL1  = {}\nCRVAL2  = {}\nCRPIX1  = 50.5\nCRPIX2  = 40.5\nCDELT1  = -0.01\nCDELT2  = 0.01\n{extra}",
            crval.0, crval.1
        )
            .trim_end(),
        )
    }

    #[test]
    fn round_trips_every_projection() {
        for code in [
            "TAN", "SIN", "ARC", "ZEA", "STG", "CAR", "CEA", "MER", "SFL", "AIT",
        ] {
            for crval in [(10.0, 20.0), (359.9, -45.0), (0.0, 0.0), (180.0, 89.0)] {
                let h = header(&format!("RA---{code},DEC--{code}"), crval, "");
                let wcs = Wcs::from_header(&h).unwrap();
                for (x, y) in [(0.0, 0.0), (49.5, 39.5), (99.0, 79.0), (-20.0, 130.0)] {
                    let (ra, dec) = wcs.pixel_to_sky(x, y).unwrap();
                    let (bx, by) = wcs.sky_to_pixel(ra, dec).unwrap();
                    assert!(
                        (bx - x).abs() < 1e-8 && (by - y).abs() < 1e-8,
                        "{code} {crval:?} ({x}, {y}) → ({bx}, {by})"
                    );
                }
                let (ra, dec) = wcs.pixel_to_sky(49.5, 39.5).unwrap();
                assert!(
                    (ra - crval.0.rem_euclid(360.0)).abs() < 1e-9 && (dec - crval.1).abs() < 1e-9,
                    "{code}"
                );
            }
        }
    }

    #[test]
    fn ra_wraps_and_far_side_is_none() {
        let wcs = Wcs::from_header(&header("RA---TAN,DEC--TAN", (0.0, 0.0), "")).unwrap();
        let (ra, _) = wcs.pixel_to_sky(60.0, 39.5).unwrap();
        assert!(ra > 359.0, "east of RA=0 wraps to 359.x: {ra}");
        assert!(
            wcs.sky_to_pixel(180.0, 0.0).is_none(),
            "TAN cannot show the far hemisphere"
        );
    }

    #[test]
    fn sip_round_trip() {
        let wcs = Wcs::from_header(&header(
            "RA---TAN-SIP,DEC--TAN-SIP",
            (150.0, 2.0),
            "A_ORDER = 2\nA_2_0 = 1e-5\nA_1_1 = -2e-5\nB_ORDER = 2\nB_0_2 = 3e-5\nB_2_0 = 1e-6",
        ))
        .unwrap();
        for (x, y) in [(0.0, 0.0), (99.0, 79.0), (30.0, 60.0)] {
            let (ra, dec) = wcs.pixel_to_sky(x, y).unwrap();
            let (bx, by) = wcs.sky_to_pixel(ra, dec).unwrap();
            assert!((bx - x).abs() < 1e-9 && (by - y).abs() < 1e-9);
        }
    }

    #[test]
    fn fk5_matrix_matches_astropy() {
        let h = header(
            "RA---TAN,DEC--TAN",
            (0.0, 0.0),
            "RADESYS = 'FK5'\nEQUINOX = 2000.0",
        );
        let m = frame_matrix(&h, Some(CoordKind::Lon("eq")))
            .unwrap()
            .unwrap();
        // astropy 8.0: _ICRS_TO_FK5_J2000_MAT
        assert!((m[0][1] - -1.11022333e-07).abs() < 1e-15);
        assert!((m[1][2] - 9.64779225e-08).abs() < 1e-15);
        assert!((m[2][0] - 4.41180343e-08).abs() < 1e-15);
    }

    #[test]
    fn unsupported_and_missing_are_errors() {
        let err = Wcs::from_header(&header("RA---XYZ,DEC--XYZ", (0.0, 0.0), ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("XYZ"), "{err}");
        let err = Wcs::from_header(&cards("NAXIS = 2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CTYPE1"), "{err}");
        let err = Wcs::from_header(&header("RA---TAN,DEC--TAN", (0.0, 0.0), "RADESYS = 'FK4'"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FK4"), "{err}");
    }

    const PROJECTIONS: [&str; 10] = [
        "TAN", "SIN", "ARC", "ZEA", "STG", "CAR", "CEA", "MER", "SFL", "AIT",
    ];

    fn assert_round_trip(wcs: &Wcs, x: f64, y: f64, what: &str) {
        let (ra, dec) = wcs
            .pixel_to_sky(x, y)
            .unwrap_or_else(|| panic!("{what}: ({x}, {y}) has no sky position"));
        assert!((0.0..360.0).contains(&ra), "{what}: ra {ra}");
        let (bx, by) = wcs
            .sky_to_pixel(ra, dec)
            .unwrap_or_else(|| panic!("{what}: ({ra}, {dec}) has no pixel"));
        assert!(
            (bx - x).abs() < 1e-8 && (by - y).abs() < 1e-8,
            "{what}: ({x}, {y}) → ({ra}, {dec}) → ({bx}, {by})"
        );
    }

    #[test]
    fn pole_crossing_field() {
        // Reference point 0.1° from the pole, 0.01°/pixel: the pole is 10 pixels above it.
        let h = header("RA---TAN,DEC--TAN", (45.0, 89.9), "");
        let wcs = Wcs::from_header(&h).unwrap();
        let (px, py) = wcs.sky_to_pixel(123.0, 90.0).unwrap();
        let (_, dec) = wcs.pixel_to_sky(px, py).unwrap();
        assert!(
            (dec - 90.0).abs() < 1e-9,
            "pole at ({px}, {py}) → dec {dec}"
        );
        // Crossing the pole turns RA by 180°.
        let (below, _) = wcs.pixel_to_sky(px, py - 5.0).unwrap();
        let (above, _) = wcs.pixel_to_sky(px, py + 5.0).unwrap();
        let turn = (above - below).rem_euclid(360.0);
        assert!((turn - 180.0).abs() < 1e-6, "{below} → {above}");
        for dy in [-20.0, -5.0, -0.5, 0.5, 5.0, 20.0] {
            assert_round_trip(&wcs, px + 3.0, py + dy, "pole");
        }
    }

    #[test]
    fn ra_is_the_same_either_side_of_zero() {
        let wcs = Wcs::from_header(&header("RA---TAN,DEC--TAN", (0.05, 10.0), "")).unwrap();
        let a = wcs.sky_to_pixel(359.99, 10.0).unwrap();
        let b = wcs.sky_to_pixel(-0.01, 10.0).unwrap();
        let c = wcs.sky_to_pixel(719.99, 10.0).unwrap();
        assert!((a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9);
        assert!((a.0 - c.0).abs() < 1e-9 && (a.1 - c.1).abs() < 1e-9);
        for x in [40.0, 45.0, 49.5, 55.0, 60.0] {
            assert_round_trip(&wcs, x, 39.5, "ra0");
        }
    }

    #[test]
    fn crota2_is_the_equivalent_pc_matrix() {
        let rot = 25.0_f64;
        let (s, c) = rot.to_radians().sin_cos();
        let crota = Wcs::from_header(&header(
            "RA---TAN,DEC--TAN",
            (266.4, -28.9),
            "CROTA2 = 25.0",
        ))
        .unwrap();
        // Paper II eq. 189 with CDELT1 = −CDELT2.
        let pc = Wcs::from_header(&header(
            "RA---TAN,DEC--TAN",
            (266.4, -28.9),
            &format!("PC1_1 = {c}\nPC1_2 = {s}\nPC2_1 = {}\nPC2_2 = {c}", -s),
        ))
        .unwrap();
        for (x, y) in [(0.0, 0.0), (99.0, 10.0), (-30.0, 70.0)] {
            let (a, b) = (
                crota.pixel_to_sky(x, y).unwrap(),
                pc.pixel_to_sky(x, y).unwrap(),
            );
            assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12);
        }
        assert_eq!(crota.pixel_scales(), (0.01, 0.01));
    }

    #[test]
    fn galactic_frame_uses_astropys_constants() {
        // astropy 8.0: SkyCoord(0, 0, unit='deg').galactic is (l, b) below, so an image centred
        // there has the ICRS origin on its reference pixel (0.01°/pixel: 1e-6 px is 36 µas).
        let wcs = Wcs::from_header(&header(
            "GLON-TAN,GLAT-TAN",
            (96.33728336969006, -60.188551946914465),
            "",
        ))
        .unwrap();
        let (x, y) = wcs.sky_to_pixel(0.0, 0.0).unwrap();
        assert!(
            (x - 49.5).abs() < 1e-6 && (y - 39.5).abs() < 1e-6,
            "({x}, {y})"
        );
        assert_round_trip(&wcs, 10.0, 70.0, "galactic");
    }

    #[test]
    fn tpv_round_trip() {
        let wcs = Wcs::from_header(&header(
            "RA---TPV,DEC--TPV",
            (36.5, -4.5),
            "PV1_0 = -2.6e-3\nPV1_1 = 1.0111\nPV1_3 = 1e-4\nPV1_4 = -5.7e-3\nPV1_7 = -1.3e-2\n\
             PV2_1 = 1.0093\nPV2_2 = -4.8e-3\nPV2_5 = 4.1e-3\nPV2_11 = -2e-4",
        ))
        .unwrap();
        for (x, y) in [(0.0, 0.0), (99.0, 79.0), (-50.0, 120.0)] {
            assert_round_trip(&wcs, x, y, "TPV");
        }
    }

    #[test]
    fn bad_headers_are_errors_naming_the_keyword() {
        let cases = [
            ("CTYPE2  = 'DEC--TAN'", "CTYPE1"),
            (
                "CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--SIN'",
                "different projections",
            ),
            ("CTYPE1  = 'RA---TAN'\nCTYPE2  = 'RA---TAN'", "CTYPE1"),
            ("CTYPE1  = 'ELON-TAN'\nCTYPE2  = 'ELAT-TAN'", "ecliptic"),
            (
                "CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nCD1_1   = 0.0",
                "singular",
            ),
            (
                "CTYPE1  = 'RA---TAN-SIP'\nCTYPE2  = 'DEC--TAN-SIP'",
                "A_ORDER",
            ),
            (
                "CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nCUNIT1  = 'rad'",
                "CUNIT1",
            ),
            (
                "CTYPE1  = 'RA---ZEA'\nCTYPE2  = 'DEC--ZEA'\nPV1_1   = 5.0",
                "PV1_1",
            ),
            (
                "CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nEQUINOX = 1950.0",
                "FK4",
            ),
            (
                "CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nRADESYS = 'FK5'\nEQUINOX = 2010.0",
                "FK5",
            ),
        ];
        for (text, needle) in cases {
            let h = Header::from_card_lines(text).unwrap();
            let err = Wcs::from_header(&h).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn pixel_sky_pixel_round_trips(
            which in 0..PROJECTIONS.len(),
            ra in 0.0..360.0f64,
            dec in -89.0..89.0f64,
            rot in -180.0..180.0f64,
            x in -10.0..110.0f64,
            y in -10.0..90.0f64,
        ) {
            let code = PROJECTIONS[which];
            let (s, c) = rot.to_radians().sin_cos();
            let h = header(
                &format!("RA---{code},DEC--{code}"),
                (ra, dec),
                &format!("PC1_1 = {c}\nPC1_2 = {}\nPC2_1 = {s}\nPC2_2 = {c}", -s),
            );
            let wcs = Wcs::from_header(&h).unwrap();
            assert_round_trip(&wcs, x, y, code);
        }

        #[test]
        fn any_header_values_never_panic(
            which in 0..PROJECTIONS.len(),
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::f64::ANY,
                    -1e3..1e3f64,
                    proptest::strategy::Just(0.0),
                    proptest::strategy::Just(90.0),
                ],
                12,
            ),
            x in proptest::num::f64::ANY,
            y in proptest::num::f64::ANY,
        ) {
            let code = PROJECTIONS[which];
            let keys = [
                "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
                "LONPOLE", "LATPOLE", "PV2_1", "PV1_3",
            ];
            let mut text = format!("CTYPE1  = 'RA---{code}'\nCTYPE2  = 'DEC--{code}'");
            for (k, v) in keys.iter().zip(&values) {
                if v.is_finite() {
                    text.push_str(&format!("\n{k:<8}= {v:?}"));
                }
            }
            let h = Header::from_card_lines(&text).unwrap();
            if let Ok(wcs) = Wcs::from_header(&h) {
                if let Some((ra, dec)) = wcs.pixel_to_sky(x, y) {
                    let _ = wcs.sky_to_pixel(ra, dec);
                }
                let _ = wcs.sky_to_pixel(x, y);
                let _ = wcs.pixel_scales();
            }
        }
    }
}
