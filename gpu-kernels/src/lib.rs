//! insitu-gpu: turns cutouts into display images and ML-ready tensors.
//!
//! Its one job: wgpu compute kernels (WGSL files beside thin host modules) that resample
//! variable-size cutouts to a fixed size, stretch them (linear, log, sqrt, asinh with
//! percentile or zscale limits) and stack channels into `[N, C, H, W]` float32, each with a
//! plain-Rust CPU reference that is the test oracle and the fallback when no adapter exists.
//! It does not read FITS (that is `insitu-engine`) nor encode images (the server's previews).
//!
//! Built so far: the CPU reference of the stretch step, [`stretch`] ([`stretch::Stretch`],
//! [`stretch::Interval`], [`stretch::limits`], [`stretch::apply`]), astropy.visualization's
//! definitions, which the server's PNG/JPEG previews use. The wgpu kernels come next (see the
//! project's tensor issue).

pub mod stretch;
