//! Reading scalar columns of a FITS binary table in place (FITS 4.0 §7.3), enough for catalogues.

use super::header::Header;

/// A scalar cell value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Text(String),
    /// Logical, array or other columns this reader does not convert.
    Other,
}

/// A binary table HDU's columns, borrowed from the mapped data unit.
pub struct BinTable<'a> {
    pub names: Vec<String>,
    pub(crate) columns: Vec<Column>,
    pub(crate) row_len: usize,
    rows: usize,
    pub(crate) data: &'a [u8],
}

pub(crate) struct Column {
    pub(crate) offset: usize,
    pub(crate) code: u8,
    pub(crate) repeat: usize,
    pub(crate) scale: f64,
    pub(crate) zero: f64,
    /// `TNULLn`: the stored integer that means "no value".
    pub(crate) null: Option<i64>,
    /// `TUNITn`, `TUCDn`, `TCOMMn` (empty when absent).
    pub(crate) unit: String,
    pub(crate) ucd: String,
    pub(crate) description: String,
}

impl<'a> BinTable<'a> {
    pub fn new(header: &Header, data: &'a [u8]) -> Result<BinTable<'a>, String> {
        let dim = |k: &str| {
            header
                .integer(k)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| format!("{k} is missing or negative"))
        };
        let row_len = dim("NAXIS1")?;
        let rows = dim("NAXIS2")?;
        let fields = dim("TFIELDS")?;
        if row_len.checked_mul(rows).is_none_or(|n| n > data.len()) {
            return Err("table rows extend past the data unit".into());
        }
        let text = |k: &str| header.string(k).unwrap_or("").to_string();
        let mut names = Vec::with_capacity(fields);
        let mut columns = Vec::with_capacity(fields);
        let mut offset = 0usize;
        for i in 1..=fields {
            let tform = header
                .string(&format!("TFORM{i}"))
                .ok_or_else(|| format!("TFORM{i} is missing"))?;
            let (repeat, code) = parse_tform(tform)
                .ok_or_else(|| format!("TFORM{i} = {tform:?} is not understood"))?;
            names.push(
                header
                    .string(&format!("TTYPE{i}"))
                    .unwrap_or("")
                    .to_string(),
            );
            columns.push(Column {
                offset,
                code,
                repeat,
                scale: header.real(&format!("TSCAL{i}")).unwrap_or(1.0),
                zero: header.real(&format!("TZERO{i}")).unwrap_or(0.0),
                null: header.integer(&format!("TNULL{i}")),
                unit: text(&format!("TUNIT{i}")),
                ucd: text(&format!("TUCD{i}")),
                description: text(&format!("TCOMM{i}")),
            });
            offset += column_bytes(repeat, code)
                .ok_or_else(|| format!("TFORM{i} = {tform:?} has an unknown type"))?;
        }
        if offset > row_len {
            return Err(format!(
                "columns need {offset} bytes per row but NAXIS1 = {row_len}"
            ));
        }
        Ok(BinTable {
            names,
            columns,
            row_len,
            rows,
            data,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Index of the column named `name` (case-insensitive).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// The value in `row` of column `col` (scalars and character strings only).
    pub fn cell(&self, row: usize, col: usize) -> Cell {
        let Some(c) = self.columns.get(col) else {
            return Cell::Other;
        };
        let start = row * self.row_len + c.offset;
        let Some(bytes) =
            column_bytes(c.repeat, c.code).and_then(|n| self.data.get(start..start + n))
        else {
            return Cell::Other;
        };
        let num = |v: f64| Cell::Number(c.zero + c.scale * v);
        let arr = |b: &[u8]| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            a
        };
        match c.code {
            b'A' => Cell::Text(
                String::from_utf8_lossy(bytes)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            ),
            _ if c.repeat != 1 => Cell::Other,
            b'B' => num(bytes[0] as f64),
            b'I' => num(i16::from_be_bytes([bytes[0], bytes[1]]) as f64),
            b'J' => num(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f64),
            b'K' => num(i64::from_be_bytes(arr(bytes)) as f64),
            b'E' => num(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f64),
            b'D' => num(f64::from_be_bytes(arr(bytes))),
            _ => Cell::Other,
        }
    }
}

/// `rT` with optional repeat count and trailing descriptor text (e.g. `1PE(10)`).
fn parse_tform(tform: &str) -> Option<(usize, u8)> {
    let t = tform.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let repeat = if digits == 0 {
        1
    } else {
        t[..digits].parse().ok()?
    };
    let code = *t.as_bytes().get(digits)?;
    Some((repeat, code.to_ascii_uppercase()))
}

/// Bytes a column of `repeat` elements of type `code` takes in a row (FITS 4.0 Table 18).
pub(crate) fn column_bytes(repeat: usize, code: u8) -> Option<usize> {
    if code == b'X' {
        return Some(repeat.div_ceil(8));
    }
    repeat.checked_mul(match code {
        b'L' | b'B' | b'A' => 1,
        b'I' => 2,
        b'J' | b'E' => 4,
        b'K' | b'D' | b'C' | b'P' => 8,
        b'M' | b'Q' => 16,
        _ => return None,
    })
}
