//! Resampling a plane to a fixed size: separable convolution with a bilinear (triangle) or
//! Lanczos-3 kernel, widened when shrinking so that it also low-pass filters (antialiasing),
//! as Pillow's `Image.resize` does; the CPU reference of `resample.wgsl`.
//!
//! Output pixel `i` of an axis of `n_in → n_out` pixels is centred at input coordinate
//! `c = (i + ½)·s` (pixel edges at integers, `s = n_in / n_out`); its weights are
//! `K((j + ½ − c) / f)` for the input pixels `j` within `support · f` of `c` (`f = max(s, 1)`),
//! normalised to sum 1 over the pixels inside the image (so the edge is extended, not dark).
//! The weights are computed once per axis in `f64` ([`AxisTable`]) and shared by both
//! paths; the CPU and the GPU accumulate the same products in the same order in `f32`.
//!
//! Non-finite inputs (NaN, ±inf: no data) are left out and the rest re-weighted; an output
//! value is NaN when the finite inputs under it carry less than half of its weight.
//! The horizontal pass runs first, then the vertical one, as in Pillow.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The convolution kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Filter {
    /// The triangle `1 − |x|` on `|x| < 1` (Pillow's `BILINEAR`).
    Bilinear,
    /// `sinc(x)·sinc(x/3)` on `|x| < 3` (Pillow's `LANCZOS`).
    Lanczos3,
}

impl std::str::FromStr for Filter {
    type Err = crate::Error;

    /// `lanczos3` (also `lanczos`) or `bilinear` (also `linear`), any case.
    fn from_str(name: &str) -> crate::Result<Filter> {
        match name.trim().to_ascii_lowercase().as_str() {
            "lanczos3" | "lanczos" => Ok(Filter::Lanczos3),
            "bilinear" | "linear" => Ok(Filter::Bilinear),
            other => Err(crate::Error::Recipe(format!(
                "filter {other:?} is not lanczos3 or bilinear"
            ))),
        }
    }
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Lanczos3 => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Lanczos3 if (-3.0..3.0).contains(&x) => sinc(x) * sinc(x / 3.0),
            Filter::Lanczos3 => 0.0,
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The weights of one axis `n_in → n_out`: output pixel `i` is the sum over `k < count(i)` of
/// `weights[i·stride + k] · input[start(i) + k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisTable {
    pub n_in: usize,
    pub n_out: usize,
    /// Weights per output pixel (the widest window), zero-padded.
    pub stride: usize,
    /// `(start, count)` per output pixel.
    pub windows: Vec<[u32; 2]>,
    pub weights: Vec<f32>,
}

impl AxisTable {
    pub fn new(filter: Filter, n_in: usize, n_out: usize) -> AxisTable {
        let scale = n_in as f64 / n_out as f64;
        let widen = scale.max(1.0);
        let support = filter.support() * widen;
        let stride = (support.ceil() as usize * 2 + 1).min(n_in.max(1));
        let mut windows = Vec::with_capacity(n_out);
        let mut weights = vec![0.0f32; n_out * stride];
        let mut raw = Vec::with_capacity(stride + 2);
        for i in 0..n_out {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support + 0.5).floor().max(0.0) as usize).min(n_in);
            let hi = ((centre + support + 0.5).floor().max(0.0) as usize).min(n_in);
            raw.clear();
            raw.extend((lo..hi).map(|j| filter.weight((j as f64 + 0.5 - centre) / widen)));
            // Trim zero weights at both ends so the window fits the stride.
            let first = raw.iter().position(|&w| w != 0.0).unwrap_or(0);
            let last = raw.iter().rposition(|&w| w != 0.0).map_or(first, |p| p + 1);
            let kept = &raw[first..last.min(first + stride)];
            let total: f64 = kept.iter().sum();
            let row = &mut weights[i * stride..i * stride + kept.len()];
            for (w, &k) in row.iter_mut().zip(kept) {
                *w = if total != 0.0 { k / total } else { k } as f32;
            }
            windows.push([(lo + first) as u32, kept.len() as u32]);
        }
        AxisTable {
            n_in,
            n_out,
            stride,
            windows,
            weights,
        }
    }

    /// The `(start, count)` and the weights of output pixel `i`.
    #[inline]
    pub fn window(&self, i: usize) -> ([u32; 2], &[f32]) {
        let [start, count] = self.windows[i];
        (
            [start, count],
            &self.weights[i * self.stride..i * self.stride + count as usize],
        )
    }

    /// Output value `i` from the inputs `at(start + k)`: the weighted sum, re-weighted over
    /// the finite inputs when some are not (NaN below half the weight).
    #[inline]
    pub fn apply(&self, i: usize, at: impl Fn(usize) -> f32) -> f32 {
        let [start, count] = self.windows[i];
        let w = &self.weights[i * self.stride..i * self.stride + count as usize];
        let (mut sum, mut finite_weight, mut missing) = (0.0f32, 0.0f32, false);
        for (k, &wk) in w.iter().enumerate() {
            let v = at(start as usize + k);
            if v.is_finite() {
                sum += wk * v;
                finite_weight += wk;
            } else {
                missing = true;
            }
        }
        if !missing {
            sum
        } else if finite_weight >= 0.5 {
            sum / finite_weight
        } else {
            f32::NAN
        }
    }
}

/// `plane` (`width × height`, row-major) resampled to `out_w × out_h`, times `flux` (1, or
/// the output pixel's area in input pixels); `tables` are the horizontal and vertical axes.
pub fn resample(
    plane: &[f32],
    width: usize,
    tables: (&AxisTable, &AxisTable),
    flux: f32,
    out: &mut [f32],
) {
    SCRATCH.with_borrow_mut(|(rows, strip)| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                return unsafe { resample_avx512(plane, width, tables, flux, out, rows, strip) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { resample_avx2(plane, width, tables, flux, out, rows, strip) };
            }
        }
        resample_with::<STRIP, false>(plane, width, tables, flux, out, rows, strip)
    })
}

/// The same loops compiled with AVX-512 (16 lanes where the baseline has 4); no FMA, so the
/// same products rounded the same way, hence the same values. What it calls must be inlined
/// into it (`inline(always)`, plain `for` loops rather than closures handed to `fold`) to be
/// compiled so.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn resample_avx512(
    plane: &[f32],
    width: usize,
    tables: (&AxisTable, &AxisTable),
    flux: f32,
    out: &mut [f32],
    rows: &mut Vec<f32>,
    strip: &mut Vec<f32>,
) {
    resample_with::<16, true>(plane, width, tables, flux, out, rows, strip)
}

/// [`resample_avx512`] with AVX2 (8 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn resample_avx2(
    plane: &[f32],
    width: usize,
    tables: (&AxisTable, &AxisTable),
    flux: f32,
    out: &mut [f32],
    rows: &mut Vec<f32>,
    strip: &mut Vec<f32>,
) {
    resample_with::<STRIP, true>(plane, width, tables, flux, out, rows, strip)
}

/// Rows of the horizontal pass done together, as the lanes of one vector: 8 unless a path
/// has wider vectors (16 for AVX-512). The rows of a strip do not depend on each other, so
/// every width gives the same values.
const STRIP: usize = 8;
/// Output values of the vertical pass summed together: four AVX2 registers.
const VERTICAL_BLOCK: usize = 32;

thread_local! {
    /// The horizontal pass's output and a strip of input rows interleaved, kept per thread
    /// so that planes allocate nothing.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`resample`] without the dispatch (the tests' comparison).
#[cfg(test)]
fn resample_portable(
    plane: &[f32],
    width: usize,
    tables: (&AxisTable, &AxisTable),
    flux: f32,
    out: &mut [f32],
) {
    let (mut rows, mut strip) = (Vec::new(), Vec::new());
    resample_with::<STRIP, false>(plane, width, tables, flux, out, &mut rows, &mut strip)
}

/// `AVX2`: the caller is compiled for, and was chosen on, a CPU with AVX2 (or AVX-512F).
#[inline(always)]
fn resample_with<const STRIP: usize, const AVX2: bool>(
    plane: &[f32],
    width: usize,
    (horizontal, vertical): (&AxisTable, &AxisTable),
    flux: f32,
    out: &mut [f32],
    rows: &mut Vec<f32>,
    strip: &mut Vec<f32>,
) {
    let (out_w, out_h) = (horizontal.n_out, vertical.n_out);
    let height = vertical.n_in;
    rows.clear();
    rows.resize(height * out_w, 0.0);
    // Planes with every value finite (most cutouts) take loops without the per-sample test:
    // the same products summed in the same order, so the same values as `apply`.
    let complete = all_finite(&plane[..height * width]);
    if complete {
        horizontal_complete::<STRIP, AVX2>(plane, width, horizontal, rows, strip);
    } else {
        for (y, row) in rows.chunks_exact_mut(out_w).enumerate() {
            let input = &plane[y * width..(y + 1) * width];
            for (x, v) in row.iter_mut().enumerate() {
                *v = horizontal.apply(x, |j| input[j]);
            }
        }
    }
    let complete = complete && all_finite(rows);
    for (y, row) in out.chunks_exact_mut(out_w).take(out_h).enumerate() {
        if complete {
            // Row by row (contiguous, vectorised): row += w_k · rows[start + k], a block of
            // the row at a time, so that the sums stay in registers across the taps.
            let ([start, count], w) = vertical.window(y);
            let taps = &rows[start as usize * out_w..][..count as usize * out_w];
            let blocked = out_w / VERTICAL_BLOCK * VERTICAL_BLOCK;
            for (b, block) in row.chunks_exact_mut(VERTICAL_BLOCK).enumerate() {
                let mut sum = [0.0f32; VERTICAL_BLOCK];
                for (k, &wk) in w.iter().enumerate() {
                    let input = &taps[k * out_w + b * VERTICAL_BLOCK..][..VERTICAL_BLOCK];
                    for (s, &v) in sum.iter_mut().zip(input) {
                        *s += wk * v;
                    }
                }
                block.copy_from_slice(&sum);
            }
            let rest = &mut row[blocked..];
            rest.fill(0.0);
            for (k, &wk) in w.iter().enumerate() {
                let input = &taps[k * out_w + blocked..][..rest.len()];
                for (o, &v) in rest.iter_mut().zip(input) {
                    *o += wk * v;
                }
            }
            if flux != 1.0 {
                for o in row.iter_mut() {
                    *o *= flux;
                }
            }
        } else {
            for (x, v) in row.iter_mut().enumerate() {
                *v = vertical.apply(y, |j| rows[j * out_w + x]) * flux;
            }
        }
    }
}

/// The horizontal pass of a plane with every value finite, into `rows` (`height × out_w`):
/// [`STRIP`] rows at a time, interleaved into `strip` (column `j` of the strip's rows
/// contiguous), so that each weight multiplies a vector of that many rows. Each output is
/// still `0 + w_0·v_0 + w_1·v_1 + …` in that order, as in `AxisTable::apply`. With `AVX2`,
/// the interleaving and the sums' way back to their rows go by 8 × 8 blocks ([`transpose8`]).
#[inline(always)]
fn horizontal_complete<const STRIP: usize, const AVX2: bool>(
    plane: &[f32],
    width: usize,
    horizontal: &AxisTable,
    rows: &mut [f32],
    strip: &mut Vec<f32>,
) {
    let out_w = horizontal.n_out;
    let height = rows.len() / out_w.max(1);
    strip.clear();
    strip.resize(width * STRIP, 0.0);
    let strips = height / STRIP;
    // Columns interleaved, and outputs sent back, by blocks of 8.
    let blocks = AVX2 && STRIP.is_multiple_of(8) && cfg!(target_arch = "x86_64");
    let blocked = |n: usize| if blocks { n / 8 * 8 } else { 0 };
    for s in 0..strips {
        let y0 = s * STRIP;
        let input = &plane[y0 * width..(y0 + STRIP) * width];
        #[cfg(target_arch = "x86_64")]
        if blocked(width) > 0 {
            // SAFETY: `AVX2` is true only in functions compiled with AVX2 or AVX-512F (which
            // implies it) and called once the CPU was found to have it.
            unsafe { transpose8::interleave::<STRIP>(input, width, strip) };
        }
        for j in blocked(width)..width {
            for (r, c) in strip[j * STRIP..][..STRIP].iter_mut().enumerate() {
                *c = input[r * width + j];
            }
        }
        let out = &mut rows[y0 * out_w..(y0 + STRIP) * out_w];
        #[cfg(target_arch = "x86_64")]
        for x0 in (0..blocked(out_w)).step_by(8) {
            let mut block = [[0.0f32; STRIP]; 8];
            for (i, sum) in block.iter_mut().enumerate() {
                *sum = strip_sum(horizontal, x0 + i, strip);
            }
            // SAFETY: as for `interleave` above.
            unsafe { transpose8::scatter(&block, out, out_w, x0) };
        }
        for x in blocked(out_w)..out_w {
            let sum = strip_sum::<STRIP>(horizontal, x, strip);
            for (r, s) in sum.into_iter().enumerate() {
                out[r * out_w + x] = s;
            }
        }
    }
    for y in strips * STRIP..height {
        let input = &plane[y * width..(y + 1) * width];
        for (x, v) in rows[y * out_w..(y + 1) * out_w].iter_mut().enumerate() {
            let ([start, count], w) = horizontal.window(x);
            let mut sum = 0.0f32;
            for (wk, vk) in w.iter().zip(&input[start as usize..][..count as usize]) {
                sum += wk * vk;
            }
            *v = sum;
        }
    }
}

/// Output `x` of the horizontal pass for each row of an interleaved strip.
#[inline(always)]
fn strip_sum<const STRIP: usize>(horizontal: &AxisTable, x: usize, strip: &[f32]) -> [f32; STRIP] {
    let ([start, count], w) = horizontal.window(x);
    let columns = &strip[start as usize * STRIP..][..count as usize * STRIP];
    let mut sum = [0.0f32; STRIP];
    for (&wk, column) in w.iter().zip(columns.chunks_exact(STRIP)) {
        for (s, &v) in sum.iter_mut().zip(column) {
            *s += wk * v;
        }
    }
    sum
}

/// 8 × 8 blocks of `f32` transposed in AVX2 registers, for the horizontal pass: one value at a
/// time, its interleaving of a strip's rows and its sums' way back to the rows cost as much as
/// the products. Data movement only, so the same values. `STRIP` is a multiple of 8 (the
/// strip's rows in groups of 8).
#[cfg(target_arch = "x86_64")]
mod transpose8 {
    use std::arch::x86_64::{
        __m256, _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps,
    };

    /// Row `i` of the result is column `i` of `m`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn transpose(m: [__m256; 8]) -> [__m256; 8] {
        // Pairs of rows interleaved, then quadruples, then the 128-bit halves exchanged.
        let t = [
            _mm256_unpacklo_ps(m[0], m[1]),
            _mm256_unpackhi_ps(m[0], m[1]),
            _mm256_unpacklo_ps(m[2], m[3]),
            _mm256_unpackhi_ps(m[2], m[3]),
            _mm256_unpacklo_ps(m[4], m[5]),
            _mm256_unpackhi_ps(m[4], m[5]),
            _mm256_unpacklo_ps(m[6], m[7]),
            _mm256_unpackhi_ps(m[6], m[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xee>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xee>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xee>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xee>(t[5], t[7]),
        ];
        std::array::from_fn(|i| match i {
            0..4 => _mm256_permute2f128_ps::<0x20>(u[i], u[i + 4]),
            _ => _mm256_permute2f128_ps::<0x31>(u[i - 4], u[i]),
        })
    }

    /// `strip[j · STRIP + r] = input[r · width + j]` for the columns `j` below `width / 8 · 8`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn interleave<const STRIP: usize>(input: &[f32], width: usize, strip: &mut [f32]) {
        for j0 in (0..width / 8 * 8).step_by(8) {
            for group in 0..STRIP / 8 {
                let rows = std::array::from_fn(|r| {
                    let row = &input[(group * 8 + r) * width + j0..][..8];
                    // SAFETY: `row` holds the 8 values read.
                    unsafe { _mm256_loadu_ps(row.as_ptr()) }
                });
                for (k, column) in transpose(rows).into_iter().enumerate() {
                    let to = &mut strip[(j0 + k) * STRIP + group * 8..][..8];
                    // SAFETY: `to` holds the 8 values written.
                    unsafe { _mm256_storeu_ps(to.as_mut_ptr(), column) };
                }
            }
        }
    }

    /// `out[r · out_w + x0 + i] = block[i][r]`: the sums of outputs `x0..x0 + 8` for each row
    /// of the strip, written to the rows.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn scatter<const STRIP: usize>(
        block: &[[f32; STRIP]; 8],
        out: &mut [f32],
        out_w: usize,
        x0: usize,
    ) {
        for group in 0..STRIP / 8 {
            let sums = std::array::from_fn(|i| {
                let sum = &block[i][group * 8..][..8];
                // SAFETY: `sum` holds the 8 values read.
                unsafe { _mm256_loadu_ps(sum.as_ptr()) }
            });
            for (r, row) in transpose(sums).into_iter().enumerate() {
                let to = &mut out[(group * 8 + r) * out_w + x0..][..8];
                // SAFETY: `to` holds the 8 values written.
                unsafe { _mm256_storeu_ps(to.as_mut_ptr(), row) };
            }
        }
    }
}

/// Whether no value is NaN or ±inf: the largest magnitude's bits below the infinities', a
/// reduction that vectorises (`all` stops early, one value at a time).
#[inline(always)]
fn all_finite(values: &[f32]) -> bool {
    let mut largest = 0u32;
    for v in values {
        largest = largest.max(v.to_bits() & 0x7fff_ffff);
    }
    largest < 0x7f80_0000
}

/// The area of an output pixel in input pixels, for flux-conserving resampling.
pub fn flux_factor(width: usize, height: usize, out_w: usize, out_h: usize) -> f32 {
    ((width as f64 / out_w as f64) * (height as f64 / out_h as f64)) as f32
}

/// The axis tables of a batch of planes going to `out_w × out_h`, each distinct input length
/// once per axis, and per plane the indexes of its horizontal and vertical table.
#[derive(Debug, Clone)]
pub struct BatchTables {
    pub tables: Vec<Arc<AxisTable>>,
    pub of_plane: Vec<[usize; 2]>,
}

impl BatchTables {
    pub fn new(
        filter: Filter,
        sizes: impl Iterator<Item = (usize, usize)>,
        out_w: usize,
        out_h: usize,
    ) -> BatchTables {
        let mut tables = Vec::new();
        let mut known = HashMap::new();
        let mut index = |n_in: usize, n_out: usize, axis: u8| {
            *known.entry((axis, n_in)).or_insert_with(|| {
                tables.push(AxisTable::shared(filter, n_in, n_out));
                tables.len() - 1
            })
        };
        let of_plane = sizes
            .map(|(w, h)| [index(w, out_w, 0), index(h, out_h, 1)])
            .collect();
        BatchTables { tables, of_plane }
    }
}

/// The axis tables made so far, by filter and lengths: a catalogue's cutout sizes repeat from
/// batch to batch, and a Lanczos table costs two sines per weight.
static MADE_TABLES: LazyLock<Mutex<TablesBySize>> = LazyLock::new(Mutex::default);
/// Axis tables by filter, input length and output length.
type TablesBySize = HashMap<(Filter, usize, usize), Arc<AxisTable>>;
/// [`MADE_TABLES`] is emptied when it reaches this many (up to ~20 MiB of Lanczos weights at
/// 224 a side).
const KEPT_TABLES: usize = 2048;

impl AxisTable {
    /// [`AxisTable::new`], made once and shared while it is kept.
    pub fn shared(filter: Filter, n_in: usize, n_out: usize) -> Arc<AxisTable> {
        let key = (filter, n_in, n_out);
        // A poisoned lock only means a panic elsewhere: the tables in it are whole.
        let made = || {
            MADE_TABLES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(table) = made().get(&key) {
            return Arc::clone(table);
        }
        let table = Arc::new(AxisTable::new(filter, n_in, n_out));
        let mut tables = made();
        if tables.len() >= KEPT_TABLES {
            tables.clear();
        }
        tables.insert(key, Arc::clone(&table));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_identity_is_exact() {
        for filter in [Filter::Bilinear, Filter::Lanczos3] {
            for (n_in, n_out) in [(7, 7), (100, 224), (300, 224), (5, 1), (1, 9), (4096, 3)] {
                let t = AxisTable::new(filter, n_in, n_out);
                for (i, &[start, count]) in t.windows.iter().enumerate() {
                    assert!((start + count) as usize <= n_in);
                    let sum: f64 = t.weights[i * t.stride..][..count as usize]
                        .iter()
                        .map(|&w| f64::from(w))
                        .sum();
                    assert!(
                        (sum - 1.0).abs() < 1e-5,
                        "{filter:?} {n_in}->{n_out}: {sum}"
                    );
                }
            }
            // Same size: each output pixel is its input pixel.
            let data: Vec<f32> = (0..35).map(|v| v as f32 * 0.7 - 3.0).collect();
            let (h, v) = (AxisTable::new(filter, 7, 7), AxisTable::new(filter, 5, 5));
            let mut out = vec![0.0; 35];
            resample(&data, 7, (&h, &v), 1.0, &mut out);
            assert_eq!(out, data);
        }
    }

    #[test]
    fn constant_planes_stay_constant_and_flux_is_kept() {
        let data = vec![2.5f32; 40 * 30];
        for filter in [Filter::Bilinear, Filter::Lanczos3] {
            let (h, v) = (
                AxisTable::new(filter, 40, 16),
                AxisTable::new(filter, 30, 64),
            );
            let mut out = vec![0.0; 16 * 64];
            let flux = flux_factor(40, 30, 16, 64);
            resample(&data, 40, (&h, &v), flux, &mut out);
            let total: f32 = out.iter().sum();
            assert!((total - 2.5 * 1200.0).abs() < 1e-2, "{total}");
            assert!(out.iter().all(|&o| (o - 2.5 * flux).abs() < 1e-5));
        }
    }

    #[test]
    fn holes_are_filled_from_their_neighbours_and_empty_planes_stay_empty() {
        let mut data: Vec<f32> = (0..64).map(|v| v as f32).collect();
        data[27] = f32::NAN;
        data[36] = f32::INFINITY;
        let (h, v) = (
            AxisTable::new(Filter::Bilinear, 8, 4),
            AxisTable::new(Filter::Bilinear, 8, 4),
        );
        let mut out = vec![0.0; 16];
        resample(&data, 8, (&h, &v), 1.0, &mut out);
        assert!(out.iter().all(|v| v.is_finite()), "{out:?}");
        let empty = vec![f32::NAN; 64];
        resample(&empty, 8, (&h, &v), 1.0, &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
    }

    /// A plane of `width × height` pseudo-random values, with NaN at every `hole`-th place.
    fn noisy(width: usize, height: usize, hole: Option<usize>) -> Vec<f32> {
        (0..width * height)
            .map(|i| match hole {
                Some(h) if i % h == 3 => f32::NAN,
                _ => ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32 / 1e5 - 50.0,
            })
            .collect()
    }

    #[test]
    fn dispatched_and_strip_loops_match_the_per_value_definition() {
        // Sizes with and without whole blocks of 8 (columns in, outputs out) and strips.
        let cases = [
            (300, 203, None, 224, 160),
            (101, 97, None, 224, 160),
            (150, 61, Some(37), 224, 160),
            (7, 40, None, 37, 45),
            (90, 35, None, 13, 20),
        ];
        for filter in [Filter::Bilinear, Filter::Lanczos3] {
            for (width, height, hole, out_w, out_h) in cases {
                let plane = noisy(width, height, hole);
                let (h, v) = (
                    AxisTable::new(filter, width, out_w),
                    AxisTable::new(filter, height, out_h),
                );
                // The definition: every output from `apply`, horizontal pass first.
                let rows: Vec<f32> = (0..height * out_w)
                    .map(|i| h.apply(i % out_w, |j| plane[(i / out_w) * width + j]))
                    .collect();
                let want: Vec<f32> = (0..out_h * out_w)
                    .map(|i| v.apply(i / out_w, |j| rows[j * out_w + i % out_w]))
                    .collect();
                let mut got = vec![0.0; out_h * out_w];
                resample(&plane, width, (&h, &v), 1.0, &mut got);
                let mut portable = vec![0.0; out_h * out_w];
                resample_portable(&plane, width, (&h, &v), 1.0, &mut portable);
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    let (mut rows, mut strip) = (Vec::new(), Vec::new());
                    let mut avx2 = vec![0.0; out_h * out_w];
                    // SAFETY: the CPU supports AVX2, checked just above.
                    unsafe {
                        resample_avx2(
                            &plane,
                            width,
                            (&h, &v),
                            1.0,
                            &mut avx2,
                            &mut rows,
                            &mut strip,
                        )
                    };
                    assert!(avx2
                        .iter()
                        .zip(&want)
                        .all(|(a, w)| a.to_bits() == w.to_bits()));
                }
                for ((g, p), w) in got.iter().zip(&portable).zip(&want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "{filter:?} {width}x{height}");
                    assert_eq!(p.to_bits(), w.to_bits(), "{filter:?} {width}x{height}");
                }
            }
        }
    }
}
