//! FITS files in place: headers, HDU layout, image data units, and cfitsio for compressed data.

pub mod bintable;
mod bintable_arrow;
mod bintable_write;
mod cfitsio;
mod file;
pub mod header;
mod image;
pub mod layout;

pub use bintable_write::write_bintable;
pub use file::FitsFile;
pub use header::{Card, Header, Value};
pub use image::{physical_f32, Bitpix, Image, Scaling};
