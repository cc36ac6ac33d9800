//! Display stretches and intervals as astropy.visualization defines them, on the CPU: the
//! reference a wgpu stretch kernel is tested against, and what image previews use today.
//!
//! A preview maps each value `v` to `x = clip((v - lo) / (hi - lo), 0, 1)`, with `(lo, hi)`
//! from an [`Interval`] ([`limits`]), then to `y = stretch(x)` ([`apply`]), exactly as astropy's
//! `ImageNormalize(interval=..., stretch=...)` with `clip=True` does. Arithmetic is `f32`
//! (the GPU's precision); interval statistics are taken in `f64` where numpy takes them so.

/// How normalised values in [0, 1] become display values in [0, 1] (astropy's stretches).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Stretch {
    /// `y = x` (`LinearStretch()`).
    Linear,
    /// `y = √x` (`SqrtStretch()`).
    Sqrt,
    /// `y = ln(a·x + 1) / ln(a + 1)` (`LogStretch(a)`); `a > 0`, astropy's default 1000.
    Log { a: f32 },
    /// `y = asinh(x / a) / asinh(1 / a)` (`AsinhStretch(a)`); `a > 0`, astropy's default 0.1.
    Asinh { a: f32 },
}

impl Stretch {
    /// The stretch called `name` (`linear`, `sqrt`, `log`, `asinh`, any case) with parameter
    /// `a` (astropy's default when `None`), or `None` for `none` (no scaling).
    pub fn named(name: &str, a: Option<f32>) -> crate::Result<Option<Stretch>> {
        match name.trim().to_ascii_lowercase().as_str() {
            "asinh" => Ok(Some(Stretch::Asinh {
                a: a.unwrap_or(0.1),
            })),
            "log" => Ok(Some(Stretch::Log {
                a: a.unwrap_or(1000.0),
            })),
            "linear" => Ok(Some(Stretch::Linear)),
            "sqrt" => Ok(Some(Stretch::Sqrt)),
            "none" => Ok(None),
            other => Err(crate::Error::Recipe(format!(
                "stretch {other:?} is not one of asinh, linear, sqrt, log, none"
            ))),
        }
    }

    /// [`Stretch::Log`] with astropy's default `a = 1000`.
    pub const LOG: Stretch = Stretch::Log { a: 1000.0 };
    /// [`Stretch::Asinh`] with astropy's default `a = 0.1`.
    pub const ASINH: Stretch = Stretch::Asinh { a: 0.1 };
}

/// How the limits `(lo, hi)` are chosen from an image's finite values (astropy's intervals).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Interval {
    /// The smallest and largest finite value (`MinMaxInterval()`).
    MinMax,
    /// The `lower` and `upper` percentiles (0–100) of the finite values, with numpy's default
    /// linear interpolation (`AsymmetricPercentileInterval(lower, upper)`). Exact up to
    /// [`EXACT_PERCENTILE_MAX`] finite values; above that, taken on a deterministic sample of
    /// about that many (astropy uses every value unless given `n_samples`), so that a
    /// 10k × 10k image needs no sorted copy of itself.
    Percentile { lower: f32, upper: f32 },
    /// IRAF's zscale with astropy's defaults (`ZScaleInterval()`: 1000 samples on a regular
    /// stride of the finite values, contrast 0.25, max_reject 0.5, min_npixels 5, krej 2.5,
    /// 5 iterations): exact for any image size, since it only reads 1000 values.
    ZScale,
}

impl Interval {
    /// astropy's `PercentileInterval(percentile)`: keeps the central `percentile` per cent of
    /// the values, cutting as many from each end.
    pub fn central_percentile(percentile: f64) -> Interval {
        // In f64 as astropy does, then rounded once: 99.5 gives exactly 0.25 and 99.75.
        let lower = (100.0 - percentile) * 0.5;
        Interval::Percentile {
            lower: lower as f32,
            upper: (100.0 - lower) as f32,
        }
    }
}

/// Above this many finite values, [`Interval::Percentile`] works on a sample of about this
/// many (16 MiB of `f32`).
pub const EXACT_PERCENTILE_MAX: usize = 1 << 22;

// astropy ZScaleInterval's defaults.
const ZSCALE_SAMPLES: usize = 1000;
const ZSCALE_CONTRAST: f64 = 0.25;
const ZSCALE_MAX_REJECT: f64 = 0.5;
const ZSCALE_MIN_NPIXELS: usize = 5;
const ZSCALE_KREJ: f64 = 2.5;
const ZSCALE_MAX_ITERATIONS: usize = 5;

/// The limits `(lo, hi)` of `values` under `interval`, ignoring NaN and ±inf as astropy does.
/// `None` when no value is finite, or when a percentile is not a number.
pub fn limits(values: &[f32], interval: &Interval) -> Option<(f32, f32)> {
    match *interval {
        Interval::MinMax => min_max(values),
        Interval::Percentile { lower, upper } => {
            percentiles(values, lower, upper, EXACT_PERCENTILE_MAX)
        }
        Interval::ZScale => zscale(values),
    }
}

/// Writes `stretch(clip((v - lo) / (hi - lo), 0, 1))` of each value into `out` (as far as the
/// shorter of the two slices goes). When `hi == lo` the division is skipped, as astropy skips
/// it, so a constant image maps to 0 rather than NaN. NaN stays NaN; +inf maps to 1, -inf to 0.
pub fn apply(values: &[f32], limits: (f32, f32), stretch: &Stretch, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { apply_avx512(values, limits, stretch, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { apply_avx2(values, limits, stretch, out) };
        }
    }
    apply_portable(values, limits, stretch, out)
}

/// The same loop compiled with AVX-512 (16 lanes) or AVX2 (8): the same operations (no FMA),
/// so the same values. It must inline what it calls (plain `for` loops, `inline(always)`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn apply_avx512(values: &[f32], limits: (f32, f32), stretch: &Stretch, out: &mut [f32]) {
    apply_portable(values, limits, stretch, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn apply_avx2(values: &[f32], limits: (f32, f32), stretch: &Stretch, out: &mut [f32]) {
    apply_portable(values, limits, stretch, out)
}

#[inline(always)]
fn apply_portable(values: &[f32], (lo, hi): (f32, f32), stretch: &Stretch, out: &mut [f32]) {
    let range = hi - lo;
    let scale = 1.0 / range;
    if range != 0.0 && scale.is_finite() {
        // A product in place of the quotient (a division is several products' time): within
        // an ulp of it, and `hi` itself (shifted == range) still exactly 1.
        let normalise = move |v: f32| {
            let shifted = v - lo;
            let x = if shifted >= range {
                1.0
            } else {
                shifted * scale
            };
            // clamp keeps NaN as NaN.
            x.clamp(0.0, 1.0)
        };
        stretch_with(values, normalise, stretch, out);
    } else {
        let normalise = move |v: f32| {
            let shifted = v - lo;
            let x = if range != 0.0 {
                shifted / range
            } else {
                shifted
            };
            x.clamp(0.0, 1.0)
        };
        stretch_with(values, normalise, stretch, out);
    }
}

#[inline(always)]
fn stretch_with(
    values: &[f32],
    normalise: impl Fn(f32) -> f32,
    stretch: &Stretch,
    out: &mut [f32],
) {
    // Plain `for` loops: a closure handed to `for_each` is compiled apart, without AVX2.
    let pairs = out.iter_mut().zip(values);
    match *stretch {
        Stretch::Linear => {
            for (o, &v) in pairs {
                *o = normalise(v);
            }
        }
        Stretch::Sqrt => {
            for (o, &v) in pairs {
                *o = normalise(v).sqrt();
            }
        }
        Stretch::Log { a } => {
            // ln_1p is the accurate ln(a·x + 1) near x = 0; the same expression at x = 1 as in
            // the denominator makes y(1) exactly 1.
            let norm = a.ln_1p();
            for (o, &v) in pairs {
                *o = (a * normalise(v)).ln_1p() / norm;
            }
        }
        Stretch::Asinh { a } => {
            // Products by 1/a and 1/norm in place of quotients, each within an ulp of them;
            // x = 1 maps to exactly 1 and nothing above it (NaN stays NaN).
            let inverse = 1.0 / a;
            let norm = asinh_of_positive(inverse);
            let inverse_norm = 1.0 / norm;
            let finish = move |x: f32, asinh: f32| {
                let y = asinh * inverse_norm;
                if x >= 1.0 || y > 1.0 {
                    1.0
                } else {
                    y
                }
            };
            if inverse > ASINH_HUGE {
                for (o, &v) in pairs {
                    let x = normalise(v);
                    *o = finish(x, asinh_of_positive(x * inverse));
                }
                return;
            }
            // t = x/a ≤ 1/a is never huge. Two passes over each block, the square root then
            // the logarithm: each chain of dependent operations is half as long, so that an
            // out-of-order core overlaps more values (a 224² plane in ~35 µs, not ~47), with the
            // same values as `asinh_of_positive`. The block stays in L1.
            let n = out.len().min(values.len());
            let mut sums = [0.0f32; 256];
            for (out, values) in out[..n].chunks_mut(256).zip(values[..n].chunks(256)) {
                for ((o, sum), &v) in out.iter_mut().zip(&mut sums).zip(values) {
                    let x = normalise(v);
                    *sum = sum_with_hypot(x * inverse);
                    *o = x;
                }
                for (o, &sum) in out.iter_mut().zip(&sums) {
                    let x = *o;
                    *o = finish(x, asinh_from(x * inverse, ln_at_least_1(sum)));
                }
            }
        }
    }
}

/// Past this, `asinh_of_positive` takes `ln(2t)`, since `t² + 1` would overflow.
const ASINH_HUGE: f32 = 1e18;

/// `asinh(t)` for `t ≥ 0` (NaN stays NaN) in plain `f32` arithmetic that the compiler
/// vectorises, the cost of a tensor's stretch (`f32::asinh`, through `hypot` and `ln_1p`, is
/// ~6× slower): a Taylor series below 0.1, else `ln(t + √(t² + 1))` by `ln_at_least_1`. Within
/// 3e-7 of the exact value (relative below 0.1, absolute above), far inside what an 8-bit or
/// float display stretch resolves; past 1e18, `ln(2t)`.
#[inline(always)]
pub fn asinh_of_positive(t: f32) -> f32 {
    // Selects rather than branches, so that a loop over values vectorises.
    let huge = t > ASINH_HUGE;
    let w = if huge { t } else { sum_with_hypot(t) };
    let large = ln_at_least_1(w) + if huge { std::f32::consts::LN_2 } else { 0.0 };
    asinh_from(t, large)
}

/// `t + √(t² + 1)`, whose logarithm is `asinh t`.
#[inline(always)]
fn sum_with_hypot(t: f32) -> f32 {
    t + (t * t + 1.0).sqrt()
}

/// `asinh t` from `large`, its value as a logarithm: that for `t ≥ 0.1`, else the series.
#[inline(always)]
fn asinh_from(t: f32, large: f32) -> f32 {
    // asinh t = t − t³/6 + 3t⁵/40 − 5t⁷/112 + 35t⁹/1152 − …: the next term is below 3e-13 t.
    let t2 = t * t;
    let series = t
        * (1.0
            + t2 * (-1.0 / 6.0 + t2 * (3.0 / 40.0 + t2 * (-5.0 / 112.0 + t2 * (35.0 / 1152.0)))));
    // NaN takes the series, which keeps it.
    if t >= 0.1 {
        large
    } else {
        series
    }
}

/// `ln(w)` for finite `w ≥ 1`: `w = m·2^e` with `m` in [√½, √2), and `ln m = 2 atanh(s)`,
/// `s = (m − 1)/(m + 1)`, `|s| ≤ 0.172`, by its series to `s⁹` (relative error below 4e-10).
#[inline(always)]
fn ln_at_least_1(w: f32) -> f32 {
    let bits = w.to_bits();
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let high = m > std::f32::consts::SQRT_2;
    let m = if high { m * 0.5 } else { m };
    let e = ((bits >> 23) & 0xff) as i32 - 127 + i32::from(high);
    let s = (m - 1.0) / (m + 1.0);
    // 2·atanh s = 2s·(1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9), in pairs of terms (Estrin): a shorter
    // chain than Horner's, in products by the reciprocals.
    let s2 = s * s;
    let s4 = s2 * s2;
    let sum = (1.0 + s2 * (1.0 / 3.0)) + s4 * ((0.2 + s2 * (1.0 / 7.0)) + s4 * (1.0 / 9.0));
    e as f32 * std::f32::consts::LN_2 + (s + s) * sum
}

fn finite(values: &[f32]) -> impl Iterator<Item = f32> + '_ {
    values.iter().copied().filter(|v| v.is_finite())
}

fn min_max(values: &[f32]) -> Option<(f32, f32)> {
    finite(values).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

fn percentiles(values: &[f32], lower: f32, upper: f32, max_exact: usize) -> Option<(f32, f32)> {
    if lower.is_nan() || upper.is_nan() {
        return None;
    }
    if let Some(found) = percentiles_from_windows(values, [lower, upper], max_exact) {
        return found;
    }
    // Selected as integer keys in the floats' order: a plain integer comparison each, where
    // `f32::total_cmp` does that conversion on both sides of every comparison.
    let mut keys: Vec<u32> = finite_sample(values, max_exact)
        .into_iter()
        .map(sortable_key)
        .collect();
    if keys.is_empty() {
        return None;
    }
    let at = |keys: &mut [u32], p| {
        let (below, gamma) = rank_of(keys.len(), p);
        let (_, &mut a, above) = keys.select_nth_unstable(below);
        lerp(a, above.iter().copied().min(), gamma)
    };
    Some((at(&mut keys, lower), at(&mut keys, upper)))
}

/// Below this many values a plane's percentiles are selected from a copy of all its keys.
const WINDOW_MIN_VALUES: usize = 4096;
/// Keys sampled (on a regular stride) to place the windows.
const WINDOW_SAMPLES: usize = 512;

/// The percentiles of `values` (exact, as numpy's) without copying them: a regular sample of
/// the keys places a window of keys around each wanted rank, one pass counts the finite keys
/// below and inside each window, and only the keys inside are copied and selected. `Some(None)`
/// when no value is finite; `None` when the plane is small, sampled (over `max_exact` finite
/// values) or a window missed its rank, for the plain selection to take.
fn percentiles_from_windows(
    values: &[f32],
    ps: [f32; 2],
    max_exact: usize,
) -> Option<Option<(f32, f32)>> {
    if values.len() < WINDOW_MIN_VALUES || u32::try_from(values.len()).is_err() {
        return None;
    }
    let stride = values.len() / WINDOW_SAMPLES;
    let mut sample: Vec<u32> = values
        .iter()
        .step_by(stride)
        .map(|&v| sortable_key(v))
        .filter(|k| (FINITE_KEYS.0..=FINITE_KEYS.1).contains(k))
        .collect();
    if sample.len() < WINDOW_SAMPLES / 4 {
        return None;
    }
    sample.sort_unstable();
    let windows = ps.map(|p| {
        // The sample's rank of p, widened by 3 binomial standard deviations (and 4 keys) on
        // each side; an open end at the sample's first or last key.
        let q = (decimal_f64(p) / 100.0).clamp(0.0, 1.0);
        let n = sample.len() as f64;
        let centre = q * (n - 1.0);
        let margin = 4.0 + 3.0 * (n * q * (1.0 - q)).sqrt();
        let lo = (centre - margin).floor();
        let hi = (centre + margin).ceil();
        let key = |at: f64| sample[(at as usize).min(sample.len() - 1)];
        [
            if lo <= 0.0 { FINITE_KEYS.0 } else { key(lo) },
            if hi >= n - 1.0 {
                FINITE_KEYS.1
            } else {
                key(hi)
            },
        ]
    });
    let counts = window_counts(values, &windows);
    let count = counts.finite as usize;
    if count == 0 {
        return Some(None);
    }
    if count > max_exact {
        return None;
    }
    let ranks = ps.map(|p| rank_of(count, p));
    for (w, &(below, _)) in ranks.iter().enumerate() {
        let (less, inside) = (counts.below[w] as usize, counts.inside[w] as usize);
        let needed = if below + 1 < count { below + 1 } else { below };
        if below < less || needed >= less + inside {
            return None;
        }
    }
    let mut keys = window_keys(values, &windows, counts.inside);
    let mut found = [0.0f32; 2];
    for (w, (keys, &(below, gamma))) in keys.iter_mut().zip(&ranks).enumerate() {
        let (_, &mut a, above) = keys.select_nth_unstable(below - counts.below[w] as usize);
        let b = (below + 1 < count)
            .then(|| above.iter().copied().min())
            .flatten();
        found[w] = lerp(a, b, gamma);
    }
    Some(Some((found[0], found[1])))
}

/// The keys of the finite floats: those of `-f32::MAX` and `f32::MAX` and all between.
const FINITE_KEYS: (u32, u32) = (0x0080_0000, 0xff7f_ffff);

/// Per window `[lo, hi]` of keys, how many finite values have a key below `lo` and how many
/// one in the window, and how many values are finite.
struct WindowCounts {
    finite: u32,
    below: [u32; 2],
    inside: [u32; 2],
}

fn window_counts(values: &[f32], windows: &[[u32; 2]; 2]) -> WindowCounts {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { window_counts_avx512(values, windows) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { window_counts_avx2(values, windows) };
        }
    }
    window_counts_portable(values, windows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn window_counts_avx512(values: &[f32], windows: &[[u32; 2]; 2]) -> WindowCounts {
    window_counts_portable(values, windows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn window_counts_avx2(values: &[f32], windows: &[[u32; 2]; 2]) -> WindowCounts {
    window_counts_portable(values, windows)
}

/// Counts of keys below each of six thresholds, the differences of which are the counts:
/// one compare and one subtraction a threshold in `i32` lanes (the keys with their sign bit
/// flipped, so that signed order is the keys' order), which the compiler vectorises (at most
/// 2³² values, so that no count overflows).
#[inline(always)]
fn window_counts_portable(values: &[f32], windows: &[[u32; 2]; 2]) -> WindowCounts {
    let ([a0, b0], [a1, b1]) = (windows[0], windows[1]);
    let (min, max) = FINITE_KEYS;
    // b + 1 cannot overflow: no window ends past the largest finite key.
    let signed = |k: u32| (k ^ 0x8000_0000) as i32;
    let t = [min, a0, b0 + 1, a1, b1 + 1, max + 1].map(signed);
    let mut below = [0u32; 6];
    for &v in values {
        let k = signed(sortable_key(v));
        for (n, &t) in below.iter_mut().zip(&t) {
            *n += u32::from(k < t);
        }
    }
    WindowCounts {
        finite: below[5] - below[0],
        below: [below[1] - below[0], below[3] - below[0]],
        inside: [below[2] - below[1], below[4] - below[3]],
    }
}

/// Fills `keys[w]` with the keys of `values` inside window `w`, of which there are
/// `inside[w]`.
fn window_keys(values: &[f32], windows: &[[u32; 2]; 2], inside: [u32; 2]) -> [Vec<u32>; 2] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { window_keys_avx512(values, windows, inside) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { window_keys_avx2(values, windows, inside) };
        }
    }
    window_keys_portable(values, windows, inside)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn window_keys_avx512(values: &[f32], windows: &[[u32; 2]; 2], inside: [u32; 2]) -> [Vec<u32>; 2] {
    window_keys_portable(values, windows, inside)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn window_keys_avx2(values: &[f32], windows: &[[u32; 2]; 2], inside: [u32; 2]) -> [Vec<u32>; 2] {
    window_keys_portable(values, windows, inside)
}

/// Windows hold a few per cent of the keys: a vectorised test of 8 values at a time finds the
/// chunks holding any, and only those are looked at one value at a time, each key written at
/// the end of both windows' keys and kept (the end moved past it) where it is inside, so that
/// no branch depends on the data.
#[inline(always)]
fn window_keys_portable(
    values: &[f32],
    windows: &[[u32; 2]; 2],
    inside: [u32; 2],
) -> [Vec<u32>; 2] {
    let ([a0, b0], [a1, b1]) = (windows[0], windows[1]);
    // a ≤ k ≤ b as one unsigned compare: below a, k − a wraps past b − a.
    let test = |k: u32| [k.wrapping_sub(a0) <= b0 - a0, k.wrapping_sub(a1) <= b1 - a1];
    // One slot more than the count: the last key written may be one not kept.
    let mut keys = inside.map(|n| vec![0u32; n as usize + 1]);
    let mut ends = [0usize; 2];
    let mut push = |k: u32| {
        let kept = test(k);
        for ((keys, end), kept) in keys.iter_mut().zip(&mut ends).zip(kept) {
            if let Some(slot) = keys.get_mut(*end) {
                *slot = k;
                *end += usize::from(kept);
            }
        }
    };
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut hits = 0u32;
        for &v in chunk {
            let [i0, i1] = test(sortable_key(v));
            hits |= u32::from(i0) | u32::from(i1);
        }
        if hits != 0 {
            for &v in chunk {
                push(sortable_key(v));
            }
        }
    }
    for &v in rest {
        push(sortable_key(v));
    }
    for (keys, end) in keys.iter_mut().zip(ends) {
        keys.truncate(end);
    }
    keys
}

/// An unsigned key in the order of the float (the order of `f32::total_cmp`): negative values
/// flipped whole, the others with the sign bit set (as `limits.wgsl`'s radix select).
#[inline(always)]
fn sortable_key(v: f32) -> u32 {
    let b = v.to_bits();
    // All ones for a negative value (flip all), else the sign bit alone; no branch, so that
    // loops over keys vectorise.
    let mask = ((b as i32) >> 31) as u32 | 0x8000_0000;
    b ^ mask
}

fn key_value(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

/// Every finite value when there are at most `max` of them; otherwise one value picked at a
/// pseudo-random (but fixed) place in each run of `ceil(count / max)` finite values, so the
/// sample follows the data's distribution without aliasing with the image's row length.
fn finite_sample(values: &[f32], max: usize) -> Vec<f32> {
    let count = finite(values).count();
    if count <= max {
        return finite(values).collect();
    }
    let run = count.div_ceil(max.max(1));
    finite(values)
        .enumerate()
        .filter(|&(k, _)| k % run == (splitmix64((k / run) as u64) % run as u64) as usize)
        .map(|(_, v)| v)
        .collect()
}

/// A well-mixed 64-bit hash of `x` (Steele, Lea and Flood's SplitMix64 finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// numpy's `percentile(values, p)` (method "linear") of `n` values as the place of the value
/// below (`below`, its rank in sorted order) and the fraction `gamma` of the way to the next.
fn rank_of(n: usize, p: f32) -> (usize, f64) {
    let last = n - 1;
    let q = (decimal_f64(p) / 100.0).clamp(0.0, 1.0);
    let virtual_index = last as f64 * q;
    let below = (virtual_index.floor() as usize).min(last);
    (below, virtual_index - below as f64)
}

/// numpy's `_lerp` between the values of the keys `a` and `b` (`None` past the last value):
/// the difference in the data's precision, the rest in f64, and from the upper neighbour when
/// gamma >= 0.5 (so that gamma = 1 gives b exactly).
fn lerp(a: u32, b: Option<u32>, gamma: f64) -> f32 {
    let a = key_value(a);
    let Some(b) = b.map(key_value) else {
        return a;
    };
    let diff = f64::from(b - a);
    let value = if gamma >= 0.5 {
        f64::from(b) - diff * (1.0 - gamma)
    } else {
        f64::from(a) + diff * gamma
    };
    value as f32
}

/// The `f64` of the shortest decimal that reads back as `p`: the percentile as typed (99.9),
/// not its `f32` approximation (99.90000152...), whose error shifts the interpolation point by
/// up to 1.5e-8 · n places, visible on large images.
fn decimal_f64(p: f32) -> f64 {
    p.to_string().parse().unwrap_or(f64::from(p))
}

fn zscale(values: &[f32]) -> Option<(f32, f32)> {
    let count = finite(values).count();
    if count == 0 {
        return None;
    }
    // astropy: stride = int(max(1.0, size / n_samples)), then the first n_samples.
    let stride = ((count as f64 / ZSCALE_SAMPLES as f64) as usize).max(1);
    let mut samples: Vec<f32> = finite(values)
        .step_by(stride)
        .take(ZSCALE_SAMPLES)
        .collect();
    samples.sort_unstable_by(f32::total_cmp);
    let (lo, hi) = zscale_of_sorted(&samples)?;
    Some((lo as f32, hi as f32))
}

/// IRAF's zscale on sorted samples: fit a line to the sorted values with iterative k-sigma
/// rejection (each rejected sample also rejecting its neighbours), then widen the median by
/// the slope divided by the contrast, within the samples' range.
fn zscale_of_sorted(samples: &[f32]) -> Option<(f64, f64)> {
    let npix = samples.len();
    let mut vmin = f64::from(*samples.first()?);
    let mut vmax = f64::from(*samples.last()?);
    let minpix = ZSCALE_MIN_NPIXELS.max((npix as f64 * ZSCALE_MAX_REJECT) as usize);
    let ngrow = ((npix as f64 * 0.01) as usize).max(1);
    let mut bad = vec![false; npix];
    let mut ngood = npix;
    let mut last_ngood = npix + 1;
    let mut slope = None;
    for _ in 0..ZSCALE_MAX_ITERATIONS {
        if ngood >= last_ngood || ngood < minpix {
            break;
        }
        let (s, intercept) = fit_line(samples, &bad);
        slope = Some(s);
        let residual = |i: usize| f64::from(samples[i]) - (s * i as f64 + intercept);
        let threshold = ZSCALE_KREJ * std_dev((0..npix).filter(|&i| !bad[i]).map(residual));
        for (i, b) in bad.iter_mut().enumerate() {
            let r = residual(i);
            if r < -threshold || r > threshold {
                *b = true;
            }
        }
        bad = dilate(&bad, ngrow);
        last_ngood = ngood;
        ngood = bad.iter().filter(|b| !**b).count();
    }
    if let (true, Some(slope)) = (ngood >= minpix, slope) {
        let slope = slope / ZSCALE_CONTRAST;
        let center = ((npix - 1) / 2) as f64;
        let median = f64::from(median_of_sorted(samples)?);
        vmin = vmin.max(median - (center - 1.0) * slope);
        vmax = vmax.min(median + (npix as f64 - center) * slope);
    }
    Some((vmin, vmax))
}

/// Least-squares line `(slope, intercept)` through the points `(i, samples[i])` not marked
/// bad (numpy's `polyfit(deg=1)` with 0/1 weights), on centred sums for stability.
fn fit_line(samples: &[f32], bad: &[bool]) -> (f64, f64) {
    let good = || {
        samples
            .iter()
            .zip(bad)
            .enumerate()
            .filter(|(_, (_, b))| !**b)
            .map(|(i, (&y, _))| (i as f64, f64::from(y)))
    };
    let n = good().count() as f64;
    let (sx, sy) = good().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (xm, ym) = (sx / n, sy / n);
    let (sxx, sxy) = good().fold((0.0, 0.0), |(sxx, sxy), (x, y)| {
        (sxx + (x - xm) * (x - xm), sxy + (x - xm) * (y - ym))
    });
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, ym - slope * xm)
}

/// Population standard deviation (numpy's `std()`, ddof = 0); 0 for no values.
fn std_dev(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = values.clone().count() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = values.clone().sum::<f64>() / n;
    (values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// Each marked sample also marks its neighbours, as numpy's
/// `convolve(mask, ones(ngrow), mode="same")` does: `(ngrow - 1) / 2` before, `ngrow / 2` after.
fn dilate(bad: &[bool], ngrow: usize) -> Vec<bool> {
    let mut out = vec![false; bad.len()];
    let (before, after) = ((ngrow - 1) / 2, ngrow / 2);
    for (i, _) in bad.iter().enumerate().filter(|(_, b)| **b) {
        let end = (i + after).min(bad.len() - 1);
        out[i.saturating_sub(before)..=end].fill(true);
    }
    out
}

/// numpy's median of sorted `f32` values: the middle one, or the mean of the two middle ones
/// taken in `f32` as numpy does for `float32` data.
fn median_of_sorted(sorted: &[f32]) -> Option<f32> {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted.get(n / 2).copied()
    } else {
        Some((*sorted.get(n / 2 - 1)? + *sorted.get(n / 2)?) / 2.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sortable_keys_keep_the_floats_order_and_read_back() {
        let mut values = vec![
            f32::MIN,
            -1e30,
            -2.5,
            -1.0,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            1e-10,
            0.5,
            1.0,
            7.25,
            1e30,
            f32::MAX,
        ];
        let keys: Vec<u32> = values.iter().map(|&v| sortable_key(v)).collect();
        assert!(keys.windows(2).all(|k| k[0] < k[1]), "{keys:?}");
        for (&v, &k) in values.iter().zip(&keys) {
            assert_eq!(key_value(k).to_bits(), v.to_bits());
        }
        values.reverse();
        let mut sorted = values.clone();
        sorted.sort_by_key(|&v| sortable_key(v));
        values.sort_by(f32::total_cmp);
        assert_eq!(sorted, values);
    }

    #[test]
    fn fast_asinh_is_asinh() {
        let mut t = 1e-30f32;
        while t < 1e30 {
            for k in 0..200 {
                let v = t * (1.0 + k as f32 * 0.0451);
                let (got, want) = (f64::from(asinh_of_positive(v)), f64::from(v).asinh());
                let scale = if v < 0.1 { want } else { want.max(1.0) };
                assert!((got - want).abs() <= 3e-7 * scale, "{v}: {got} vs {want}");
            }
            t *= 10.0;
        }
        assert_eq!(asinh_of_positive(0.0), 0.0);
        assert!(asinh_of_positive(f32::NAN).is_nan());
        assert!(asinh_of_positive(f32::MAX).is_finite());
    }

    const STRETCHES: [Stretch; 5] = [
        Stretch::Linear,
        Stretch::Sqrt,
        Stretch::LOG,
        Stretch::ASINH,
        Stretch::Log { a: 0.5 },
    ];

    fn stretched(values: &[f32], lims: (f32, f32), stretch: &Stretch) -> Vec<f32> {
        let mut out = vec![-1.0; values.len()];
        apply(values, lims, stretch, &mut out);
        out
    }

    #[test]
    fn stretches_map_the_limits_to_0_and_1_and_clip_outside() {
        for s in &STRETCHES {
            let out = stretched(&[2.0, 6.0, -10.0, 50.0], (2.0, 6.0), s);
            assert_eq!(out, [0.0, 1.0, 0.0, 1.0], "{s:?}");
        }
    }

    #[test]
    fn stretches_are_monotonic_within_0_1() {
        let ramp: Vec<f32> = (0..=1000).map(|i| i as f32 / 1000.0).collect();
        for s in &STRETCHES {
            let out = stretched(&ramp, (0.0, 1.0), s);
            assert!(out.windows(2).all(|w| w[0] <= w[1]), "{s:?} not monotonic");
            assert!(
                out.iter().all(|y| (0.0..=1.0).contains(y)),
                "{s:?} leaves [0, 1]"
            );
            // Every non-linear stretch lifts the middle of the range.
            if *s != Stretch::Linear {
                assert!(out[500] > 0.5, "{s:?}: y(0.5) = {}", out[500]);
            }
        }
    }

    #[test]
    fn asinh_stretch_in_blocks_equals_the_scalar_asinh() {
        // Not a whole number of blocks, with NaN, ±inf and values outside the limits; `out`
        // longer than `values` keeps what is past them. a = 1e-20 takes the one-pass loop
        // (1/a past ASINH_HUGE), the others the two passes.
        let mut values: Vec<f32> = (0..700).map(|i| (i as f32 * 0.37).sin() * 1.3).collect();
        values[5] = f32::NAN;
        values[300] = f32::INFINITY;
        values[301] = f32::NEG_INFINITY;
        for a in [0.1, 0.02, 3.0, 1e-20] {
            let mut out = vec![-7.0; values.len() + 9];
            apply(&values, (-1.0, 1.0), &Stretch::Asinh { a }, &mut out);
            let inverse = 1.0 / a;
            let norm = asinh_of_positive(inverse);
            for (i, (&v, &got)) in values.iter().zip(&out).enumerate() {
                let x = ((v + 1.0) * 0.5).clamp(0.0, 1.0);
                let y = asinh_of_positive(x * inverse) * (1.0 / norm);
                let want = if x >= 1.0 || y > 1.0 { 1.0 } else { y };
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "a = {a}, value {i} ({v}): {got} vs {want}"
                );
            }
            assert!(out[values.len()..].iter().all(|&o| o == -7.0), "a = {a}");
        }
    }

    #[test]
    fn stretches_follow_their_formulas() {
        // astropy's definitions, evaluated in f64.
        let x = 0.3f64;
        let want = [
            x,
            x.sqrt(),
            (1000.0 * x + 1.0).ln() / 1001f64.ln(),
            (x / 0.1).asinh() / 10f64.asinh(),
            (0.5 * x + 1.0).ln() / 1.5f64.ln(),
        ];
        for (s, want) in STRETCHES.iter().zip(want) {
            let got = stretched(&[0.3], (0.0, 1.0), s)[0];
            assert!(
                (f64::from(got) - want).abs() < 1e-6,
                "{s:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn nan_stays_nan_and_infinities_clip() {
        for s in &STRETCHES {
            let out = stretched(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], (0.0, 1.0), s);
            assert!(out[0].is_nan(), "{s:?}");
            assert_eq!(&out[1..], [1.0, 0.0], "{s:?}");
        }
    }

    #[test]
    fn a_constant_image_does_not_divide_by_zero() {
        let flat = [7.5f32; 20];
        for interval in [
            Interval::MinMax,
            Interval::ZScale,
            Interval::central_percentile(99.5),
        ] {
            let lims = limits(&flat, &interval).unwrap();
            assert_eq!(lims, (7.5, 7.5), "{interval:?}");
            for s in &STRETCHES {
                assert!(stretched(&flat, lims, s).iter().all(|&y| y == 0.0));
            }
        }
    }

    #[test]
    fn limits_ignore_nan_and_infinities() {
        let v = [f32::NAN, 3.0, f32::INFINITY, -1.0, f32::NEG_INFINITY, 2.0];
        assert_eq!(limits(&v, &Interval::MinMax), Some((-1.0, 3.0)));
        let all = Interval::Percentile {
            lower: 0.0,
            upper: 100.0,
        };
        assert_eq!(limits(&v, &all), Some((-1.0, 3.0)));
        assert_eq!(limits(&v, &Interval::ZScale), Some((-1.0, 3.0)));
        let none = [f32::NAN, f32::INFINITY];
        for interval in [Interval::MinMax, all, Interval::ZScale] {
            assert_eq!(limits(&none, &interval), None);
            assert_eq!(limits(&[], &interval), None);
        }
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([4, 1, 3, 2], (10, 50, 75, 100)) = 1.3, 2.5, 3.25, 4.
        let v = [4.0f32, 1.0, 3.0, 2.0];
        let p = |lower, upper| limits(&v, &Interval::Percentile { lower, upper }).unwrap();
        let (lo, hi) = p(10.0, 50.0);
        assert!((lo - 1.3).abs() < 1e-6 && hi == 2.5, "{lo} {hi}");
        assert_eq!(p(75.0, 100.0), (3.25, 4.0));
        assert_eq!(decimal_f64(99.9), 99.9f64);
        assert_eq!(
            Interval::central_percentile(99.5),
            Interval::Percentile {
                lower: 0.25,
                upper: 99.75
            }
        );
    }

    #[test]
    fn sampled_percentiles_stay_close_to_exact_ones() {
        // A shuffled ramp: the exact p-th percentile of 0..n is p/100·(n-1).
        let n = 200_000u64;
        let v: Vec<f32> = (0..n).map(|i| (splitmix64(i) % n) as f32).collect();
        let exact = percentiles(&v, 1.0, 99.0, usize::MAX).unwrap();
        let sampled = percentiles(&v, 1.0, 99.0, 10_000).unwrap();
        let tol = 0.01 * n as f32;
        assert!((exact.0 - sampled.0).abs() < tol, "{exact:?} {sampled:?}");
        assert!((exact.1 - sampled.1).abs() < tol, "{exact:?} {sampled:?}");
        assert!(finite_sample(&v, 10_000).len() <= 10_000);
    }

    #[test]
    fn zscale_stays_within_the_data_and_rejects_outliers() {
        // A noisy flat background with a few very bright pixels: zscale ignores the bright
        // tail that min/max follows.
        let mut v: Vec<f32> = (0..10_000u64)
            .map(|i| 100.0 + (splitmix64(i) % 1000) as f32 / 100.0)
            .collect();
        for i in (0..v.len()).step_by(97) {
            v[i] = 1e5;
        }
        let (lo, hi) = limits(&v, &Interval::ZScale).unwrap();
        let (min, max) = limits(&v, &Interval::MinMax).unwrap();
        assert!(min <= lo && lo < hi && hi <= max, "{lo} {hi}");
        assert!(hi < 200.0, "zscale followed the outliers: {hi}");
        // Fewer than min_npixels samples: the samples' range.
        assert_eq!(
            limits(&[3.0, 1.0, 2.0], &Interval::ZScale),
            Some((1.0, 3.0))
        );
    }

    #[test]
    fn dilation_matches_numpy_same_mode_convolution() {
        // numpy.convolve(mask, ones(k, bool), mode="same") with mask[8] = True on 20 samples
        // marks 8..=8 (k = 1), 8..=9 (k = 2), 7..=9 (k = 3), 4..=13 (k = 10).
        let mut mask = vec![false; 20];
        mask[8] = true;
        for (k, range) in [(1, 8..=8), (2, 8..=9), (3, 7..=9), (10, 4..=13)] {
            let got: Vec<usize> = (0..20).filter(|&i| dilate(&mask, k)[i]).collect();
            assert_eq!(got, range.collect::<Vec<_>>(), "k = {k}");
        }
        let ends = dilate(&(0..20).map(|i| i == 0 || i == 19).collect::<Vec<_>>(), 10);
        assert_eq!(ends.iter().filter(|b| **b).count(), 11);
    }

    #[test]
    fn dispatched_stretch_matches_the_portable_loop() {
        let values: Vec<f32> = (0..10_007u64)
            .map(|i| match i % 1000 {
                7 => f32::NAN,
                8 => f32::INFINITY,
                _ => (splitmix64(i) % 100_000) as f32 / 1000.0 - 10.0,
            })
            .collect();
        for s in &STRETCHES {
            let (mut got, mut want) = (vec![0.0; values.len()], vec![0.0; values.len()]);
            apply(&values, (-5.0, 80.0), s, &mut got);
            apply_portable(&values, (-5.0, 80.0), s, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits(), "{s:?}");
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { apply_avx2(&values, (-5.0, 80.0), s, &mut got) };
                assert!(got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits()));
            }
        }
    }

    #[test]
    fn windowed_percentiles_are_the_selected_ones() {
        let full = |v: &[f32], lower: f32, upper: f32| {
            let mut keys: Vec<u32> = finite(v).map(sortable_key).collect();
            let at = |keys: &mut [u32], p| {
                let (below, gamma) = rank_of(keys.len(), p);
                let (_, &mut a, above) = keys.select_nth_unstable(below);
                lerp(a, above.iter().copied().min(), gamma)
            };
            (at(&mut keys, lower), at(&mut keys, upper))
        };
        let ramp = |n: u64, m: u64| -> Vec<f32> {
            (0..n).map(|i| (splitmix64(i) % m) as f32 - 7.0).collect()
        };
        let mut galaxy: Vec<f32> = (0..224 * 224u64)
            .map(|i| {
                let (x, y) = ((i % 224) as f32 - 112.0, (i / 224) as f32 - 112.0);
                (-(x * x + y * y).sqrt() / 9.0).exp() * 1e3 + (splitmix64(i) % 1000) as f32 / 1e3
            })
            .collect();
        galaxy[500..900].fill(f32::NAN);
        galaxy[1000] = f32::NEG_INFINITY;
        let cases = [
            ramp(50_176, 50_176),
            ramp(60_000, 3),
            ramp(5_000, 1 << 20),
            galaxy,
        ];
        for v in &cases {
            for (lower, upper) in [(0.25, 99.75), (0.0, 100.0), (50.0, 50.0), (1.0, 99.0)] {
                let windowed = percentiles_from_windows(v, [lower, upper], usize::MAX);
                assert!(windowed.is_some(), "{lower} {upper}: no window");
                assert_eq!(
                    percentiles(v, lower, upper, EXACT_PERCENTILE_MAX),
                    Some(full(v, lower, upper)),
                    "{lower} {upper}"
                );
            }
        }
        let empty = vec![f32::NAN; 10_000];
        assert_eq!(percentiles(&empty, 1.0, 99.0, EXACT_PERCENTILE_MAX), None);
    }
}
