//! insitu-server: the `insitu` binary and its HTTP services.
//!
//! `insitu serve` ([`serve_command`], configured by [`serve_config`]) answers IVOA TAP 1.1
//! ([`tap`]: sync queries, async UWS jobs persisted on disk ([`uws`]), uploads, VOSI
//! ([`vosi`])) with VOTable in and out ([`votable`]), DALI parameters and errors ([`dali`]) and
//! Prometheus metrics ([`metrics`]); with no table it serves the demo tables ([`demo_tables`]).
//! It serves the FITS images of read-only data volumes ([`volumes`]: tile index, ObsCore,
//! `/volumes`) as position-first cutouts stitched across tiles (the engine's
//! [`position_cutout`], [`cutout_service`]), previews ([`preview`]) and bulk cutout jobs ([`bulk_jobs`]).
//! The command line also holds `insitu cutout` (one cutout or bulk cutouts), `insitu demo`
//! (a Euclid-MER-like mosaic, cut in bulk), `insitu preview` (a PNG or JPEG quick look,
//! grey or an RGB composite: [`preview_command`]) and `insitu query` (one ADQL query over
//! local files). [`soda`] cuts the volumes' images by dataset (IVOA SODA 1.0, DataLink 1.1
//! and the Euclid archive's cutout form); [`tensors`] serves ML-ready `[N, C, H, W]` tensors of
//! catalogue positions through `insitu-gpu`, streamed as `.npy`, safetensors or Arrow IPC
//! ([`tensor_format`]). With a `[launcher]` configuration it mounts the datalab launcher of
//! `insitu-launcher` (its administration: [`launcher_command`]; `insitu k8s render`:
//! [`k8s_command`]). The FITS work lives in `insitu-engine`, ADQL in `insitu-adql`.
//!
//! Main entry points: [`cli::Cli`] and [`cli::run`]; [`serve_command::app`] for the router.
#![forbid(unsafe_code)]

pub mod bulk_jobs;
pub mod cli;
pub mod cutout_command;
pub mod cutout_service;
pub mod dali;
pub mod demo;
pub mod demo_tables;
pub mod file_stream;
pub mod k8s_command;
pub mod launcher_command;
pub mod metrics;
pub mod preview;
pub mod preview_command;
pub mod query_command;
pub mod serve_command;
pub mod serve_config;
pub mod soda;
pub mod tap;
pub mod tensor_format;
pub mod tensors;
pub mod uws;
pub mod volumes;
pub mod vosi;
pub mod votable;

/// Position-first cutouts live in the engine, beside the volumes' tiles they cut.
pub use insitu_engine::position_cutout;
