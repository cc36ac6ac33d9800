//! ADQL against known answers: golden cases in `cases.slt` (query and expected table, the
//! DataFusion sqllogictest style; regenerate with `INSITU_BLESS=1` and review the diff), and
//! cone searches against a brute-force evaluation, at the poles and across RA = 0/360.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use insitu_adql::AdqlEngine;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// 2,000 positions spread over the sphere, with clusters at both poles and across RA = 0.
fn catalogue() -> Vec<(i64, f64, f64)> {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..2000)
        .map(|i| {
            let (ra, dec) = match i % 4 {
                0 => (next() * 360.0, (2.0 * next() - 1.0).asin().to_degrees()),
                1 => (next() * 360.0, 89.0 + next()),
                2 => (next() * 360.0, -89.0 - next()),
                _ => {
                    let ra = ((next() - 0.5) * 4.0).rem_euclid(360.0);
                    (ra, (next() - 0.5) * 4.0)
                }
            };
            (i as i64, ra, dec)
        })
        .collect()
}

/// The catalogue as a FITS binary table (`id` K, `ra` D, `dec` D), written by hand.
fn write_fits_catalogue(path: &Path) {
    use insitu_engine::fits::{Card, Header, Value};
    let rows = catalogue();
    let mut h = Header::default();
    for (k, v) in [
        ("SIMPLE", Value::Logical(true)),
        ("BITPIX", Value::Integer(8)),
        ("NAXIS", Value::Integer(0)),
        ("EXTEND", Value::Logical(true)),
    ] {
        h.push(Card::new(k, v, ""));
    }
    let mut bytes = h.to_bytes();
    let mut t = Header::default();
    for (k, v) in [
        ("XTENSION", Value::String("BINTABLE".into())),
        ("BITPIX", Value::Integer(8)),
        ("NAXIS", Value::Integer(2)),
        ("NAXIS1", Value::Integer(24)),
        ("NAXIS2", Value::Integer(rows.len() as i64)),
        ("PCOUNT", Value::Integer(0)),
        ("GCOUNT", Value::Integer(1)),
        ("TFIELDS", Value::Integer(3)),
        ("TTYPE1", Value::String("id".into())),
        ("TFORM1", Value::String("K".into())),
        ("TTYPE2", Value::String("ra".into())),
        ("TFORM2", Value::String("D".into())),
        ("TTYPE3", Value::String("dec".into())),
        ("TFORM3", Value::String("D".into())),
    ] {
        t.push(Card::new(k, v, ""));
    }
    bytes.extend(t.to_bytes());
    for (id, ra, dec) in &rows {
        bytes.extend(id.to_be_bytes());
        bytes.extend(ra.to_be_bytes());
        bytes.extend(dec.to_be_bytes());
    }
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    std::fs::write(path, bytes).unwrap();
}

async fn engine(dir: &Path) -> AdqlEngine {
    let fits = dir.join("cat.fits");
    write_fits_catalogue(&fits);
    let csv = dir.join("cat.csv");
    let mut text = String::from("id,ra,dec\n");
    for (id, ra, dec) in catalogue() {
        writeln!(text, "{id},{ra:.12},{dec:.12}").unwrap();
    }
    std::fs::write(&csv, text).unwrap();
    let engine = AdqlEngine::new();
    engine.register("test.cat", &csv).await.unwrap();
    // The same rows in a FITS table, where cone searches use the HEALPix index.
    engine.register("test.fcat", &fits).await.unwrap();
    engine
        .register("test.types", &repo().join("testdata/fits/table_types.fits"))
        .await
        .unwrap();
    engine
}

/// Brute force with unit vectors: independent of the UDF's haversine.
fn within(ra: f64, dec: f64, ra0: f64, dec0: f64, r: f64) -> bool {
    let v = |ra: f64, dec: f64| {
        let (ra, dec) = (ra.to_radians(), dec.to_radians());
        [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
    };
    let (a, b) = (v(ra, dec), v(ra0, dec0));
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    dot >= r.to_radians().cos()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn cone_searches_equal_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let cat = catalogue();
    // Away from the edge of each cone by more than rounding, so both sides agree exactly.
    for (ra0, dec0, r) in [
        (0.0, 0.0, 1.5),
        (359.9, 0.5, 1.0),
        (123.0, 89.5, 1.2),
        (300.0, -90.0, 0.8),
        (45.0, 30.0, 20.0),
    ] {
        let expected: Vec<i64> = cat
            .iter()
            .filter(|(_, ra, dec)| within(*ra, *dec, ra0, dec0, r))
            .map(|(id, _, _)| *id)
            .collect();
        assert!(
            !expected.is_empty(),
            "cone ({ra0}, {dec0}, {r}) holds no source"
        );
        let outside: Vec<i64> = cat
            .iter()
            .map(|c| c.0)
            .filter(|id| expected.binary_search(id).is_err())
            .collect();
        for table in ["test.cat", "test.fcat"] {
            for form in [
                format!("SELECT id FROM {table} WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0}, {dec0}, {r}))"),
                format!("SELECT id FROM {table} WHERE CONTAINS(POINT(ra, dec), CIRCLE({ra0}, {dec0}, {r})) = 1 AND id >= 0"),
                format!("SELECT id FROM {} WHERE DISTANCE(POINT(ra, dec), POINT({ra0}, {dec0})) <= {r}", table.to_uppercase()),
                format!("select ID from {table} where {r} >= distance({ra0}, {dec0}, ra, dec)"),
            ] {
                let got = ids(&engine.query(&form).await.unwrap());
                assert_eq!(got, expected, "{form}");
            }
            // The complements must not be pruned to the cone.
            for form in [
                format!("SELECT id FROM {table} WHERE 0 = CONTAINS(POINT(ra, dec), CIRCLE({ra0}, {dec0}, {r}))"),
                format!("SELECT id FROM {table} WHERE DISTANCE(ra, dec, {ra0}, {dec0}) > {r}"),
            ] {
                let got = ids(&engine.query(&form).await.unwrap());
                assert_eq!(got, outside, "{form}");
            }
        }
    }
}

fn pairs(batches: &[RecordBatch]) -> Vec<(Option<i64>, Option<i64>)> {
    let mut got: Vec<(Option<i64>, Option<i64>)> = batches
        .iter()
        .flat_map(|b| {
            let x: Vec<_> = b.column(0).as_primitive::<Int64Type>().iter().collect();
            let y: Vec<_> = b.column(1).as_primitive::<Int64Type>().iter().collect();
            x.into_iter().zip(y)
        })
        .collect();
    got.sort();
    got
}

#[tokio::test]
async fn cone_index_is_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let fits = dir.path().join("cat.fits");
    write_fits_catalogue(&fits);
    let cache = dir.path().join("cache");
    let q = "SELECT id FROM c.t WHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(0, 0, 1.5))";
    let run = || async {
        let engine = AdqlEngine::new().with_index_cache(&cache);
        engine.register("c.t", &fits).await.unwrap();
        ids(&engine.query(q).await.unwrap())
    };
    let first = run().await;
    assert!(!first.is_empty());
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    // A new session reads the index instead of building and writing it again.
    assert_eq!(run().await, first);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written
    );
    // A changed file gets an index of its own; the data directory is never written to.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_fits_catalogue(&fits);
    assert_eq!(run().await, first);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    let mut data: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    data.sort();
    assert_eq!(data, ["cache", "cat.fits"]);
}

#[tokio::test]
async fn uploaded_tables_cross_match_and_stay_out_of_tap_schema() {
    use datafusion::arrow::array::{Float64Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let cat = catalogue();
    // The user's targets: a few catalogue positions nudged by 1″, and one far from all.
    // Around RA = 0 (i % 4 == 3), near the north (1) and south (2) poles, and anywhere (0).
    let picks = [3usize, 7, 11, 1001, 1002, 1503, 1600];
    let nudge = 1.0 / 3600.0;
    let schema = Arc::new(Schema::new(vec![
        Field::new("tid", DataType::Int64, false),
        Field::new("ra", DataType::Float64, false),
        Field::new("dec", DataType::Float64, false),
    ]));
    let mut tid: Vec<i64> = picks.iter().map(|&i| 100 + i as i64).collect();
    let mut ra: Vec<f64> = picks.iter().map(|&i| cat[i].1).collect();
    let mut dec: Vec<f64> = picks
        .iter()
        .map(|&i| (cat[i].2 + nudge).min(90.0))
        .collect();
    tid.push(999);
    ra.push(180.0);
    dec.push(45.0);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(tid)),
            Arc::new(Float64Array::from(ra)),
            Arc::new(Float64Array::from(dec)),
        ],
    )
    .unwrap();
    engine.register_upload("Mine", schema, vec![batch]).unwrap();
    let r = 2.0 / 3600.0;
    let q = format!("SELECT u.tid, c.id FROM TAP_UPLOAD.mine AS u JOIN test.fcat AS c ON DISTANCE(u.ra, u.dec, c.ra, c.dec) < {r}");
    let mut expected: Vec<(Option<i64>, Option<i64>)> = Vec::new();
    for (k, &i) in picks.iter().enumerate() {
        let (a, d) = (cat[i].1, (cat[i].2 + nudge).min(90.0));
        for c in &cat {
            if within(a, d, c.1, c.2, r) {
                expected.push((Some(100 + picks[k] as i64), Some(c.0)));
            }
        }
    }
    expected.sort();
    assert!(expected.len() >= picks.len());
    assert_eq!(pairs(&engine.query(&q).await.unwrap()), expected);
    // A handful of targets against the FITS table: the scan reads only rows near them.
    let sql = insitu_adql::rewrite::to_datafusion_sql(&q).unwrap();
    let explained = engine.explain(&sql).await.unwrap();
    assert!(
        explained.contains("or those near the cross-match's build side"),
        "{explained}"
    );
    // A left join keeps the target with no counterpart, padded with a null.
    let left = q.replace(" JOIN ", " LEFT OUTER JOIN ");
    let mut expected_left = expected.clone();
    expected_left.push((Some(999), None));
    expected_left.sort();
    assert_eq!(pairs(&engine.query(&left).await.unwrap()), expected_left);
    let listed = engine
        .query("SELECT COUNT(*) AS n FROM tap_schema.tables WHERE schema_name = 'tap_upload'")
        .await
        .unwrap();
    assert_eq!(listed[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    assert!(engine
        .register_upload("bad name;", listed[0].schema(), vec![])
        .is_err());

    // Per-query sessions: each sees its own TAP_UPLOAD.mine and the mission tables; the
    // engine and the other session do not see it.
    let one_row = |tid: i64| {
        let s = Arc::new(Schema::new(vec![Field::new("tid", DataType::Int64, false)]));
        let b =
            RecordBatch::try_new(s.clone(), vec![Arc::new(Int64Array::from(vec![tid]))]).unwrap();
        (s, b)
    };
    let (s1, b1) = one_row(1);
    let (s2, b2) = one_row(2);
    let first = engine
        .with_uploads(vec![("other".into(), s1, vec![b1])])
        .unwrap();
    let second = engine
        .with_uploads(vec![("other".into(), s2, vec![b2])])
        .unwrap();
    let q = "SELECT u.tid, COUNT(*) AS n FROM tap_upload.other AS u, test.fcat AS c GROUP BY u.tid";
    for (session, tid) in [(&first, 1), (&second, 2)] {
        let got = session.query(q).await.unwrap();
        assert_eq!(got[0].column(0).as_primitive::<Int64Type>().value(0), tid);
        assert_eq!(
            got[0].column(1).as_primitive::<Int64Type>().value(0),
            cat.len() as i64
        );
    }
    assert!(
        engine.query(q).await.is_err(),
        "an upload leaked into the engine"
    );

    // Derived tables registered from memory are queryable and listed in TAP_SCHEMA.
    let (s3, b3) = one_row(7);
    engine
        .register_batches("Derived.Tiles", s3, vec![b3])
        .unwrap();
    let got = engine
        .query("SELECT t.tid, c.table_name FROM derived.tiles AS t, tap_schema.columns AS c WHERE c.table_name = 'derived.tiles'")
        .await
        .unwrap();
    assert_eq!(got[0].num_rows(), 1);
    assert_eq!(got[0].column(0).as_primitive::<Int64Type>().value(0), 7);
}

#[tokio::test]
async fn crossmatch_join_equals_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let cat = catalogue();
    let r = 0.02;
    let mut expected = Vec::new();
    for a in &cat {
        for b in &cat {
            if a.0 < b.0 && within(a.1, a.2, b.1, b.2, r) {
                expected.push((Some(a.0), Some(b.0)));
            }
        }
    }
    assert!(expected.len() > 50, "{} pairs", expected.len());
    for form in [
        format!("SELECT a.id, b.id FROM test.cat AS a JOIN test.cat AS b ON DISTANCE(a.ra, a.dec, b.ra, b.dec) < {r} WHERE a.id < b.id"),
        format!("SELECT a.id, b.id FROM test.cat a JOIN test.fcat b ON 1 = CONTAINS(POINT('ICRS', a.ra, a.dec), CIRCLE('ICRS', b.ra, b.dec, {r})) WHERE a.id < b.id"),
        format!("SELECT a.id, b.id FROM test.fcat a, test.cat b WHERE {r} > DISTANCE(POINT(b.ra, b.dec), POINT(a.ra, a.dec)) AND a.id < b.id"),
        format!("SELECT a.id, b.id FROM test.fcat a JOIN test.fcat b ON CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, {r})) = 1 AND a.id < b.id"),
    ] {
        let plan = engine.query(&format!("EXPLAIN {form}")).await;
        // EXPLAIN is not ADQL: run the plan check on DataFusion's SQL directly.
        let sql = insitu_adql::rewrite::to_datafusion_sql(&form).unwrap();
        let explained = engine.explain(&sql).await.unwrap();
        assert!(plan.is_err(), "EXPLAIN must not pass as ADQL");
        assert!(explained.contains("SpatialJoinExec"), "{form}\n{explained}");
        assert_eq!(pairs(&engine.query(&form).await.unwrap()), expected, "{form}");
    }
    // Outer joins keep unmatched rows, padded with nulls, on either side.
    let subset = |a: &(i64, f64, f64)| a.0 % 3 == 0;
    let mut left = Vec::new();
    for a in cat.iter().filter(|a| subset(a)) {
        let matches: Vec<_> = cat
            .iter()
            .filter(|b| b.0 != a.0 && within(a.1, a.2, b.1, b.2, r))
            .map(|b| (Some(a.0), Some(b.0)))
            .collect();
        if matches.is_empty() {
            left.push((Some(a.0), None));
        }
        left.extend(matches);
    }
    left.sort();
    assert!(left.iter().any(|p| p.1.is_none()) && left.iter().any(|p| p.1.is_some()));
    let filtered = "(SELECT * FROM test.fcat WHERE MOD(id, 3) = 0)";
    for form in [
        format!("SELECT a.id, b.id FROM {filtered} AS a LEFT OUTER JOIN test.cat AS b ON DISTANCE(a.ra, a.dec, b.ra, b.dec) <= {r} AND a.id <> b.id"),
        format!("SELECT a.id, b.id FROM {filtered} AS a FULL OUTER JOIN test.cat AS b ON DISTANCE(a.ra, a.dec, b.ra, b.dec) <= {r} AND a.id <> b.id WHERE a.id IS NOT NULL"),
    ] {
        assert_eq!(pairs(&engine.query(&form).await.unwrap()), left, "{form}");
    }
    let swapped: Vec<_> = left.iter().map(|&(a, b)| (b, a)).collect::<Vec<_>>();
    let mut swapped = swapped;
    swapped.sort();
    let form = format!("SELECT b.id, a.id FROM test.cat AS b RIGHT JOIN {filtered} AS a ON 1 = CONTAINS(POINT(a.ra, a.dec), CIRCLE(b.ra, b.dec, {r})) AND a.id <> b.id");
    assert_eq!(
        pairs(&engine.query(&form).await.unwrap()),
        swapped,
        "{form}"
    );
}

/// Gnomonic (tangent-plane) coordinates of (ra, dec) about (ra0, dec0), in radians' tangent
/// units; `None` on the far hemisphere. Great circles are straight lines in this projection.
fn gnomonic(ra: f64, dec: f64, ra0: f64, dec0: f64) -> Option<(f64, f64)> {
    let (a, d, a0, d0) = (
        ra.to_radians(),
        dec.to_radians(),
        ra0.to_radians(),
        dec0.to_radians(),
    );
    let cos_c = d0.sin() * d.sin() + d0.cos() * d.cos() * (a - a0).cos();
    (cos_c > 0.0).then(|| {
        let x = d.cos() * (a - a0).sin() / cos_c;
        let y = (d0.cos() * d.sin() - d0.sin() * d.cos() * (a - a0).cos()) / cos_c;
        (x, y)
    })
}

#[tokio::test]
async fn boxes_and_polygons_equal_tangent_plane_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let cat = catalogue();
    // Boxes: corners at (±w/2, ±h/2) in the tangent plane, so a source is inside when its
    // gnomonic coordinates are within tan(w/2), tan(h/2). One across RA = 0, one at the pole.
    for (ra0, dec0, w, h) in [
        (0.0, 0.0, 1.5, 1.0),
        (359.5, 1.0, 1.0, 2.0),
        (45.0, 89.6, 1.2, 0.8),
    ] {
        let (tw, th) = (
            (w / 2.0_f64).to_radians().tan(),
            (h / 2.0_f64).to_radians().tan(),
        );
        let expected: Vec<i64> = cat
            .iter()
            .filter(|(_, ra, dec)| {
                gnomonic(*ra, *dec, ra0, dec0).is_some_and(|(x, y)| x.abs() <= tw && y.abs() <= th)
            })
            .map(|c| c.0)
            .collect();
        assert!(!expected.is_empty(), "box at ({ra0}, {dec0}) holds nothing");
        let q = format!("SELECT id FROM test.cat WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', {ra0}, {dec0}, {w}, {h}))");
        assert_eq!(ids(&engine.query(&q).await.unwrap()), expected, "{q}");
    }
    // A triangle (either orientation) across RA = 0: inside when on the same side of each
    // edge as the opposite vertex, in the tangent plane.
    let v = [(359.0, -1.0), (1.5, -0.5), (0.0, 1.5)];
    let plane: Vec<(f64, f64)> = v
        .iter()
        .map(|&(a, d)| gnomonic(a, d, 0.0, 0.0).unwrap())
        .collect();
    let side = |p: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0)
    };
    let expected: Vec<i64> = cat
        .iter()
        .filter(|(_, ra, dec)| {
            gnomonic(*ra, *dec, 0.0, 0.0).is_some_and(|p| {
                (0..3).all(|i| {
                    let (a, b, c) = (plane[i], plane[(i + 1) % 3], plane[(i + 2) % 3]);
                    side(p, a, b) * side(c, a, b) > 0.0
                })
            })
        })
        .map(|c| c.0)
        .collect();
    assert!(expected.len() > 10);
    for order in [[0, 1, 2], [2, 1, 0]] {
        let coords: Vec<String> = order
            .iter()
            .map(|&i| format!("{}, {}", v[i].0, v[i].1))
            .collect();
        let points: Vec<String> = order
            .iter()
            .map(|&i| format!("POINT({}, {})", v[i].0, v[i].1))
            .collect();
        for q in [
            format!(
                "SELECT id FROM test.cat WHERE 1 = CONTAINS(POINT(ra, dec), POLYGON('ICRS', {}))",
                coords.join(", ")
            ),
            format!(
                "SELECT id FROM test.fcat WHERE INTERSECTS(POLYGON({}), POINT(ra, dec)) = 1",
                points.join(", ")
            ),
        ] {
            assert_eq!(ids(&engine.query(&q).await.unwrap()), expected, "{q}");
        }
    }
}

#[tokio::test]
async fn geometry_measures_match_closed_forms() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let q = "SELECT AREA(CIRCLE(10, 20, 1)) AS cap, AREA(POLYGON(0, 0, 90, 0, 0, 90)) AS octant, \
             AREA(BOX(0, 0, 2, 2)) AS square, COORD1(CENTROID(CIRCLE(POINT(12, 34), 1))) AS c1, \
             COORD2(CENTROID(POLYGON(0, -1, 1, 0, 0, 1, -1, 0))) AS c2, \
             CONTAINS(CIRCLE(0.5, 0, 0.4), CIRCLE(0, 0, 1)) AS inside, CONTAINS(CIRCLE(0.5, 0, 0.6), CIRCLE(0, 0, 1)) AS over, \
             INTERSECTS(CIRCLE(0, 0, 1), CIRCLE(2.5, 0, 1)) AS apart, \
             INTERSECTS(CIRCLE(0, 0, 1), POLYGON(0.5, -0.5, 3, -0.5, 3, 0.5)) AS crossing, INTERSECTS(CIRCLE(0, 0, 1), POLYGON(1.5, -1, 3, -1, 3, 1)) AS near, \
             COORDSYS(POINT('ICRS', 1, 2)) AS frame FROM test.cat WHERE id = 0";
    let b = engine.query(q).await.unwrap();
    let f = |name: &str| {
        let c = b[0].column_by_name(name).unwrap();
        datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Float64)
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
            .value(0)
    };
    let sq = (180.0 / std::f64::consts::PI).powi(2);
    let cap = 2.0 * std::f64::consts::PI * (1.0 - 1f64.to_radians().cos()) * sq;
    assert!((f("cap") - cap).abs() < 1e-9 * cap, "{}", f("cap"));
    assert!((f("octant") - 4.0 * std::f64::consts::PI / 8.0 * sq).abs() < 1e-6);
    // A 2°×2° box with great-circle sides: 4·asin(sin²(1°)) steradians... closed form of a
    // tangent-plane square of half-side t: 4·asin(t²/(1+t²)).
    let t = 1f64.to_radians().tan();
    let square = 4.0 * (t * t / (1.0 + t * t)).asin() * sq;
    assert!(
        (f("square") - square).abs() < 1e-9 * square,
        "{}",
        f("square")
    );
    assert!((f("c1") - 12.0).abs() < 1e-9 && f("c2").abs() < 1e-9);
    assert_eq!(
        [f("inside"), f("over"), f("apart"), f("crossing"), f("near")],
        [1.0, 0.0, 0.0, 1.0, 0.0]
    );
    let frame = b[0].column_by_name("frame").unwrap();
    assert_eq!(frame.as_string::<i32>().value(0), "ICRS");
}

#[tokio::test]
async fn golden_cases() {
    run_golden("cases.slt").await;
}

/// ADQL 2.1 conformance: every `valid` case passes `parse::check` and runs to its expected
/// result; every `invalid` case is refused by `parse::check` with the recorded message.
#[tokio::test]
async fn conformance_corpus() {
    let counts = run_golden("conformance.slt").await;
    assert!(
        counts.0 >= 130 && counts.1 >= 60,
        "corpus too small: {counts:?}"
    );
}

/// Runs a golden file of cases (`query`/`error`: run and compare the table or the error;
/// `valid`/`invalid`: also checked by the parser alone) and returns (valid, invalid) counts.
/// `INSITU_BLESS=1` rewrites the expected parts, never turning a wrong kind into a pass.
async fn run_golden(file: &str) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let bless = std::env::var_os("INSITU_BLESS").is_some();
    let mut out = String::new();
    let mut failures = Vec::new();
    let mut counts = (0, 0);
    for case in text.split("\n\n").map(str::trim).filter(|c| !c.is_empty()) {
        let (head, expected) = case.split_once("\n----").unwrap_or((case, ""));
        let expected = expected.trim_start_matches('\n').trim();
        let comments: Vec<&str> = head.lines().take_while(|l| l.starts_with('#')).collect();
        let query: String = head
            .lines()
            .skip(comments.len())
            .collect::<Vec<_>>()
            .join("\n");
        let (kind, adql) = query.split_once(' ').unwrap();
        let parsed = insitu_adql::parse::check(adql);
        let (actual, right_kind) = match kind {
            "valid" | "query" => {
                counts.0 += usize::from(kind == "valid");
                // `query` cases may use insitu's extensions (CASE, scalar sub-queries).
                let parsed = if kind == "query" { Ok(()) } else { parsed };
                match (parsed, engine.query(adql).await) {
                    (Ok(()), Ok(b)) => (pretty_format_batches(&b).unwrap().to_string(), true),
                    (Err(e), _) | (_, Err(e)) => (format!("unexpected error: {e}"), false),
                }
            }
            "invalid" => {
                counts.1 += 1;
                match parsed {
                    Err(e) => (e.to_string(), true),
                    Ok(()) => ("unexpected: the parser accepted it".to_string(), false),
                }
            }
            "error" => match engine.query(adql).await {
                Err(e) => (e.to_string(), true),
                Ok(b) => (
                    format!(
                        "unexpected success:\n{}",
                        pretty_format_batches(&b).unwrap()
                    ),
                    false,
                ),
            },
            other => panic!("{file}: unknown case kind {other:?}"),
        };
        // `error` cases record a fragment of the message; the others the whole output.
        let matches = right_kind
            && match kind {
                "error" => !expected.is_empty() && actual.contains(expected),
                _ => actual.trim() == expected,
            };
        if !(matches || (bless && right_kind)) {
            failures.push(format!("{query}\nexpected:\n{expected}\nactual:\n{actual}"));
        }
        for c in &comments {
            writeln!(out, "{c}").unwrap();
        }
        let recorded = if (kind == "error" && matches) || !right_kind {
            expected.to_string()
        } else {
            actual.trim().to_string()
        };
        write!(out, "{query}\n----\n{recorded}\n\n").unwrap();
    }
    if bless {
        std::fs::write(&path, out.trim_end().to_string() + "\n").unwrap();
    }
    assert!(
        failures.is_empty(),
        "{file}: {} case(s) differ (INSITU_BLESS=1 rewrites expected outputs):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    counts
}
