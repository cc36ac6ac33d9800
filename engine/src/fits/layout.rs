//! HDU layout: where each header and data unit lies in a file (FITS 4.0 §3.3, §4.4.1).

use super::header::{Header, HeaderError, BLOCK_LEN};

/// One HDU's header and the byte extent of its data unit.
#[derive(Debug, Clone)]
pub struct HduLayout {
    pub header: Header,
    pub header_start: usize,
    pub data_start: usize,
    /// Bytes of data, without the padding to a whole block.
    pub data_len: usize,
}

/// Walks the HDUs of a whole file. Every data extent is checked against `bytes.len()`, so a
/// truncated file is an error here and never a fault when the data is read later.
pub fn scan(bytes: &[u8]) -> Result<Vec<HduLayout>, HeaderError> {
    if bytes.is_empty() {
        return Err(HeaderError("empty file".into()));
    }
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(HeaderError(
            "not a FITS file: it does not start with SIMPLE".into(),
        ));
    }
    let mut hdus = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let index = hdus.len();
        let at = |e: HeaderError| HeaderError(format!("HDU {index}: {}", e.0));
        let block_end = |n: usize| n.div_ceil(BLOCK_LEN) * BLOCK_LEN;
        let rest = &bytes[pos..];
        if index > 0 && rest.iter().all(|&b| b == 0) {
            // Trailing zero blocks after the last HDU are tolerated (FITS 4.0 §3.5).
            break;
        }
        let (header, used) = Header::parse_cards(rest).map_err(at)?;
        check_first_keyword(&header, index).map_err(at)?;
        let data_start = pos + block_end(used);
        let data_len = data_len(&header).map_err(at)?;
        let data_end = data_start
            .checked_add(data_len)
            .ok_or_else(|| at(HeaderError("data size overflows".into())))?;
        if data_end > bytes.len() {
            return Err(at(HeaderError(format!(
                "truncated: the data unit needs {data_len} bytes from offset {data_start}, \
                 but the file has {} bytes",
                bytes.len()
            ))));
        }
        hdus.push(HduLayout {
            header,
            header_start: pos,
            data_start,
            data_len,
        });
        pos = data_start + block_end(data_len);
    }
    Ok(hdus)
}

fn check_first_keyword(header: &Header, index: usize) -> Result<(), HeaderError> {
    let first = header.cards().first().map(|c| c.keyword.as_str());
    match (index, first) {
        (0, Some("SIMPLE")) => Ok(()),
        (0, _) => Err(HeaderError(
            "not a FITS file: it does not start with SIMPLE".into(),
        )),
        (_, Some("XTENSION")) => Ok(()),
        _ => Err(HeaderError(
            "extension header does not start with XTENSION".into(),
        )),
    }
}

/// The axis lengths NAXIS1..NAXISn, validated.
pub fn axes(header: &Header) -> Result<Vec<usize>, HeaderError> {
    let naxis = header
        .integer("NAXIS")
        .ok_or_else(|| HeaderError("NAXIS is missing or not an integer".into()))?;
    if !(0..=999).contains(&naxis) {
        return Err(HeaderError(format!("NAXIS = {naxis} is outside 0..999")));
    }
    (1..=naxis)
        .map(|i| {
            let key = format!("NAXIS{i}");
            match header.integer(&key) {
                Some(n) if n >= 0 => {
                    usize::try_from(n).map_err(|_| HeaderError(format!("{key} = {n} is too large")))
                }
                Some(n) => Err(HeaderError(format!("{key} = {n} is negative"))),
                None => Err(HeaderError(format!("{key} is missing or not an integer"))),
            }
        })
        .collect()
}

/// Bytes per element for a BITPIX value.
pub fn bitpix_bytes(bitpix: i64) -> Result<usize, HeaderError> {
    match bitpix {
        8 => Ok(1),
        16 => Ok(2),
        32 | -32 => Ok(4),
        64 | -64 => Ok(8),
        other => Err(HeaderError(format!(
            "BITPIX = {other} is not one of 8, 16, 32, 64, -32, -64"
        ))),
    }
}

/// Data size in bytes (FITS 4.0 eq. 2): |BITPIX|/8 × GCOUNT × (PCOUNT + NAXIS1 × … × NAXISn),
/// with NAXIS1 left out for random groups (§6).
fn data_len(header: &Header) -> Result<usize, HeaderError> {
    let bitpix = header
        .integer("BITPIX")
        .ok_or_else(|| HeaderError("BITPIX is missing or not an integer".into()))?;
    let bytes = bitpix_bytes(bitpix)?;
    let axes = axes(header)?;
    if axes.is_empty() {
        return Ok(0);
    }
    let groups = header.logical("GROUPS") == Some(true) && axes[0] == 0;
    let counted = if groups { &axes[1..] } else { &axes[..] };
    let overflow = || HeaderError("data size overflows".into());
    let elements = counted
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(overflow)?;
    let count = |key: &str, default: i64| -> Result<usize, HeaderError> {
        let v = header.integer(key).unwrap_or(default);
        usize::try_from(v).map_err(|_| HeaderError(format!("{key} = {v} is negative")))
    };
    let pcount = count("PCOUNT", 0)?;
    let gcount = count("GCOUNT", 1)?;
    elements
        .checked_add(pcount)
        .and_then(|n| n.checked_mul(gcount))
        .and_then(|n| n.checked_mul(bytes))
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdu(cards: &[&str], data: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cards.iter().chain(["END"].iter()) {
            out.extend_from_slice(format!("{c:<80}").as_bytes());
        }
        out.resize(out.len().div_ceil(BLOCK_LEN) * BLOCK_LEN, b' ');
        out.resize(out.len() + data.div_ceil(BLOCK_LEN) * BLOCK_LEN, 0);
        out
    }

    #[test]
    fn locates_every_data_unit() {
        let mut file = hdu(
            &["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 0", "EXTEND  = T"],
            0,
        );
        file.extend(hdu(
            &[
                "XTENSION= 'IMAGE   '",
                "BITPIX  = -32",
                "NAXIS   = 2",
                "NAXIS1  = 30",
                "NAXIS2  = 40",
                "PCOUNT  = 0",
                "GCOUNT  = 1",
            ],
            4800,
        ));
        let hdus = scan(&file).unwrap();
        assert_eq!(hdus.len(), 2);
        assert_eq!(hdus[0].data_len, 0);
        assert_eq!(hdus[1].header_start, 2880);
        assert_eq!(hdus[1].data_start, 5760);
        assert_eq!(hdus[1].data_len, 4800);
    }

    #[test]
    fn truncated_and_bad_axes_are_errors() {
        let mut file = hdu(
            &[
                "SIMPLE  = T",
                "BITPIX  = 16",
                "NAXIS   = 2",
                "NAXIS1  = 100",
                "NAXIS2  = 100",
            ],
            20000,
        );
        file.truncate(2880 + 10000);
        assert!(scan(&file).unwrap_err().0.contains("truncated"));
        let file = hdu(
            &[
                "SIMPLE  = T",
                "BITPIX  = 16",
                "NAXIS   = 2",
                "NAXIS1  = -5",
                "NAXIS2  = 1",
            ],
            0,
        );
        assert!(scan(&file).unwrap_err().0.contains("negative"));
        let file = hdu(&["SIMPLE  = T", "BITPIX  = 12", "NAXIS   = 0"], 0);
        assert!(scan(&file).unwrap_err().0.contains("BITPIX"));
        let file = hdu(
            &[
                "SIMPLE  = T",
                "BITPIX  = 8",
                "NAXIS   = 3",
                "NAXIS1  = 4000000000",
                "NAXIS2  = 4000000000",
                "NAXIS3  = 4000000000",
            ],
            0,
        );
        assert!(scan(&file).is_err());
        assert!(scan(b"").is_err());
        assert!(scan(&hdu(&["NOTFITS = 1"], 0))
            .unwrap_err()
            .0
            .contains("not a FITS file"));
        assert!(scan(b"hello, world")
            .unwrap_err()
            .0
            .contains("not a FITS file"));
    }
}
