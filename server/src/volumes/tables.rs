//! The Arrow tables of the volumes: `<volume>.mosaic_product` (Euclid's `sedm.mosaic_product`
//! columns) and `ivoa.obscore` (ObsCore 1.1), with units, UCDs and descriptions as field
//! metadata (`unit`, `ucd`, `description`), which TAP_SCHEMA and VOTable output carry.

use std::collections::HashMap;
use std::sync::Arc;

use insitu_adql::arrow::array::{
    ArrayRef, Float64Array, Float64Builder, Int16Builder, Int32Array, Int64Array, Int64Builder,
    RecordBatch, StringArray, StringBuilder,
};
use insitu_adql::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{ImageRow, Volume};

fn field(name: &str, kind: DataType, nullable: bool, unit: &str, ucd: &str, text: &str) -> Field {
    let mut meta = HashMap::new();
    for (k, v) in [("unit", unit), ("ucd", ucd), ("description", text)] {
        if !v.is_empty() {
            meta.insert(k.to_string(), v.to_string());
        }
    }
    Field::new(name, kind, nullable).with_metadata(meta)
}

/// `f` with an ObsCore 1.1 utype (Table 5), by which clients such as pyvo find the access
/// columns.
fn with_utype(f: Field, utype: &str) -> Field {
    let mut meta = f.metadata().clone();
    meta.insert("utype".to_string(), utype.to_string());
    f.with_metadata(meta)
}

/// The schema of `<volume>.mosaic_product`, exactly the columns issue 5 names.
pub fn mosaic_product_schema() -> SchemaRef {
    use DataType::{Float64, Int16, Int64, Utf8};
    Arc::new(Schema::new(vec![
        field(
            "tile_index",
            Int64,
            true,
            "",
            "meta.id",
            "Tile identifier: TILEID, or the digits after TILE in the file name",
        ),
        field(
            "ra",
            Float64,
            false,
            "deg",
            "pos.eq.ra;meta.main",
            "ICRS right ascension of the image centre",
        ),
        field(
            "dec",
            Float64,
            false,
            "deg",
            "pos.eq.dec;meta.main",
            "ICRS declination of the image centre",
        ),
        field(
            "s_region",
            Utf8,
            false,
            "deg",
            "pos.outline;obs.field",
            "Footprint: the centres of the four corner pixels, as an STC-S POLYGON ICRS string",
        ),
        field(
            "filter_name",
            Utf8,
            true,
            "",
            "instr.filter",
            "Band: the FILTER (or BAND) keyword",
        ),
        field(
            "instrument_name",
            Utf8,
            true,
            "",
            "meta.id;instr",
            "The INSTRUME keyword",
        ),
        field(
            "datalabs_path",
            Utf8,
            false,
            "",
            "meta.ref",
            "Folder of the file, relative to the volume and prefixed with the volume name",
        ),
        field(
            "file_name",
            Utf8,
            false,
            "",
            "meta.id;meta.file",
            "File name",
        ),
        field(
            "naxis1",
            Int64,
            false,
            "pix",
            "meta.number",
            "Image width (NAXIS1)",
        ),
        field(
            "naxis2",
            Int64,
            false,
            "pix",
            "meta.number",
            "Image height (NAXIS2)",
        ),
        field(
            "bitpix",
            Int16,
            false,
            "",
            "meta.code",
            "FITS BITPIX of the image",
        ),
    ]))
}

/// The tile index of one volume.
pub fn mosaic_product(
    volume: &Volume,
) -> Result<(SchemaRef, RecordBatch), insitu_adql::arrow::error::ArrowError> {
    let rows = &volume.images;
    let mut tile = Int64Builder::new();
    let (mut ra, mut dec) = (Float64Builder::new(), Float64Builder::new());
    let mut region = StringBuilder::new();
    let (mut filter, mut instrument) = (StringBuilder::new(), StringBuilder::new());
    let (mut folder, mut file) = (StringBuilder::new(), StringBuilder::new());
    let (mut n1, mut n2) = (Int64Builder::new(), Int64Builder::new());
    let mut bitpix = Int16Builder::new();
    for row in rows {
        tile.append_option(row.tile_index);
        ra.append_value(row.ra);
        dec.append_value(row.dec);
        region.append_value(row.s_region());
        filter.append_option(row.filter_name.as_deref());
        instrument.append_option(row.instrument_name.as_deref());
        folder.append_value(row.datalabs_path(&volume.name));
        file.append_value(row.file_name());
        n1.append_value(row.naxis1);
        n2.append_value(row.naxis2);
        // BITPIX is one of 8, 16, 32, 64, -32, -64 (FITS 4.0 §4.4.1.1) in any readable image.
        bitpix.append_value(i16::try_from(row.bitpix).unwrap_or(0));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(tile.finish()),
        Arc::new(ra.finish()),
        Arc::new(dec.finish()),
        Arc::new(region.finish()),
        Arc::new(filter.finish()),
        Arc::new(instrument.finish()),
        Arc::new(folder.finish()),
        Arc::new(file.finish()),
        Arc::new(n1.finish()),
        Arc::new(n2.finish()),
        Arc::new(bitpix.finish()),
    ];
    let schema = mosaic_product_schema();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((schema, batch))
}

/// The schema of `ivoa.obscore`: the ObsCore 1.1 mandatory columns (ObsCore 1.1 §3.3,
/// Table 5), with its units and UCDs.
pub fn obscore_schema() -> SchemaRef {
    use DataType::{Float64, Int32, Int64, Utf8};
    Arc::new(Schema::new(vec![
        field(
            "dataproduct_type",
            Utf8,
            false,
            "",
            "meta.code.class",
            "Data product type: image",
        ),
        field(
            "calib_level",
            Int32,
            false,
            "",
            "meta.code;obs.calib",
            "Calibration level: 2, calibrated science images (not read from the files)",
        ),
        field(
            "obs_collection",
            Utf8,
            false,
            "",
            "meta.id",
            "The volume holding the image",
        ),
        field(
            "obs_id",
            Utf8,
            false,
            "",
            "meta.id",
            "Path of the file under its volume, without the FITS ending",
        ),
        field(
            "obs_publisher_did",
            Utf8,
            false,
            "",
            "meta.ref.ivoid",
            "ivo://insitu/<volume>?<path under the volume>",
        ),
        with_utype(
            field(
                "access_url",
                Utf8,
                true,
                "",
                "meta.ref.url",
                "DataLink links of the image (its file and SODA cutouts); null when the \
                 service has no configured base_url",
            ),
            "obscore:Access.Reference",
        ),
        with_utype(
            field(
                "access_format",
                Utf8,
                false,
                "",
                "meta.code.mime",
                "Media type at access_url: a DataLink document; application/fits when there \
                 is no access_url",
            ),
            "obscore:Access.Format",
        ),
        field(
            "access_estsize",
            Int64,
            false,
            "kbyte",
            "phys.size;meta.file",
            "File size",
        ),
        field("target_name", Utf8, true, "", "meta.id;src", "Not known"),
        field(
            "s_ra",
            Float64,
            false,
            "deg",
            "pos.eq.ra",
            "ICRS right ascension of the image centre",
        ),
        field(
            "s_dec",
            Float64,
            false,
            "deg",
            "pos.eq.dec",
            "ICRS declination of the image centre",
        ),
        field(
            "s_fov",
            Float64,
            false,
            "deg",
            "phys.angSize;instr.fov",
            "Diameter of the circle around the centre holding the whole image",
        ),
        field(
            "s_region",
            Utf8,
            false,
            "deg",
            "pos.outline;obs.field",
            "Footprint: the centres of the four corner pixels, as an STC-S POLYGON ICRS string",
        ),
        field(
            "s_resolution",
            Float64,
            false,
            "arcsec",
            "pos.angResolution",
            "Pixel scale (geometric mean of both axes); the PSF is not known",
        ),
        field(
            "s_xel1",
            Int64,
            false,
            "",
            "meta.number",
            "Pixels along axis 1",
        ),
        field(
            "s_xel2",
            Int64,
            false,
            "",
            "meta.number",
            "Pixels along axis 2",
        ),
        field(
            "t_min",
            Float64,
            true,
            "d",
            "time.start;obs.exposure",
            "Not known",
        ),
        field(
            "t_max",
            Float64,
            true,
            "d",
            "time.end;obs.exposure",
            "Not known",
        ),
        field(
            "t_exptime",
            Float64,
            true,
            "s",
            "time.duration;obs.exposure",
            "Not known",
        ),
        field(
            "t_resolution",
            Float64,
            true,
            "s",
            "time.resolution",
            "Not known",
        ),
        field("em_min", Float64, true, "m", "em.wl;stat.min", "Not known"),
        field("em_max", Float64, true, "m", "em.wl;stat.max", "Not known"),
        field(
            "em_res_power",
            Float64,
            true,
            "",
            "spect.resolution",
            "Not known",
        ),
        field(
            "em_xel",
            Int64,
            true,
            "",
            "meta.number",
            "1 for a 2-D image, else not known",
        ),
        field(
            "t_xel",
            Int64,
            true,
            "",
            "meta.number",
            "1 for a 2-D image, else not known",
        ),
        field(
            "pol_xel",
            Int64,
            true,
            "",
            "meta.number",
            "1 for a 2-D image, else not known",
        ),
        field("o_ucd", Utf8, false, "", "meta.ucd", "phot.flux"),
        field(
            "pol_states",
            Utf8,
            true,
            "",
            "meta.code;phys.polarization",
            "Not known",
        ),
        field(
            "facility_name",
            Utf8,
            true,
            "",
            "meta.id;instr.tel",
            "The TELESCOP keyword",
        ),
        field(
            "instrument_name",
            Utf8,
            true,
            "",
            "meta.id;instr",
            "The INSTRUME keyword",
        ),
    ]))
}

/// The path without its FITS ending (`.fits`, `.fit`, `.fits.gz`, `.fits.fz`).
fn obs_id(row: &ImageRow) -> String {
    let path = row.relative_path.as_str();
    let lower = path.to_ascii_lowercase();
    for ending in [".fits.gz", ".fits.fz", ".fits", ".fit"] {
        if lower.ends_with(ending) {
            return path[..path.len() - ending.len()].to_string();
        }
    }
    path.to_string()
}

/// One ObsCore row per image of every volume; with the service's public `base_url`,
/// `access_url` is the image's DataLink `{links}` URL (DataLink 1.1 §3.1).
pub fn obscore(
    volumes: &[Volume],
    base_url: Option<&str>,
) -> Result<(SchemaRef, RecordBatch), insitu_adql::arrow::error::ArrowError> {
    let rows: Vec<(&str, &ImageRow)> = volumes
        .iter()
        .flat_map(|v| v.images.iter().map(move |r| (v.name.as_str(), r)))
        .collect();
    let n = rows.len();
    let text = |f: &dyn Fn(&str, &ImageRow) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(|(v, r)| f(v, r))))
    };
    let int = |f: &dyn Fn(&ImageRow) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter(rows.iter().map(|(_, r)| f(r))))
    };
    let real = |f: &dyn Fn(&ImageRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, r)| f(r)),
        ))
    };
    let fixed = |value: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, n)))
    };
    let no_text = || -> ArrayRef { Arc::new(StringArray::new_null(n)) };
    let no_real = || -> ArrayRef { Arc::new(Float64Array::new_null(n)) };
    // ObsCore 1.1 §4.20-4.22: a 2-D image has one element along the spectral, time and
    // polarisation axes; for cubes the axis types are not read, so they stay unknown.
    let one_if_flat = || int(&|r| (r.naxis == 2).then_some(1));
    let columns: Vec<ArrayRef> = vec![
        fixed("image"),
        Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(2, n))),
        text(&|v, _| Some(v.to_string())),
        text(&|_, r| Some(obs_id(r))),
        text(&|v, r| Some(format!("ivo://insitu/{v}?{}", r.relative_path))),
        match base_url {
            Some(base) => text(&|v, r| {
                let did = format!("ivo://insitu/{v}?{}", r.relative_path);
                Some(crate::soda::datalink::links_url(
                    base.trim_end_matches('/'),
                    &did,
                ))
            }),
            None => no_text(),
        },
        fixed(if base_url.is_some() {
            crate::soda::datalink::DATALINK_MIME
        } else {
            "application/fits"
        }),
        int(&|r| i64::try_from(r.size.div_ceil(1024)).ok()),
        no_text(),
        real(&|r| r.ra),
        real(&|r| r.dec),
        real(&|r| r.fov),
        text(&|_, r| Some(r.s_region())),
        real(&|r| r.pixel_scale),
        int(&|r| Some(r.naxis1)),
        int(&|r| Some(r.naxis2)),
        no_real(),
        no_real(),
        no_real(),
        no_real(),
        no_real(),
        no_real(),
        no_real(),
        one_if_flat(),
        one_if_flat(),
        one_if_flat(),
        fixed("phot.flux"),
        no_text(),
        text(&|_, r| r.facility_name.clone()),
        text(&|_, r| r.instrument_name.clone()),
    ];
    let schema = obscore_schema();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((schema, batch))
}
