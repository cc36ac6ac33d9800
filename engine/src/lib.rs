//! insitu-engine: FITS files read in place.
//!
//! Opens FITS files with a memory map (never reading a data unit eagerly), parses every HDU
//! header, exposes images of every BITPIX with their scaling, converts between sky and pixel
//! coordinates ([`wcs::Wcs`]) and cuts images exactly as astropy's `Cutout2D` does
//! ([`cutout`]), one at a time or in bulk from a catalogue ([`bulk`]), or across the edges of
//! adjacent tiles by nearest pixel ([`stitch`]). Tile-compressed and gzipped files go through
//! cfitsio. Folders of mosaic tiles are scanned into [`volume::Tiles`], which finds the tiles
//! holding a sky position: [`position_cutout`] cuts there in any band, stitching across tile
//! edges, and [`tensor_cuts`] plans and cuts a whole catalogue's planes for tensors, batch by
//! batch, the next batch cut while the caller's kernels turn this one into a tensor.
//!
//! It does not serve HTTP, plan queries or resample: those are `insitu-server`,
//! `insitu-adql` and `insitu-gpu` (whose kernels [`tensor_cuts`] is handed as a closure, so
//! that the engine stays free of wgpu).
//!
//! Main entry types: [`fits::FitsFile`], [`fits::Image`], [`wcs::Wcs`], [`cutout::CutoutRequest`].

pub mod bulk;
mod byteswap;
pub mod catalog;
pub mod cutout;
pub mod error;
pub mod fits;
mod mmap;
pub mod npy;
pub mod partial_file;
pub mod position_cutout;
pub mod stitch;
pub mod tensor_cuts;
pub mod volume;
pub mod wcs;

pub use error::{Error, Result};
