//! Position-first cutouts: find the tile of a band holding a sky position, cut around it with
//! `Cutout2D`'s window, and stitch what crosses the tile's edge from the neighbouring tiles
//! of the same band and volume onto the first tile's pixel grid (nearest pixel, see
//! [`crate::stitch`]); one cutout per band, written as FITS by [`bands_to_fits`].
//!
//! Used by the server's `GET /cutout`, SODA and bulk jobs, and by [`crate::tensor_cuts`]:
//! [`cut_at`] for one band, [`bands_at`] for the bands a position has, [`plan_at`] and
//! [`cut_planned_into`] to plan first and cut into reused memory.

use std::sync::Arc;

use crate::cutout::{self, HeaderTemplate, Mode, Size, Window, MAX_BYTES};
use crate::fits::header::BLOCK_LEN;
use crate::fits::{Card, Header, Value};
use crate::stitch::{self, Source};
use crate::volume::{separation, LookupError, OpenImage, TileId, Tiles};

/// Keyword prefix of the cards naming the tiles a cutout was cut from (`INTILE1`, …).
pub const TILE_KEYWORD: &str = "INTILE";
/// At most this many `INTILEn` cards (the keyword holds 8 characters).
const MAX_TILE_CARDS: usize = 99;

/// One band's cutout around a position.
#[derive(Debug, Clone)]
pub struct BandCutout {
    /// The band (filter name) as the tiles spell it.
    pub band: String,
    pub width: usize,
    pub height: usize,
    /// Physical values (BSCALE/BZERO applied), FITS row order (first row = bottom), NaN where
    /// no tile has data.
    pub data: Vec<f32>,
    /// FITS header of the cutout as a primary HDU: BITPIX -32, the first tile's WCS shifted to
    /// the cutout, the tiles used in `INTILEn` cards.
    pub header: Header,
    /// Dataset ids (DIDs) of the tiles used, first = the tile whose pixel grid the cutout is on.
    pub tiles: Vec<String>,
}

/// Why a position-first cutout cannot be made. Messages name datasets, never server paths.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    /// No tile (of the band, in the volume, when given) holds the position.
    #[error(
        "no tile{} holds (ra, dec) = ({ra}, {dec}){}",
        band_text(band),
        volume_text(volume)
    )]
    NoTile {
        band: Option<String>,
        ra: f64,
        dec: f64,
        volume: Option<String>,
    },
    /// The volume parameter names no mounted volume.
    #[error("no volume {0:?} is mounted")]
    UnknownVolume(String),
    /// A parameter the client can fix: position, size, band.
    #[error("{0}")]
    BadParameter(String),
    /// A tile could not be read (the server's fault, or its data's).
    #[error("{0}")]
    Unreadable(String),
}

fn band_text(band: &Option<String>) -> String {
    band.as_ref()
        .map_or_else(String::new, |b| format!(" of band {b}"))
}

fn volume_text(volume: &Option<String>) -> String {
    volume
        .as_ref()
        .map_or_else(String::new, |v| format!(" in volume {v}"))
}

impl From<LookupError> for PositionError {
    fn from(e: LookupError) -> PositionError {
        PositionError::Unreadable(e.to_string())
    }
}

/// Where a band's cutout lies: the tile whose grid it is on and the window in that tile's
/// 0-based pixels (it may extend past the tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub grid: TileId,
    pub window: Window,
}

/// A valid position, RA wrapped into [0, 360).
fn checked_position(ra: f64, dec: f64) -> Result<(f64, f64), PositionError> {
    if !(ra.is_finite() && dec.is_finite() && (-90.0..=90.0).contains(&dec)) {
        return Err(PositionError::BadParameter(format!(
            "(ra, dec) = ({ra}, {dec}) is not a position: ra and dec are ICRS degrees, \
             dec between -90 and 90"
        )));
    }
    let ra = ra.rem_euclid(360.0);
    Ok((if ra >= 360.0 { 0.0 } else { ra }, dec))
}

fn checked_volume<'v>(
    tiles: &Tiles,
    volume: Option<&'v str>,
) -> Result<Option<&'v str>, PositionError> {
    match volume {
        Some(v)
            if !tiles
                .volumes()
                .iter()
                .any(|m| m.name.eq_ignore_ascii_case(v)) =>
        {
            Err(PositionError::UnknownVolume(v.to_string()))
        }
        other => Ok(other),
    }
}

/// The bands (filter names) of the tiles holding (`ra`, `dec`) or ending within
/// [`GAP_PIXELS`] of it, in `volume` when given, sorted and each once (compared
/// case-insensitively): the bands [`cut_at`] can cut there.
pub fn bands_at(
    tiles: &Tiles,
    ra: f64,
    dec: f64,
    volume: Option<&str>,
) -> Result<Vec<String>, PositionError> {
    let (ra, dec) = checked_position(ra, dec)?;
    let volume = checked_volume(tiles, volume)?;
    let mut bands: Vec<String> = Vec::new();
    for id in tiles_near(tiles, ra, dec, None, volume) {
        if let Some(band) = &tiles.row(id).1.filter_name {
            if !bands.iter().any(|b| b.eq_ignore_ascii_case(band)) {
                bands.push(band.clone());
            }
        }
    }
    if bands.is_empty() {
        return Err(PositionError::NoTile {
            band: None,
            ra,
            dec,
            volume: volume.map(String::from),
        });
    }
    bands.sort();
    Ok(bands)
}

/// Plans `band`'s cutout: the tile holding the position whose centre is nearest (in
/// `volume` when given; see [`GAP_PIXELS`] for positions between tiles) and `Cutout2D`'s
/// partial-mode window around the position on it, the size in that tile's pixels.
pub fn plan_at(
    tiles: &Tiles,
    ra: f64,
    dec: f64,
    size: Size,
    band: &str,
    volume: Option<&str>,
) -> Result<Planned, PositionError> {
    let (ra, dec) = checked_position(ra, dec)?;
    let volume = checked_volume(tiles, volume)?;
    let band = band.trim();
    if band.is_empty() {
        return Err(PositionError::BadParameter("the band is empty".into()));
    }
    let no_tile = || PositionError::NoTile {
        band: Some(band.to_string()),
        ra,
        dec,
        volume: volume.map(String::from),
    };
    let grid = grid_tile(tiles, ra, dec, band, volume).ok_or_else(no_tile)?;
    let open = tiles.open(grid)?;
    let (_, row) = tiles.row(grid);
    let (width, height) = (row.naxis1 as usize, row.naxis2 as usize);
    let position = open.wcs.sky_to_pixel(ra, dec).ok_or_else(no_tile)?;
    let shape = cutout::side_pixels(size, Some(&open.wcs))
        .map_err(|e| PositionError::BadParameter(engine_reason(&e)))?;
    let window = cutout::cutout_window(width, height, position, shape, Mode::Partial)
        .map_err(|_| no_tile())?;
    let bytes = window.width.saturating_mul(window.height).saturating_mul(4);
    if bytes > MAX_BYTES {
        return Err(PositionError::BadParameter(format!(
            "the {}×{} cutout would hold {bytes} bytes; the limit is {MAX_BYTES}",
            window.width, window.height
        )));
    }
    Ok(Planned { grid, window })
}

/// The tile whose grid a cutout at (`ra`, `dec`) is on: the tile of `band` holding the
/// position whose centre is nearest, else the nearest-centred tile near it ([`GAP_PIXELS`]).
fn grid_tile(tiles: &Tiles, ra: f64, dec: f64, band: &str, volume: Option<&str>) -> Option<TileId> {
    let holding = tiles.covering(ra, dec, Some(band), volume);
    match holding.first() {
        Some(first) => Some(*first),
        None => tiles_near(tiles, ra, dec, Some(band), volume)
            .first()
            .copied(),
    }
}

/// The tiles (of `band`, in `volume`, when given) holding (`ra`, `dec`) or whose pixels end
/// within [`GAP_PIXELS`] of it, nearest centre first. Adjacent tiles with their
/// own tangent points do not meet exactly: hairline gaps (a fraction of a pixel) open
/// between them, and a position there still deserves its cutout.
fn tiles_near(
    tiles: &Tiles,
    ra: f64,
    dec: f64,
    band: Option<&str>,
    volume: Option<&str>,
) -> Vec<TileId> {
    let mut found: Vec<(f64, TileId)> = Vec::new();
    for (v, vol) in tiles.volumes().iter().enumerate() {
        if volume.is_some_and(|name| !vol.name.eq_ignore_ascii_case(name)) {
            continue;
        }
        for (i, row) in vol.images.iter().enumerate() {
            let distance = separation(ra, dec, row.ra, row.dec);
            let reach = row.fov / 2.0 + 2.0 * GAP_PIXELS * row.pixel_scale / 3600.0;
            let in_band = band.is_none_or(|b| {
                row.filter_name
                    .as_deref()
                    .is_some_and(|f| f.eq_ignore_ascii_case(b))
            });
            if !in_band || distance > reach {
                continue;
            }
            let id = TileId {
                volume: v,
                image: i,
            };
            let Ok(open) = tiles.open(id) else {
                continue;
            };
            let near = |p: f64, n: i64| p >= -0.5 - GAP_PIXELS && p < n as f64 - 0.5 + GAP_PIXELS;
            if let Some((x, y)) = open.wcs.sky_to_pixel(ra, dec) {
                if near(x, row.naxis1) && near(y, row.naxis2) {
                    found.push((distance, id));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    found.into_iter().map(|(_, id)| id).collect()
}

/// How far outside a tile's pixels (in pixels) a position may lie and still be cut on that
/// tile when no tile holds it.
pub const GAP_PIXELS: f64 = 1.0;

/// The message of an engine error about a request (these carry no path).
fn engine_reason(e: &crate::Error) -> String {
    match e {
        crate::Error::Cutout(reason) | crate::Error::Wcs(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// Cuts `band` around (`ra`, `dec`): see [`plan_at`] for the tile and window, and
/// [`crate::stitch`] for how pixels outside the tile come from its neighbours.
pub fn cut_at(
    tiles: &Tiles,
    ra: f64,
    dec: f64,
    size: Size,
    band: &str,
    volume: Option<&str>,
) -> Result<BandCutout, PositionError> {
    let planned = plan_at(tiles, ra, dec, size, band, volume)?;
    cut_planned(tiles, planned)
}

/// Cuts a planned window, stitching from the neighbours of its grid tile where it crosses the
/// tile's edge.
pub fn cut_planned(tiles: &Tiles, planned: Planned) -> Result<BandCutout, PositionError> {
    let opened = open_sources(tiles, &planned)?;
    let (sources, ids) = stitch_sources(tiles, &opened)?;
    let stitched = stitch::stitch(planned.window, &sources)
        .map_err(|e| PositionError::BadParameter(engine_reason(&e)))?;
    // The grid tile always; neighbours only when they gave pixels.
    let used: Vec<String> = ids
        .iter()
        .zip(&stitched.filled)
        .enumerate()
        .filter(|(k, (_, n))| *k == 0 || **n > 0)
        .map(|(_, (id, _))| tiles.did(*id))
        .collect();
    let header = cutout_header(&sources[0].image, planned.window, &used)?;
    let band = tiles
        .row(planned.grid)
        .1
        .filter_name
        .clone()
        .unwrap_or_default();
    Ok(BandCutout {
        band,
        width: stitched.width,
        height: stitched.height,
        data: stitched.data,
        header,
        tiles: used,
    })
}

/// [`cut_planned`]'s pixels alone, into `data` (made `width × height` long, reusing its
/// memory), without the header: what a tensor needs of a cutout.
pub fn cut_planned_into(
    tiles: &Tiles,
    planned: Planned,
    data: &mut Vec<f32>,
) -> Result<(), PositionError> {
    let opened = open_sources(tiles, &planned)?;
    let (sources, _) = stitch_sources(tiles, &opened)?;
    stitch::stitch_into(planned.window, &sources, data)
        .map_err(|e| PositionError::BadParameter(engine_reason(&e)))?;
    Ok(())
}

/// The planned window's grid tile, then the neighbours it reaches into where it crosses the
/// tile's edge (a neighbour that cannot be opened is left out, its pixels NaN), opened.
fn open_sources(
    tiles: &Tiles,
    planned: &Planned,
) -> Result<Vec<(TileId, Arc<OpenImage>)>, PositionError> {
    let (grid, window) = (planned.grid, planned.window);
    let grid_open = tiles.open(grid)?;
    let neighbours = if inside(tiles, grid, window) {
        Vec::new()
    } else {
        neighbour_tiles(tiles, grid, &grid_open, window)
    };
    let mut opened = Vec::with_capacity(neighbours.len() + 1);
    opened.push((grid, grid_open));
    for id in neighbours {
        match tiles.open(id) {
            Ok(open) => opened.push((id, open)),
            // Its pixels stay NaN: one broken tile must not take its neighbours down.
            Err(e) => tracing::warn!("cutout: neighbour tile left out: {e}"),
        }
    }
    Ok(opened)
}

/// The opened tiles' images as stitching sources, grid first, with their ids: an error when
/// the grid tile's image cannot be read, a neighbour's is left out.
fn stitch_sources<'a>(
    tiles: &Tiles,
    opened: &'a [(TileId, Arc<OpenImage>)],
) -> Result<(Vec<Source<'a>>, Vec<TileId>), PositionError> {
    let mut sources = Vec::with_capacity(opened.len());
    let mut ids = Vec::with_capacity(opened.len());
    for (k, (id, open)) in opened.iter().enumerate() {
        match open.image() {
            Ok(image) => {
                sources.push(Source {
                    image,
                    wcs: &open.wcs,
                });
                ids.push(*id);
            }
            Err(e) if k == 0 => {
                tracing::warn!("cutout: {}: {e}", tiles.did(*id));
                return Err(PositionError::Unreadable(format!(
                    "dataset {} cannot be read as an image",
                    tiles.did(*id)
                )));
            }
            Err(e) => tracing::warn!("cutout: neighbour {} left out: {e}", tiles.did(*id)),
        }
    }
    Ok((sources, ids))
}

fn inside(tiles: &Tiles, id: TileId, w: Window) -> bool {
    let (_, row) = tiles.row(id);
    w.x0 >= 0
        && w.y0 >= 0
        && w.x0 + w.width as i64 <= row.naxis1
        && w.y0 + w.height as i64 <= row.naxis2
}

/// The other tiles of the grid tile's volume and band whose bounding circle meets the
/// window's, by id.
fn neighbour_tiles(tiles: &Tiles, grid: TileId, open: &OpenImage, w: Window) -> Vec<TileId> {
    let (volume, row) = tiles.row(grid);
    let band = row.filter_name.as_deref();
    let (x0, y0) = (w.x0 as f64 - 0.5, w.y0 as f64 - 0.5);
    let (x1, y1) = (x0 + w.width as f64, y0 + w.height as f64);
    let centre = open.wcs.pixel_to_sky((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    // Radius of the window: its farthest corner (a window off the projection reaches all).
    let radius = centre.and_then(|(ra, dec)| {
        [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]
            .iter()
            .try_fold(0.0f64, |r, &(x, y)| {
                let (a, d) = open.wcs.pixel_to_sky(x, y)?;
                Some(r.max(separation(ra, dec, a, d)))
            })
    });
    volume
        .images
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            *i != grid.image
                && match (band, r.filter_name.as_deref()) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (None, None) => true,
                    _ => false,
                }
                && match (centre, radius) {
                    // A pixel's width of room for rounding.
                    (Some((ra, dec)), Some(radius)) => {
                        separation(ra, dec, r.ra, r.dec)
                            <= radius + r.fov / 2.0 + 2.0 * r.pixel_scale / 3600.0
                    }
                    _ => true,
                }
        })
        .map(|(image, _)| TileId {
            volume: grid.volume,
            image,
        })
        .collect()
}

/// The cutout's header: the grid tile's header made primary with its WCS moved to the window
/// (as `Cutout2D` shifts CRPIX), BITPIX -32 without scaling keywords (the data are physical
/// values), and the tiles used.
fn cutout_header(
    image: &crate::fits::Image<'_>,
    w: Window,
    dids: &[String],
) -> Result<Header, PositionError> {
    let template = HeaderTemplate::primary(image, w.width, w.height, 1);
    let mut bytes = Vec::new();
    template.render([w.x0, w.y0, 0], "", 0, &mut bytes);
    let (mut header, _) = Header::parse_cards(&bytes).map_err(|e| {
        PositionError::Unreadable(format!("the cutout header is malformed: {}", e.0))
    })?;
    for key in ["BSCALE", "BZERO", "BLANK"] {
        header.remove(key);
    }
    let at = header
        .cards()
        .iter()
        .position(|c| c.keyword == "BITPIX")
        .unwrap_or(1);
    header.remove("BITPIX");
    header.insert(
        at,
        Card::new(
            "BITPIX",
            Value::Integer(-32),
            "IEEE single precision (physical values)",
        ),
    );
    if dids.iter().any(|d| d.len() > 68) {
        header.push(Card::new(
            "LONGSTRN",
            Value::String("OGIP 1.0".into()),
            "long strings continue on CONTINUE cards",
        ));
    }
    for (n, did) in dids.iter().take(MAX_TILE_CARDS).enumerate() {
        header.push(string_card(&format!("{TILE_KEYWORD}{}", n + 1), did));
    }
    header.push(Card::commentary(
        "COMMENT",
        "INTILEn: dataset ids of the tiles cut; INTILE1 gives the pixel grid",
    ));
    if dids.len() > MAX_TILE_CARDS {
        header.push(Card::commentary(
            "COMMENT",
            &format!("and {} more tiles", dids.len() - MAX_TILE_CARDS),
        ));
    }
    if dids.len() > 1 {
        header.push(Card::commentary(
            "HISTORY",
            "insitu: pixels off INTILE1: nearest pixel of the tile holding them",
        ));
    }
    Ok(header)
}

/// A string card, continued on `CONTINUE` cards when longer than one card holds (FITS 4.0
/// §4.2.1.2). Bytes outside printable ASCII (and `%`) are percent-encoded, as in a URI, since
/// a header holds ASCII only.
fn string_card(keyword: &str, value: &str) -> Card {
    let mut text = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            text.push(b as char);
        } else {
            text.push_str(&format!("%{b:02X}"));
        }
    }
    let escaped = text.replace('\'', "''");
    // `KEYWORD = '…'` holds 68 characters; a continued piece 67 and its `&`.
    if escaped.len() <= 68 {
        return Card::new(keyword, Value::String(text), "");
    }
    let mut images = String::new();
    let mut rest = escaped.as_str();
    let mut first = true;
    while !rest.is_empty() {
        let mut cut = rest.len().min(67);
        if cut < rest.len() {
            // Never split a doubled quote: quotes come in pairs from the start of each run.
            let quotes = rest[..cut]
                .bytes()
                .rev()
                .take_while(|&b| b == b'\'')
                .count();
            cut -= quotes % 2;
        }
        let (piece, tail) = rest.split_at(cut);
        let more = if tail.is_empty() { "" } else { "&" };
        let lead = if first {
            format!("{keyword:<8}= ")
        } else {
            "CONTINUE  ".to_string()
        };
        images.push_str(&format!("{:<80}", format!("{lead}'{piece}{more}'")));
        rest = tail;
        first = false;
    }
    Card {
        keyword: keyword.to_string(),
        value: Some(Value::String(text)),
        comment: String::new(),
        image: images,
    }
}

/// The cutouts as one FITS file: an empty primary HDU, then one IMAGE extension per band
/// (EXTNAME = the band), in order — the same layout for one band as for several, so that a
/// client always finds a band by name (`hdul["VIS"]`).
pub fn bands_to_fits(cutouts: &[BandCutout]) -> Vec<u8> {
    let mut out = empty_primary(Some(cutouts.len()), "bands");
    for c in cutouts {
        out.extend_from_slice(&c.extension_hdu(&c.band));
    }
    out
}

/// An empty primary HDU, announcing how many extensions follow (`NEXTEND`, commented
/// `what`) when that is known.
pub fn empty_primary(extensions: Option<usize>, what: &str) -> Vec<u8> {
    let mut primary = Header::default();
    for card in [
        Card::new("SIMPLE", Value::Logical(true), "conforms to FITS standard"),
        Card::new("BITPIX", Value::Integer(8), ""),
        Card::new("NAXIS", Value::Integer(0), "no data: extensions follow"),
        Card::new("EXTEND", Value::Logical(true), ""),
    ] {
        primary.push(card);
    }
    if let Some(n) = extensions {
        primary.push(Card::new("NEXTEND", Value::Integer(n as i64), what));
    }
    primary.push(Card::new("ORIGIN", Value::String("insitu".into()), ""));
    primary.to_bytes()
}

impl BandCutout {
    /// The cutout as a FITS file of its own (a primary HDU).
    pub fn primary_hdu(&self) -> Vec<u8> {
        self.hdu(self.header.to_bytes())
    }

    /// The cutout as an IMAGE extension named `extname`.
    pub fn extension_hdu(&self, extname: &str) -> Vec<u8> {
        self.hdu(extension_header(&self.header, extname).to_bytes())
    }

    /// A header's bytes followed by the pixels, big-endian float32, padded to a block.
    fn hdu(&self, mut out: Vec<u8>) -> Vec<u8> {
        out.reserve(self.data.len() * 4 + BLOCK_LEN);
        for v in &self.data {
            out.extend_from_slice(&v.to_be_bytes());
        }
        // FITS 4.0 §3.3.2: the data unit is padded with zeros to a whole block.
        out.resize(out.len().div_ceil(BLOCK_LEN) * BLOCK_LEN, 0);
        out
    }
}

/// A primary header as an IMAGE extension's (FITS 4.0 §7.1.1: XTENSION first, PCOUNT and
/// GCOUNT after the last NAXISn).
fn extension_header(primary: &Header, extname: &str) -> Header {
    let mut h = primary.clone();
    h.remove("SIMPLE");
    h.remove("EXTEND");
    h.insert(
        0,
        Card::new("XTENSION", Value::String("IMAGE".into()), "image extension"),
    );
    let last_axis = format!("NAXIS{}", h.integer("NAXIS").unwrap_or(2));
    h.set("PCOUNT", Value::Integer(0), Some(&last_axis));
    h.set("GCOUNT", Value::Integer(1), Some("PCOUNT"));
    h.remove("EXTNAME");
    h.set("EXTNAME", Value::String(extname.into()), Some("GCOUNT"));
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_continue_and_read_back() {
        let did = format!(
            "ivo://insitu/v?MER/{}/it's-{}.fits",
            "a".repeat(60),
            "b".repeat(70)
        );
        let card = string_card("INTILE1", &did);
        assert_eq!(card.image.len() % 80, 0);
        assert!(card.image.len() > 80);
        let mut bytes = card.image.clone().into_bytes();
        bytes.extend_from_slice(format!("{:80}", "END").as_bytes());
        let (h, _) = Header::parse_cards(&bytes).unwrap();
        assert_eq!(h.string("INTILE1"), Some(did.as_str()));
        // Short strings stay on one card; non-ASCII is percent-encoded.
        let card = string_card("INTILE2", "v/é%.fits");
        assert_eq!(card.image.len(), 80);
        assert_eq!(card.value, Some(Value::String("v/%C3%A9%25.fits".into())));
        // A doubled quote is never split across cards.
        for n in 60..75 {
            let text = format!("{}'{}", "x".repeat(n), "y".repeat(80));
            let mut bytes = string_card("K", &text).image.into_bytes();
            bytes.extend_from_slice(format!("{:80}", "END").as_bytes());
            let (h, _) = Header::parse_cards(&bytes).unwrap();
            assert_eq!(h.string("K"), Some(text.as_str()), "{n}");
        }
    }

    #[test]
    fn extension_headers_keep_the_mandatory_order() {
        let primary = Header::from_card_lines(
            "SIMPLE  = T\nBITPIX  = -32\nNAXIS   = 2\nNAXIS1  = 3\nNAXIS2  = 2\nEXTEND  = T\n\
             EXTNAME = 'SCI'\nCRPIX1  = 1.0\nEND",
        )
        .unwrap();
        let h = extension_header(&primary, "VIS");
        let keys: Vec<&str> = h.cards().iter().map(|c| c.keyword.as_str()).collect();
        assert_eq!(
            keys,
            [
                "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "EXTNAME",
                "CRPIX1"
            ]
        );
        assert_eq!(h.string("EXTNAME"), Some("VIS"));
    }

    #[test]
    fn positions_are_checked_and_wrapped() {
        assert_eq!(checked_position(-10.0, 5.0), Ok((350.0, 5.0)));
        assert_eq!(checked_position(360.0, -90.0), Ok((0.0, -90.0)));
        for (ra, dec) in [(f64::NAN, 0.0), (0.0, 90.5), (f64::INFINITY, 0.0)] {
            assert!(matches!(
                checked_position(ra, dec),
                Err(PositionError::BadParameter(_))
            ));
        }
    }
}
