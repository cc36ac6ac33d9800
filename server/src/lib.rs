//! insitu-server: the `insitu` command line, and (next) the HTTP services.
//!
//! Today it holds the cutout command (`insitu cutout`: one cutout by sky or pixel position,
//! or bulk cutouts from a catalogue), the demo (`insitu demo`: generates a Euclid-MER-like
//! mosaic and a catalogue, then cuts it) and `insitu query` (one ADQL query over tables given
//! on the command line). The TAP, SODA, tensor and datalab services of the
//! later issues belong here too; the FITS work itself lives in `insitu-engine`.
//!
//! Main entry points: [`cli::Cli`] and [`cli::run`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod cutout_command;
pub mod demo;
pub mod query_command;
pub mod votable;
