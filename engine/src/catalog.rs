//! Cutout catalogues: `ra`, `dec` and optional `id`, `size` columns from CSV or a FITS binary table.

use std::path::Path;

use crate::fits::bintable::Cell;
use crate::fits::FitsFile;
use crate::{Error, Result};

/// One catalogue row that parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// 1-based data row number (the CSV header line is not counted).
    pub row: usize,
    pub id: Option<String>,
    pub ra: f64,
    pub dec: f64,
    /// Side in pixels, overriding the request's size for this row.
    pub size: Option<usize>,
}

/// A row that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub row: usize,
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {}: {}", self.row, self.reason)
    }
}

/// A catalogue read whole: good rows and bad rows, both in file order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub targets: Vec<Target>,
    pub bad: Vec<BadRow>,
}

/// Reads a catalogue: a FITS file (first binary table) or CSV with a header line.
pub fn read_catalog(path: &Path) -> Result<Catalog> {
    let mut magic = [0u8; 6];
    let is_fits = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut magic))
        .map_err(|e| Error::io(path, e))?
        == 6
        && &magic == b"SIMPLE";
    if is_fits {
        read_fits_catalog(path)
    } else {
        read_csv_catalog(path)
    }
}

fn catalog_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Catalog {
        path: path.into(),
        reason: reason.into(),
    }
}

struct Columns {
    ra: usize,
    dec: usize,
    id: Option<usize>,
    size: Option<usize>,
}

impl Columns {
    fn find(path: &Path, names: &[String]) -> Result<Columns> {
        let find = |name: &str| {
            names
                .iter()
                .position(|n| n.trim().eq_ignore_ascii_case(name))
        };
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                catalog_error(
                    path,
                    format!("no {name:?} column (columns: {})", names.join(", ")),
                )
            })
        };
        Ok(Columns {
            ra: need("ra")?,
            dec: need("dec")?,
            id: find("id"),
            size: find("size"),
        })
    }
}

fn read_csv_catalog(path: &Path) -> Result<Catalog> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| catalog_error(path, e.to_string()))?;
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| catalog_error(path, e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let cols = Columns::find(path, &names)?;
    let mut catalog = Catalog::default();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let parsed = record.map_err(|e| e.to_string()).and_then(|r| {
            let field = |c: usize| r.get(c).unwrap_or("");
            target(
                row,
                field(cols.ra),
                field(cols.dec),
                cols.id.map(field),
                cols.size.map(field),
            )
        });
        push(&mut catalog, row, parsed);
    }
    Ok(catalog)
}

fn read_fits_catalog(path: &Path) -> Result<Catalog> {
    let file = FitsFile::open(path)?;
    let table = file.table(None)?;
    let cols = Columns::find(path, &table.names)?;
    let text = |cell: Cell| match cell {
        Cell::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Cell::Number(v) => format!("{v:?}"),
        Cell::Text(s) => s,
        Cell::Other => String::from("(unsupported column type)"),
    };
    let mut catalog = Catalog::default();
    for r in 0..table.rows() {
        let row = r + 1;
        let parsed = target(
            row,
            &text(table.cell(r, cols.ra)),
            &text(table.cell(r, cols.dec)),
            cols.id.map(|c| text(table.cell(r, c))).as_deref(),
            cols.size.map(|c| text(table.cell(r, c))).as_deref(),
        );
        push(&mut catalog, row, parsed);
    }
    Ok(catalog)
}

fn push(catalog: &mut Catalog, row: usize, parsed: std::result::Result<Target, String>) {
    match parsed {
        Ok(t) => catalog.targets.push(t),
        Err(reason) => catalog.bad.push(BadRow { row, reason }),
    }
}

fn target(
    row: usize,
    ra: &str,
    dec: &str,
    id: Option<&str>,
    size: Option<&str>,
) -> std::result::Result<Target, String> {
    let number = |name: &str, text: &str| -> std::result::Result<f64, String> {
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name} {text:?} is not a finite number"))
    };
    let ra = number("ra", ra)?;
    let dec = number("dec", dec)?;
    if !(-90.0..=90.0).contains(&dec) {
        return Err(format!("dec {dec} is outside -90..90"));
    }
    let id = id.filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(id) = &id {
        if !is_safe_file_stem(id) {
            return Err(format!(
                "id {id:?} cannot name a file (use letters, digits, '.', '_', '+', '-')"
            ));
        }
    }
    let size = match size.filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => {
            let v = number("size", text)?;
            if v < 1.0 || v.fract() != 0.0 || v > crate::cutout::MAX_SIDE as f64 {
                return Err(format!(
                    "size {text:?} is not a whole number of pixels in 1..{}",
                    crate::cutout::MAX_SIDE
                ));
            }
            Some(v as usize)
        }
    };
    Ok(Target {
        row,
        id,
        ra: ra.rem_euclid(360.0),
        dec,
        size,
    })
}

/// Ids become file names: no path separators, no leading dot, nothing a shell mangles.
fn is_safe_file_stem(id: &str) -> bool {
    id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_good_and_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cat.csv");
        std::fs::write(
            &path,
            "id,RA,Dec,size\nA1,10.5,-20,32\nB2,abc,1,\nC3,370,1,\n../x,1,1,\nD4,1,95,\nE5,1,1,2.5\n",
        )
        .unwrap();
        let cat = read_catalog(&path).unwrap();
        assert_eq!(cat.targets.len(), 2);
        assert_eq!(
            cat.targets[0],
            Target {
                row: 1,
                id: Some("A1".into()),
                ra: 10.5,
                dec: -20.0,
                size: Some(32)
            }
        );
        assert_eq!(cat.targets[1].ra, 10.0, "RA wraps into 0..360");
        let rows: Vec<usize> = cat.bad.iter().map(|b| b.row).collect();
        assert_eq!(rows, vec![2, 4, 5, 6]);
        assert!(cat.bad[0].reason.contains("abc"));
    }

    #[test]
    fn missing_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cat.csv");
        std::fs::write(&path, "x,y\n1,2\n").unwrap();
        let err = read_catalog(&path).unwrap_err().to_string();
        assert!(err.contains("\"ra\"") && err.contains("x, y"), "{err}");
    }
}
