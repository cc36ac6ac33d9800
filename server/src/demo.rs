//! `insitu demo`: a Euclid-MER-like mosaic and catalogue made on the spot, then cut in bulk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use insitu_engine::bulk::{self, BulkOptions, Output};
use insitu_engine::catalog::read_catalog;
use insitu_engine::cutout::{Mode, Size};
use insitu_engine::fits::{Card, FitsFile, Header, Value};
use insitu_engine::wcs::Wcs;

use crate::cli::DemoArgs;

/// Euclid MER tiles: TAN projection, 0.1″ pixels, north up, east left.
const PIXEL_DEG: f64 = 0.1 / 3600.0;
const CENTER: (f64, f64) = (267.38, 65.5);

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (64..=65_536).contains(&args.npix),
        "--npix must be between 64 and 65536"
    );
    anyhow::ensure!(
        args.size >= 1 && args.size < args.npix,
        "--size must be between 1 and --npix"
    );
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mosaic = args.dir.join(format!("mosaic_{}.fits", args.npix));
    if !mosaic.exists() {
        eprintln!("writing demo mosaic {} ({0}×{0} float32)", args.npix);
        write_mosaic(&mosaic, args.npix, 1)?;
    }
    let file = FitsFile::open(&mosaic)?;
    let image = file.image(0)?;
    let wcs = Wcs::from_header(image.header())?;

    let catalog_path = args.dir.join("catalog.csv");
    write_catalog(&catalog_path, &wcs, args.npix, args.count, args.size)?;
    let catalog = read_catalog(&catalog_path)?;

    for (output, what) in [
        (Output::Dir(args.dir.join("cutouts")), "FITS files"),
        (Output::Npy(args.dir.join("cutouts.npy")), "an .npy stack"),
    ] {
        let options = BulkOptions {
            size: Size::Pixels(args.size),
            mode: Mode::Partial,
            planes: None,
            skip_bad: false,
        };
        let started = Instant::now();
        let report = bulk::run(&image, Some(&wcs), &catalog, &options, &output, &|_| {})?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{} {}×{} cutouts as {what} in {secs:.2} s: {:.0} cutouts/s",
            report.written,
            args.size,
            args.size,
            report.written as f64 / secs.max(1e-9)
        );
    }
    println!(
        "demo data and cutouts are in {} (mosaic, catalog.csv, cutouts/, cutouts.npy)",
        args.dir.display()
    );
    Ok(())
}

/// The header of a demo mosaic: BITPIX -32, TAN, CRPIX at the centre, RADESYS ICRS.
pub fn mosaic_header(npix: usize) -> Header {
    let mut h = Header::default();
    let centre = (npix as f64 + 1.0) / 2.0;
    let cards: Vec<(&str, Value, &str)> = vec![
        ("SIMPLE", Value::Logical(true), "conforms to FITS standard"),
        ("BITPIX", Value::Integer(-32), "IEEE single precision"),
        ("NAXIS", Value::Integer(2), ""),
        ("NAXIS1", Value::Integer(npix as i64), ""),
        ("NAXIS2", Value::Integer(npix as i64), ""),
        ("CTYPE1", Value::String("RA---TAN".into()), ""),
        ("CTYPE2", Value::String("DEC--TAN".into()), ""),
        ("CRVAL1", Value::Real(CENTER.0), "[deg]"),
        ("CRVAL2", Value::Real(CENTER.1), "[deg]"),
        ("CRPIX1", Value::Real(centre), ""),
        ("CRPIX2", Value::Real(centre), ""),
        ("CD1_1", Value::Real(-PIXEL_DEG), "0.1 arcsec pixels"),
        ("CD1_2", Value::Real(0.0), ""),
        ("CD2_1", Value::Real(0.0), ""),
        ("CD2_2", Value::Real(PIXEL_DEG), ""),
        ("CUNIT1", Value::String("deg".into()), ""),
        ("CUNIT2", Value::String("deg".into()), ""),
        ("RADESYS", Value::String("ICRS".into()), ""),
        ("BUNIT", Value::String("uJy".into()), ""),
        (
            "FILTER",
            Value::String("VIS".into()),
            "Euclid-MER-like demo band",
        ),
    ];
    for (k, v, c) in cards {
        h.push(Card::new(k, v, c));
    }
    h.push(Card::commentary(
        "COMMENT",
        "synthetic Euclid-MER-like mosaic written by insitu demo",
    ));
    h
}

/// Writes a `npix`² float32 mosaic of Gaussian noise and faint round sources, row by row, so
/// even a 19200² (1.4 GB) mosaic needs only one row of memory.
pub fn write_mosaic(path: &Path, npix: usize, seed: u64) -> anyhow::Result<()> {
    let tmp = path.with_extension("fits.partial");
    let mut out = BufWriter::with_capacity(
        1 << 22,
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    out.write_all(&mosaic_header(npix).to_bytes())?;
    let mut rng = SplitMix64(seed);
    // About one source per 100×100 pixels, sorted by row so each row sees only nearby ones.
    let count = (npix * npix / 10_000).max(1);
    let mut sources: Vec<(f64, f64, f64, f64)> = (0..count)
        .map(|_| {
            let x = rng.uniform() * npix as f64;
            let y = rng.uniform() * npix as f64;
            let flux = 5.0 + 50.0 * rng.uniform().powi(3);
            let sigma = 1.0 + 4.0 * rng.uniform();
            (y, x, flux, sigma)
        })
        .collect();
    sources.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut row = vec![0f32; npix];
    let mut bytes = vec![0u8; npix * 4];
    let mut first = 0;
    for y in 0..npix {
        let yf = y as f64;
        for v in row.iter_mut() {
            *v = rng.gaussian() as f32;
        }
        while first < sources.len() && sources[first].0 < yf - 25.0 {
            first += 1;
        }
        for &(sy, sx, flux, sigma) in sources[first..].iter().take_while(|s| s.0 <= yf + 25.0) {
            let reach = (5.0 * sigma).ceil() as i64;
            let dy2 = (yf - sy).powi(2);
            let lo = (sx as i64 - reach).max(0) as usize;
            let hi = ((sx as i64 + reach) as usize).min(npix - 1);
            for (x, v) in row.iter_mut().enumerate().take(hi + 1).skip(lo) {
                let r2 = (x as f64 - sx).powi(2) + dy2;
                *v += (flux * (-r2 / (2.0 * sigma * sigma)).exp()) as f32;
            }
        }
        for (b, v) in bytes.chunks_exact_mut(4).zip(&row) {
            b.copy_from_slice(&v.to_be_bytes());
        }
        out.write_all(&bytes)?;
    }
    let data_len = (npix * npix * 4) as u64;
    let pad = (2880 - data_len % 2880) % 2880;
    out.write_all(&vec![0u8; pad as usize])?;
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(())
}

/// `count` positions uniform in pixel space, a half cutout away from the edges.
fn write_catalog(
    path: &Path,
    wcs: &Wcs,
    npix: usize,
    count: usize,
    size: usize,
) -> anyhow::Result<()> {
    let mut rng = SplitMix64(2);
    let margin = size as f64 / 2.0 + 1.0;
    let span = npix as f64 - 2.0 * margin;
    let mut out = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(out, "id,ra,dec")?;
    for i in 0..count {
        let (x, y) = (margin + rng.uniform() * span, margin + rng.uniform() * span);
        let (ra, dec) = wcs
            .pixel_to_sky(x, y)
            .context("demo WCS cannot place a catalogue position")?;
        writeln!(out, "src{i:06},{ra:.10},{dec:.10}")?;
    }
    out.flush()?;
    Ok(())
}

/// A small deterministic generator (SplitMix64): the demo must not depend on a random crate.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
