//! The demo tables `insitu serve` answers with when no table is given: a Euclid-MER-like
//! source catalogue and a Gaia-like star table on the same field, written once as FITS binary
//! tables into a cache folder (deterministic, ~7 MB), so a TAP client has something to
//! cone-search and cross-match straight away.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use insitu_adql::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
};
use insitu_adql::arrow::datatypes::{DataType, Field, Schema};
use insitu_adql::arrow::record_batch::RecordBatch;
use insitu_engine::partial_file::PartialFile;

use crate::demo::SplitMix64;

/// The demo field: the Euclid Deep Field North's centre, 0.5° radius.
const CENTER: (f64, f64) = (269.73, 66.02);
const RADIUS_DEG: f64 = 0.5;
const SOURCES: usize = 100_000;
const STARS: usize = 10_000;
/// Version of the generator: bump it when the tables change, so old caches are not reused.
const VERSION: u32 = 1;

/// (SCHEMA.TABLE, file) of the demo tables, written under `dir` if missing.
pub fn ensure(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let dir = dir.join(format!("demo-v{VERSION}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (sources, stars) = generate();
    let mut out = Vec::new();
    for (name, file, batch) in [
        ("demo.mer_catalogue", "mer_catalogue.fits", sources),
        ("demo.gaia_source", "gaia_source.fits", stars),
    ] {
        let path = dir.join(file);
        if !path.exists() {
            let partial = PartialFile::create(&path)?;
            insitu_engine::fits::write_bintable(
                &mut std::io::BufWriter::new(partial.file()),
                &batch.schema(),
                std::slice::from_ref(&batch),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            partial.commit()?;
        }
        out.push((name.to_string(), path));
    }
    Ok(out)
}

fn field(
    name: &str,
    data_type: DataType,
    nullable: bool,
    unit: &str,
    ucd: &str,
    description: &str,
) -> Field {
    let mut meta = std::collections::HashMap::new();
    for (k, v) in [("unit", unit), ("ucd", ucd), ("description", description)] {
        if !v.is_empty() {
            meta.insert(k.to_string(), v.to_string());
        }
    }
    Field::new(name, data_type, nullable).with_metadata(meta)
}

/// A position uniform in the demo disc.
fn position(rng: &mut SplitMix64) -> (f64, f64) {
    let r = RADIUS_DEG * rng.uniform().sqrt();
    let angle = std::f64::consts::TAU * rng.uniform();
    let dec = CENTER.1 + r * angle.sin();
    let ra = (CENTER.0 + r * angle.cos() / dec.to_radians().cos()).rem_euclid(360.0);
    (ra, dec)
}

/// The MER-like catalogue and the Gaia-like stars (a quarter of the stars are MER point
/// sources, offset by up to 0.1″, so a 1″ cross-match finds them).
fn generate() -> (RecordBatch, RecordBatch) {
    let mut rng = SplitMix64(20_261_125);
    let mut ra = Vec::with_capacity(SOURCES);
    let mut dec = Vec::with_capacity(SOURCES);
    let mut flux = Vec::with_capacity(SOURCES);
    let mut mag = Vec::with_capacity(SOURCES);
    let mut point_like = Vec::with_capacity(SOURCES);
    let mut area = Vec::with_capacity(SOURCES);
    let mut spurious = Vec::with_capacity(SOURCES);
    for _ in 0..SOURCES {
        let (a, d) = position(&mut rng);
        ra.push(a);
        dec.push(d);
        // A power-law flux distribution, uJy; negative fluxes (noise) have no magnitude.
        let f = 0.05 * (1.0 - rng.uniform()).powf(-1.5) + 0.02 * rng.gaussian();
        flux.push(f as f32);
        mag.push((f > 0.0).then(|| (23.9 - 2.5 * f.log10()) as f32));
        point_like.push(rng.uniform() < 0.2);
        area.push(5 + (rng.uniform() * 200.0) as i32);
        spurious.push(rng.uniform() < 0.01);
    }
    let ids: Vec<i64> = (0..SOURCES as i64)
        .map(|i| 2_697_300_000_000_000 + i)
        .collect();
    let schema = Arc::new(Schema::new(vec![
        field(
            "object_id",
            DataType::Int64,
            false,
            "",
            "meta.id;meta.main",
            "Unique source identifier",
        ),
        field(
            "right_ascension",
            DataType::Float64,
            false,
            "deg",
            "pos.eq.ra;meta.main",
            "Right ascension (ICRS)",
        ),
        field(
            "declination",
            DataType::Float64,
            false,
            "deg",
            "pos.eq.dec;meta.main",
            "Declination (ICRS)",
        ),
        field(
            "flux_vis_psf",
            DataType::Float32,
            false,
            "uJy",
            "phot.flux;em.opt",
            "VIS flux from PSF fitting",
        ),
        field(
            "mag_vis",
            DataType::Float32,
            true,
            "mag",
            "phot.mag;em.opt",
            "VIS AB magnitude (null when the flux is not positive)",
        ),
        field(
            "point_like",
            DataType::Boolean,
            false,
            "",
            "src.class.starGalaxy",
            "Whether the source is point-like",
        ),
        field(
            "segmentation_area",
            DataType::Int32,
            false,
            "pix",
            "phys.area",
            "Pixels in the source's segmentation",
        ),
        field(
            "spurious_flag",
            DataType::Boolean,
            false,
            "",
            "meta.code",
            "Likely spurious detection",
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Float64Array::from(ra.clone())),
        Arc::new(Float64Array::from(dec.clone())),
        Arc::new(Float32Array::from(flux)),
        Arc::new(Float32Array::from(mag)),
        Arc::new(BooleanArray::from(point_like)),
        Arc::new(Int32Array::from(area)),
        Arc::new(BooleanArray::from(spurious)),
    ];
    let sources = RecordBatch::try_new(schema, columns).expect("columns match the schema");

    let mut s_id = Vec::with_capacity(STARS);
    let mut s_ra = Vec::with_capacity(STARS);
    let mut s_dec = Vec::with_capacity(STARS);
    let mut g = Vec::with_capacity(STARS);
    let mut parallax = Vec::with_capacity(STARS);
    for k in 0..STARS {
        let (a, d) = if k % 4 == 0 {
            // A MER source, offset by up to 0.1″.
            let i = (rng.next() % SOURCES as u64) as usize;
            let off = 0.1 / 3600.0 * rng.uniform();
            (ra[i] + off / dec[i].to_radians().cos(), dec[i])
        } else {
            position(&mut rng)
        };
        s_id.push(1_000_000_000 + k as i64 * 7);
        s_ra.push(a.rem_euclid(360.0));
        s_dec.push(d);
        g.push((12.0 + 9.0 * rng.uniform().sqrt()) as f32);
        parallax.push((rng.uniform() < 0.8).then(|| 0.3 + 2.0 * rng.gaussian().abs()));
    }
    let schema = Arc::new(Schema::new(vec![
        field(
            "source_id",
            DataType::Int64,
            false,
            "",
            "meta.id;meta.main",
            "Source identifier",
        ),
        field(
            "ra",
            DataType::Float64,
            false,
            "deg",
            "pos.eq.ra;meta.main",
            "Right ascension (ICRS)",
        ),
        field(
            "dec",
            DataType::Float64,
            false,
            "deg",
            "pos.eq.dec;meta.main",
            "Declination (ICRS)",
        ),
        field(
            "phot_g_mean_mag",
            DataType::Float32,
            false,
            "mag",
            "phot.mag;em.opt",
            "G-band mean magnitude",
        ),
        field(
            "parallax",
            DataType::Float64,
            true,
            "mas",
            "pos.parallax",
            "Parallax (null for 2-parameter solutions)",
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(s_id)),
        Arc::new(Float64Array::from(s_ra)),
        Arc::new(Float64Array::from(s_dec)),
        Arc::new(Float32Array::from(g)),
        Arc::new(Float64Array::from(parallax)),
    ];
    let stars = RecordBatch::try_new(schema, columns).expect("columns match the schema");
    (sources, stars)
}
