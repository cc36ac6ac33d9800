//! insitu-gpu: turns cutouts into display images and ML-ready tensors.
//!
//! Its one job: planes of variable size (cutouts of each item in each band) become one
//! `[N, C, H, W]` float32 [`Tensor`]: each plane resampled to `H × W` ([`resample`]: bilinear or
//! Lanczos-3, antialiased when shrinking, optionally flux-conserving), given display limits
//! from its own values (min/max or percentiles) and stretched (linear, sqrt, log, asinh, as
//! astropy.visualization defines them: [`stretch`]), and non-finite values filled, as a
//! [`Recipe`] says. Two paths make the same tensor: [`Gpu::tensor`] runs WGSL compute kernels
//! (`resample.wgsl`, `limits.wgsl`, `stretch.wgsl`) through wgpu, and [`reference::tensor`]
//! is the plain-Rust reference they are tested against, which also runs when no adapter is
//! found, and in place of a software adapter unless asked ([`Tensorizer`] and its [`Device`]
//! choose, and say so once in the log).
//!
//! It does not read FITS (that is `insitu-engine`) nor encode images (the server's previews,
//! which use [`stretch`] directly).

pub mod gpu;
pub mod recipe;
pub mod reference;
pub mod resample;
pub mod stretch;

pub use gpu::{Device, Gpu, Tensorizer};
pub use recipe::{Batch, Plane, Recipe, Scaling, Tensor};
pub use resample::Filter;

/// What can go wrong making a tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The recipe cannot be followed (zero size, unknown interval, bad parameter).
    #[error("bad recipe: {0}")]
    Recipe(String),
    /// The planes do not fit the batch or their sizes.
    #[error("bad input: {0}")]
    Input(String),
    /// No GPU adapter (or device) could be had.
    #[error("no GPU: {0}")]
    NoAdapter(String),
    /// The GPU failed while running a kernel.
    #[error("GPU error: {0}")]
    Gpu(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
