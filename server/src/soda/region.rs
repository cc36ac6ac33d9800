//! Sky regions of SODA 1.0 §3.3 (the DALI circle, range and polygon shapes): circles,
//! coordinate ranges and polygons in ICRS degrees, with a point-in-region test and their boundaries as arcs of
//! circles on the unit sphere, so that [`super::pixel_box`] can project them onto an image
//! whatever the RA wrap or a pole inside the region.

/// A unit vector on the celestial sphere.
pub type Unit = [f64; 3];

/// The unit vector of (`ra`, `dec`) in degrees.
pub fn unit(ra: f64, dec: f64) -> Unit {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

/// (ra, dec) in degrees of a unit vector, ra in [0, 360).
pub fn ra_dec(p: Unit) -> (f64, f64) {
    let ra = p[1].atan2(p[0]).to_degrees().rem_euclid(360.0);
    let dec = p[2].clamp(-1.0, 1.0).asin().to_degrees();
    (if ra >= 360.0 { 0.0 } else { ra }, dec)
}

fn dot(a: Unit, b: Unit) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: Unit, b: Unit) -> Unit {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalized(a: Unit) -> Option<Unit> {
    let n = dot(a, a).sqrt();
    (n > 1e-15 && n.is_finite()).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

/// The angle between two unit vectors, radians (atan2 keeps small angles exact).
pub fn angle(a: Unit, b: Unit) -> f64 {
    let c = cross(a, b);
    dot(c, c).sqrt().atan2(dot(a, b))
}

/// A longitude interval on the ring: `start` eastwards to `end`, degrees in [0, 360); it
/// wraps through 0 when `end < start` (DALI 1.2, range: `359 1` spans the meridian).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LonSpan {
    pub start: f64,
    pub end: f64,
}

impl LonSpan {
    fn contains(self, lon: f64) -> bool {
        let lon = lon.rem_euclid(360.0);
        if self.start <= self.end {
            (self.start..=self.end).contains(&lon)
        } else {
            lon >= self.start || lon <= self.end
        }
    }

    /// The span's width, degrees.
    fn width(self) -> f64 {
        (self.end - self.start).rem_euclid(360.0)
    }
}

/// A region of the sky in ICRS degrees.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Region {
    /// Points within `radius` (degrees, great-circle distance) of (`ra`, `dec`).
    Circle { ra: f64, dec: f64, radius: f64 },
    /// Longitudes in `lon` (every longitude when `None`) and latitudes in `lat` (min, max).
    Range {
        lon: Option<LonSpan>,
        lat: (f64, f64),
    },
    /// The inside of a spherical polygon whose edges are great-circle arcs.
    Polygon(Polygon),
}

/// A spherical polygon, read as the smaller of the two regions its edges bound (so the
/// winding direction does not matter); it must fit in the hemisphere around its vertices'
/// mean, where the gnomonic projection maps its edges to straight lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    /// The vertices as given, degrees.
    pub vertices: Vec<(f64, f64)>,
    units: Vec<Unit>,
    /// The normalised mean of the vertices, the gnomonic plane's tangent point.
    centre: Unit,
    /// East and north of `centre`: the gnomonic plane's axes.
    axes: (Unit, Unit),
    /// The vertices in the gnomonic plane.
    plane: Vec<(f64, f64)>,
}

impl Polygon {
    /// The polygon through `vertices` (ra, dec degrees; at least three), or why it cannot be
    /// one.
    pub fn new(vertices: Vec<(f64, f64)>) -> Result<Polygon, String> {
        if vertices.len() < 3 {
            return Err(format!(
                "a polygon needs at least 3 vertices, not {}",
                vertices.len()
            ));
        }
        let units: Vec<Unit> = vertices.iter().map(|&(ra, dec)| unit(ra, dec)).collect();
        let sum = units
            .iter()
            .fold([0.0; 3], |s, u| [s[0] + u[0], s[1] + u[1], s[2] + u[2]]);
        let too_large = || {
            "the polygon is too large: it must lie within a hemisphere (every vertex less than \
             90° from the vertices' mean)"
                .to_string()
        };
        let centre = normalized(sum).ok_or_else(too_large)?;
        if units.iter().any(|u| dot(*u, centre) < 1e-9) {
            return Err(too_large());
        }
        let east = normalized(cross([0.0, 0.0, 1.0], centre)).unwrap_or([0.0, 1.0, 0.0]);
        let north = cross(centre, east);
        let axes = (east, north);
        let plane = units.iter().map(|&u| gnomonic(u, centre, axes)).collect();
        Ok(Polygon {
            vertices,
            units,
            centre,
            axes,
            plane,
        })
    }

    /// Even-odd test in the gnomonic plane, where the edges are straight.
    fn contains(&self, p: Unit) -> bool {
        if dot(p, self.centre) <= 0.0 {
            return false;
        }
        let (x, y) = gnomonic(p, self.centre, self.axes);
        let mut inside = false;
        let n = self.plane.len();
        for i in 0..n {
            let (x1, y1) = self.plane[i];
            let (x2, y2) = self.plane[(i + 1) % n];
            if (y1 > y) != (y2 > y) && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1) {
                inside = !inside;
            }
        }
        inside
    }
}

/// Gnomonic projection of `p` (in the hemisphere of `centre`) on the plane tangent there.
fn gnomonic(p: Unit, centre: Unit, (east, north): (Unit, Unit)) -> (f64, f64) {
    let d = dot(p, centre);
    (dot(p, east) / d, dot(p, north) / d)
}

impl Region {
    /// Whether the direction `p` lies in the region (its boundary included).
    pub fn contains(&self, p: Unit) -> bool {
        match self {
            Region::Circle { ra, dec, radius } => {
                angle(p, unit(*ra, *dec)) <= radius.to_radians() + 1e-15
            }
            Region::Range { lon, lat } => {
                let (ra, dec) = ra_dec(p);
                dec >= lat.0 && dec <= lat.1 && lon.is_none_or(|span| span.contains(ra))
            }
            Region::Polygon(polygon) => polygon.contains(p),
        }
    }

    /// The region's boundary as arcs of circles on the sphere.
    pub fn boundary(&self) -> Vec<Arc> {
        match self {
            Region::Circle { ra, dec, radius } => {
                let axis = unit(*ra, *dec);
                let radius = radius.to_radians().min(std::f64::consts::PI);
                vec![Arc::around(axis, radius, 0.0, std::f64::consts::TAU)]
            }
            Region::Range { lon, lat } => {
                let (start, width) = match lon {
                    Some(span) => (span.start, span.width()),
                    None => (0.0, 360.0),
                };
                let mut arcs = Vec::new();
                for b in [lat.0, lat.1] {
                    // A parallel: the circle at 90° − b around the north pole.
                    arcs.push(Arc::around(
                        [0.0, 0.0, 1.0],
                        (90.0 - b).to_radians(),
                        start.to_radians(),
                        (start + width).to_radians(),
                    ));
                }
                if lon.is_some() {
                    for l in [start, start + width] {
                        arcs.push(Arc::meridian(l, lat.0, lat.1));
                    }
                }
                arcs
            }
            Region::Polygon(polygon) => {
                let n = polygon.units.len();
                (0..n)
                    .filter_map(|i| Arc::great(polygon.units[i], polygon.units[(i + 1) % n]))
                    .collect()
            }
        }
    }
}

/// An arc of the circle at angular distance `radius` around `axis`, from angle `from` to
/// `to` (radians, counter-clockwise about `axis`, measured from `u`):
/// `p(φ) = cos(radius)·axis + sin(radius)·(cos φ·u + sin φ·v)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arc {
    axis: Unit,
    u: Unit,
    v: Unit,
    radius: f64,
    from: f64,
    to: f64,
}

impl Arc {
    /// An arc around `axis`, with `u` the direction of φ = 0: for the pole, RA 0.
    fn around(axis: Unit, radius: f64, from: f64, to: f64) -> Arc {
        // East of the axis; for the pole axis RA 0, so that φ is the longitude.
        let u = normalized(cross([0.0, 0.0, 1.0], axis)).unwrap_or([1.0, 0.0, 0.0]);
        let v = cross(axis, u);
        Arc {
            axis,
            u,
            v,
            radius,
            from,
            to,
        }
    }

    /// The meridian at longitude `lon` from latitude `lat0` to `lat1` (degrees).
    fn meridian(lon: f64, lat0: f64, lat1: f64) -> Arc {
        let l = lon.to_radians();
        let u = [l.cos(), l.sin(), 0.0];
        let v = [0.0, 0.0, 1.0];
        Arc {
            axis: cross(u, v),
            u,
            v,
            radius: std::f64::consts::FRAC_PI_2,
            from: lat0.to_radians(),
            to: lat1.to_radians(),
        }
    }

    /// The shorter great-circle arc from `a` to `b`; `None` when they coincide.
    fn great(a: Unit, b: Unit) -> Option<Arc> {
        let axis = normalized(cross(a, b))?;
        Some(Arc {
            axis,
            u: a,
            v: cross(axis, a),
            radius: std::f64::consts::FRAC_PI_2,
            from: 0.0,
            to: angle(a, b),
        })
    }

    /// The arc's length, radians.
    pub fn length(&self) -> f64 {
        self.radius.sin().abs() * (self.to - self.from).abs()
    }

    /// The point at fraction `t` (0 … 1) of the arc.
    pub fn at(&self, t: f64) -> Unit {
        let phi = self.from + (self.to - self.from) * t;
        let (c, s) = (self.radius.cos(), self.radius.sin());
        let (cp, sp) = (phi.cos(), phi.sin());
        [
            c * self.axis[0] + s * (cp * self.u[0] + sp * self.v[0]),
            c * self.axis[1] + s * (cp * self.u[1] + sp * self.v[1]),
            c * self.axis[2] + s * (cp * self.u[2] + sp * self.v[2]),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        let d = angle(unit(a.0, a.1), unit(b.0, b.1));
        d < 1e-9
    }

    #[test]
    fn circle_boundary_lies_at_the_radius() {
        for (ra, dec, r) in [(10.0, 20.0, 0.5), (359.9, 0.0, 1.0), (0.0, 89.9, 0.3)] {
            let region = Region::Circle { ra, dec, radius: r };
            let arcs = region.boundary();
            assert_eq!(arcs.len(), 1);
            assert!(
                (arcs[0].length() - std::f64::consts::TAU * r.to_radians().sin()).abs() < 1e-12
            );
            for k in 0..16 {
                let p = arcs[0].at(k as f64 / 16.0);
                let d = angle(p, unit(ra, dec)).to_degrees();
                assert!((d - r).abs() < 1e-9, "{d} vs {r}");
            }
            assert!(region.contains(unit(ra, dec)));
            assert!(!region.contains(unit(ra, dec + 1.1 * r)));
        }
    }

    #[test]
    fn ranges_wrap_and_reach_the_pole() {
        let wrap = Region::Range {
            lon: Some(LonSpan {
                start: 359.0,
                end: 1.0,
            }),
            lat: (-1.0, 1.0),
        };
        assert!(wrap.contains(unit(0.5, 0.0)));
        assert!(wrap.contains(unit(359.5, 0.5)));
        assert!(!wrap.contains(unit(180.0, 0.0)));
        assert!(!wrap.contains(unit(2.0, 0.0)));
        // Parallels at ±1 from 359 eastwards to 1, and the two meridians.
        let arcs = wrap.boundary();
        assert_eq!(arcs.len(), 4);
        assert!(close(ra_dec(arcs[0].at(0.0)), (359.0, -1.0)));
        assert!(close(ra_dec(arcs[0].at(0.5)), (0.0, -1.0)));
        assert!(close(ra_dec(arcs[1].at(1.0)), (1.0, 1.0)));
        assert!(close(ra_dec(arcs[2].at(1.0)), (359.0, 1.0)));
        assert!(close(ra_dec(arcs[3].at(0.0)), (1.0, -1.0)));
        let cap = Region::Range {
            lon: None,
            lat: (89.0, 90.0),
        };
        assert!(cap.contains(unit(123.0, 89.5)));
        assert!(cap.contains([0.0, 0.0, 1.0]));
        assert!(!cap.contains(unit(123.0, 88.5)));
        assert_eq!(cap.boundary().len(), 2, "two parallels, no meridian");
    }

    #[test]
    fn polygons_ignore_winding_and_handle_wrap_and_poles() {
        let ccw = vec![(359.0, -1.0), (1.0, -1.0), (1.0, 1.0), (359.0, 1.0)];
        let mut cw = ccw.clone();
        cw.reverse();
        for vertices in [ccw, cw] {
            let p = Region::Polygon(Polygon::new(vertices).unwrap());
            assert!(p.contains(unit(0.0, 0.0)));
            assert!(p.contains(unit(359.5, 0.9)));
            assert!(!p.contains(unit(2.0, 0.0)));
            assert!(!p.contains(unit(180.0, 0.0)));
            assert_eq!(p.boundary().len(), 4);
        }
        // A triangle around the north pole holds the pole.
        let pole = Polygon::new(vec![(0.0, 85.0), (120.0, 85.0), (240.0, 85.0)]).unwrap();
        assert!(Region::Polygon(pole.clone()).contains([0.0, 0.0, 1.0]));
        assert!(!Region::Polygon(pole).contains(unit(60.0, 80.0)));
        // Edges are great circles: the edge's midpoint lies on the boundary, north of the
        // parallel through its ends.
        let edge = Arc::great(unit(0.0, 85.0), unit(120.0, 85.0)).unwrap();
        assert!(ra_dec(edge.at(0.5)).1 > 85.0);
        for bad in [
            vec![(0.0, 0.0), (1.0, 0.0)],
            vec![(0.0, 0.0), (120.0, 0.0), (240.0, 0.0)],
        ] {
            assert!(Polygon::new(bad).is_err());
        }
    }
}
