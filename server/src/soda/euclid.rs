//! The Euclid science archive's cutout form, `/sas-cutout/cutout`, as `astroquery.esa.euclid`
//! `Euclid.get_cutout` sends it (a form POST of `TAPCLIENT`, `FILEPATH`, `COLLECTION`, `OBSID`
//! and `POS=CIRCLE,ra,dec,radius`, degrees), so Euclid notebooks reach insitu by changing only
//! the archive's base URL. The answer is the FITS cutout itself, as SODA's.
//!
//! `FILEPATH` is `datalabs_path/file_name` from a `mosaic_product` table (that is
//! `<volume>/<path>`), or a dataset id; a path as the Euclid archive writes it (its own
//! folders) is matched by its file name when exactly one scanned image has that name.
//! `COLLECTION`, `OBSID` and `TAPCLIENT` are logged and otherwise ignored. The radius is
//! capped at 0.5°, as the archive caps it.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::params::{parse_pos, Filter};
use super::region::Region;
use super::{answer, SodaError, SodaParams, SodaState};
use crate::volumes::{TileId, Tiles};

/// The largest radius the Euclid cutout service takes, degrees.
pub const MAX_RADIUS: f64 = 0.5;

/// The image a `FILEPATH` names: a dataset id (`<volume>/<path>` or a DID), else the one
/// scanned image with that file name.
pub fn file_path_dataset(tiles: &Tiles, file_path: &str) -> Result<TileId, SodaError> {
    if let Ok(tile) = tiles.dataset(file_path.trim()) {
        return Ok(tile);
    }
    let name = file_path.trim().rsplit('/').next().unwrap_or("");
    let mut found = tiles.volumes().iter().enumerate().flat_map(|(v, volume)| {
        volume
            .images
            .iter()
            .enumerate()
            .filter(move |(_, row)| !name.is_empty() && row.file_name() == name)
            .map(move |(image, _)| TileId { volume: v, image })
    });
    match (found.next(), found.next()) {
        (Some(tile), None) => Ok(tile),
        (Some(_), Some(_)) => Err(SodaError::Usage(format!(
            "several images are called {name}: give FILEPATH as datalabs_path/file_name from \
             the volume's mosaic_product table"
        ))),
        // The path itself is not echoed: it may be one of the archive's own.
        (None, _) => Err(SodaError::NotFound(format!(
            "FILEPATH (file {name:?}) names no image here: give datalabs_path/file_name from \
             a mosaic_product table"
        ))),
    }
}

/// `POS=CIRCLE,ra,dec,radius` (commas or blanks), radius in (0, 0.5] degrees.
pub fn parse_euclid_pos(text: &str) -> Result<Region, SodaError> {
    let region = parse_pos(&text.replace(',', " "))
        .map_err(|e| SodaError::Usage(format!("POS={text}: {e}")))?;
    match region {
        Region::Circle { radius, .. } if radius <= MAX_RADIUS => Ok(region),
        Region::Circle { radius, .. } => Err(SodaError::Usage(format!(
            "POS={text}: the radius {radius}° is larger than the {MAX_RADIUS}° the cutout \
             service allows"
        ))),
        _ => Err(SodaError::Usage(format!(
            "POS={text}: give CIRCLE,ra,dec,radius (degrees)"
        ))),
    }
}

pub async fn cutout(
    State(state): State<Arc<SodaState>>,
    SodaParams(params): SodaParams,
) -> Response {
    let Some(file_path) = params.get("FILEPATH").filter(|f| !f.trim().is_empty()) else {
        return SodaError::Usage(
            "FILEPATH is missing: give datalabs_path/file_name from a mosaic_product table".into(),
        )
        .into_response();
    };
    let Some(pos) = params.get("POS") else {
        return SodaError::Usage("POS is missing: give CIRCLE,ra,dec,radius (degrees)".into())
            .into_response();
    };
    let region = match parse_euclid_pos(pos) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    tracing::debug!(
        "Euclid cutout for client {:?}: FILEPATH={file_path} COLLECTION={:?} OBSID={:?}",
        params.get("TAPCLIENT"),
        params.get("COLLECTION"),
        params.get("OBSID"),
    );
    let id = match file_path_dataset(&state.tiles, file_path) {
        Ok(tile) => state.tiles.did(tile),
        Err(e) => return e.into_response(),
    };
    answer(state.tiles.clone(), id, Filter::Region(region)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn astroquery_positions() {
        assert_eq!(
            parse_euclid_pos("CIRCLE,267.38,65.5,0.001").unwrap(),
            Region::Circle {
                ra: 267.38,
                dec: 65.5,
                radius: 0.001
            }
        );
        assert!(parse_euclid_pos("CIRCLE,267.38,65.5,0.6").is_err());
        assert!(parse_euclid_pos("RANGE,1,2,3,4").is_err());
        assert!(parse_euclid_pos("CIRCLE,1,2").is_err());
    }
}
