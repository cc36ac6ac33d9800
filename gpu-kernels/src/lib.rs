//! insitu-gpu: turns batches of cutouts into ML-ready tensors.
//!
//! Its one job: wgpu compute kernels (WGSL files beside thin host modules) that resample
//! variable-size cutouts to a fixed size, stretch them (linear, log, sqrt, asinh with
//! percentile clipping) and stack channels into `[N, C, H, W]` float32, each with a
//! plain-Rust CPU reference that is the test oracle and the fallback when no adapter
//! exists. Not built yet: this crate only marks its place in the layout (see the project's
//! tensor issue).
