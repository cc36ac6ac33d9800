//! Criterion benches of the cutout engine on a generated 4096² float32 TAN mosaic.
//!
//! The mosaic is written once per run into a temporary folder (64 MiB, warm in the page cache
//! from then on), so these figures are warm-cache, in-memory figures: the cost of planning,
//! copying and serialising, not of the disk. The comparison against other tools on a full-size
//! mosaic is `benches/compare_cutouts.py`.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use insitu_engine::bulk::{self, BulkOptions, Output};
use insitu_engine::catalog::{Catalog, Target};
use insitu_engine::cutout::{self, Center, CutoutRequest, Mode, Size, Window};
use insitu_engine::fits::header::BLOCK_LEN;
use insitu_engine::fits::{FitsFile, Header, Value};
use insitu_engine::wcs::Wcs;
use rayon::prelude::*;

/// Side of the generated mosaic (NAXIS1 = NAXIS2).
const NPIX: usize = 4096;
/// Cutout centres for the bulk benches: as many as a typical catalogue batch.
const BULK_COUNT: usize = 1000;
/// Keeps every centre far enough from the edges that a 256² cutout is entirely inside, as in
/// the comparison script, so the benches never take the fill path.
const MARGIN: f64 = 130.0;

/// The header of a Euclid-MER-like mosaic: TAN at 0.1″/pixel around (267.38, 65.50), CRPIX at
/// the centre, the same cards `testdata/gen_mosaic.py` writes.
fn mosaic_header(npix: usize) -> Header {
    use insitu_engine::fits::Card;
    let scale = 0.1 / 3600.0;
    let centre = (npix as f64 + 1.0) / 2.0;
    let n = npix as i64;
    let cards = [
        ("SIMPLE", Value::Logical(true)),
        ("BITPIX", Value::Integer(-32)),
        ("NAXIS", Value::Integer(2)),
        ("NAXIS1", Value::Integer(n)),
        ("NAXIS2", Value::Integer(n)),
        ("EXTEND", Value::Logical(true)),
        ("WCSAXES", Value::Integer(2)),
        ("CTYPE1", Value::String("RA---TAN".into())),
        ("CTYPE2", Value::String("DEC--TAN".into())),
        ("CUNIT1", Value::String("deg".into())),
        ("CUNIT2", Value::String("deg".into())),
        ("CRVAL1", Value::Real(267.38)),
        ("CRVAL2", Value::Real(65.50)),
        ("CRPIX1", Value::Real(centre)),
        ("CRPIX2", Value::Real(centre)),
        ("CD1_1", Value::Real(-scale)),
        ("CD1_2", Value::Real(0.0)),
        ("CD2_1", Value::Real(0.0)),
        ("CD2_2", Value::Real(scale)),
        ("RADESYS", Value::String("ICRS".into())),
        ("EQUINOX", Value::Real(2000.0)),
    ];
    let mut header = Header::default();
    for (keyword, value) in cards {
        header.push(Card::new(keyword, value, ""));
    }
    header
}

/// A small xorshift generator: deterministic pixels and positions without a rand dependency.
struct XorShift(u64);

impl XorShift {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes the mosaic: header, big-endian float32 noise (not constant, so no copy can be
/// elided), zero padding to a whole block (FITS 4.0 §3.3.2).
fn write_mosaic(path: &Path, npix: usize) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(&mosaic_header(npix).to_bytes())?;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut row = Vec::with_capacity(npix * 4);
    for _ in 0..npix {
        row.clear();
        for _ in 0..npix {
            let value = (rng.unit() as f32 - 0.5) * 2e-3;
            row.extend_from_slice(&value.to_be_bytes());
        }
        out.write_all(&row)?;
    }
    let data_len = npix * npix * 4;
    out.write_all(&vec![0u8; data_len.next_multiple_of(BLOCK_LEN) - data_len])?;
    out.flush()
}

/// `count` sky positions, uniform in pixel space inside the margin.
fn sky_positions(wcs: &Wcs, count: usize) -> Vec<(f64, f64)> {
    let mut rng = XorShift(42);
    let span = NPIX as f64 - 1.0 - 2.0 * MARGIN;
    (0..count)
        .map(|_| {
            let x = MARGIN + rng.unit() * span;
            let y = MARGIN + rng.unit() * span;
            wcs.pixel_to_sky(x, y)
                .expect("pixels inside a TAN mosaic have sky positions")
        })
        .collect()
}

fn sky_request(ra: f64, dec: f64, side: usize) -> CutoutRequest {
    CutoutRequest {
        center: Center::Sky { ra, dec },
        size: Size::Pixels(side),
        mode: Mode::Partial,
        planes: None,
    }
}

/// The mosaic on disk for the lifetime of the benches (the folder goes when this drops).
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary folder for the mosaic");
    let path = dir.path().join(format!("mosaic_{NPIX}.fits"));
    write_mosaic(&path, NPIX).expect("the mosaic is written to a fresh temporary folder");
    Fixture { _dir: dir, path }
}

fn benches(c: &mut Criterion) {
    let fixture = fixture();
    let file = FitsFile::open(&fixture.path).expect("the generated mosaic opens");
    let image = file
        .image(0)
        .expect("HDU 0 of the generated mosaic is an image");
    let wcs = Wcs::from_header(image.header()).expect("the generated mosaic has a TAN WCS");
    let centre = wcs
        .pixel_to_sky(NPIX as f64 / 2.0, NPIX as f64 / 2.0)
        .expect("the mosaic centre has a sky position");
    let positions = sky_positions(&wcs, BULK_COUNT);

    let mut single = c.benchmark_group("single");
    single.throughput(Throughput::Elements(1));
    for side in [64, 256] {
        let request = sky_request(centre.0, centre.1, side);
        single.bench_function(format!("sky_{side}_to_fits_bytes"), |b| {
            b.iter(|| {
                let cut = cutout::cut(&image, Some(&wcs), black_box(&request))
                    .expect("a centred cutout is inside the mosaic");
                black_box(cut.to_fits_bytes())
            })
        });
    }
    // The pixel copy alone: no WCS, no header, one reused buffer (rawcut's `raw` mode).
    let window = Window {
        x0: NPIX as i64 / 2 - 32,
        y0: NPIX as i64 / 2 - 32,
        width: 64,
        height: 64,
    };
    let mut stored = Vec::with_capacity(64 * 64 * 4);
    single.bench_function("pixel_window_copy_64", |b| {
        b.iter(|| {
            stored.clear();
            cutout::append_stored_window(&image, black_box(window), 0..1, &mut stored);
            black_box(&stored);
        })
    });
    // Big-endian → native f32: what the .npy output does per cutout (rawcut's `swap` mode).
    let mut physical = vec![0f32; 64 * 64];
    single.bench_function("window_physical_64", |b| {
        b.iter(|| {
            cutout::window_physical(&image, 0, black_box(window), &mut physical);
            black_box(&physical);
        })
    });
    single.finish();

    let mut bulk_group = c.benchmark_group("bulk_1000");
    bulk_group.throughput(Throughput::Elements(BULK_COUNT as u64));
    bulk_group.sample_size(10);
    // The per-request API used in a loop: plan, cut (header per cutout) and serialise, in
    // parallel, with the bytes kept in memory.
    bulk_group.bench_function("plan_cut_window_to_fits_bytes", |b| {
        b.iter(|| {
            let bytes: usize = positions
                .par_iter()
                .map(|&(ra, dec)| {
                    let (window, planes) =
                        cutout::plan(&image, Some(&wcs), &sky_request(ra, dec, 64))
                            .expect("every bench position is inside the mosaic");
                    cutout::cut_window(&image, window, planes)
                        .to_fits_bytes()
                        .len()
                })
                .sum();
            black_box(bytes)
        })
    });
    // The bulk path the CLI takes (header templates, per-thread buffers), into a
    // multi-extension file on tmpfs when there is one, so the disk stays out of it.
    let catalog = Catalog {
        targets: positions
            .iter()
            .enumerate()
            .map(|(i, &(ra, dec))| Target {
                row: i + 1,
                id: None,
                ra,
                dec,
                size: None,
            })
            .collect(),
        bad: Vec::new(),
    };
    let options = BulkOptions {
        size: Size::Pixels(64),
        mode: Mode::Partial,
        planes: None,
        skip_bad: false,
    };
    let shm = Path::new("/dev/shm");
    let sink_dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary folder for bulk output");
    for (name, output) in [
        (
            "bulk_run_mef",
            Output::Mef(sink_dir.path().join("cutouts.fits")),
        ),
        (
            "bulk_run_npy",
            Output::Npy(sink_dir.path().join("cutouts.npy")),
        ),
    ] {
        bulk_group.bench_function(name, |b| {
            b.iter(|| {
                bulk::run(&image, Some(&wcs), &catalog, &options, &output, &|_| {})
                    .expect("every bench position is inside the mosaic")
            })
        });
    }
    bulk_group.finish();
}

criterion_group!(cutout_benches, benches);
criterion_main!(cutout_benches);
