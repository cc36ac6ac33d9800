//! The CPU path from planes to a tensor: the oracle of the GPU path, and what runs when there
//! is no GPU adapter. Each plane is resampled ([`crate::resample`]), given its limits and
//! stretched ([`crate::stretch`]) and filled, planes in parallel (rayon).

use rayon::prelude::*;

use crate::recipe::{Batch, Recipe, Tensor};
use crate::resample::{flux_factor, resample, BatchTables};
use crate::{stretch, Error, Result};

/// The `[N, C, H, W]` tensor of `batch` made as `recipe` says, on the CPU.
pub fn tensor(batch: &Batch<'_>, recipe: &Recipe) -> Result<Tensor> {
    tensor_in(batch, recipe, Vec::new())
}

/// [`tensor`], made in `buffer`'s memory (its length and values do not matter: every value is
/// written), so that a caller making many tensors reuses one allocation rather than faulting
/// in fresh pages for each.
pub fn tensor_in(batch: &Batch<'_>, recipe: &Recipe, buffer: Vec<f32>) -> Result<Tensor> {
    let mut data = buffer;
    data.resize(batch.planes.len() * recipe.width * recipe.height, 0.0);
    tensor_into(batch, recipe, &mut data)?;
    Ok(Tensor {
        shape: [batch.items, batch.channels, recipe.height, recipe.width],
        data,
    })
}

/// [`tensor`]'s values written into `out`, which holds exactly the tensor (C order): for
/// callers that own the memory, such as a numpy array.
pub fn tensor_into(batch: &Batch<'_>, recipe: &Recipe, out: &mut [f32]) -> Result<()> {
    recipe.check()?;
    batch.check()?;
    let (out_w, out_h) = (recipe.width, recipe.height);
    let plane_len = out_w * out_h;
    check_len(batch, recipe, out.len())?;
    let tables = BatchTables::new(
        recipe.filter,
        batch.planes.iter().map(|p| (p.width, p.height)),
        out_w,
        out_h,
    );
    out.par_chunks_mut(plane_len.max(1))
        .zip(&batch.planes)
        .zip(&tables.of_plane)
        .for_each_init(Vec::new, |scratch, ((out, plane), &[h, v])| {
            let flux = if recipe.flux_conserving {
                flux_factor(plane.width, plane.height, out_w, out_h)
            } else {
                1.0
            };
            let axes = (&*tables.tables[h], &*tables.tables[v]);
            match recipe.scaling {
                None => resample(plane.data, plane.width, axes, flux, out),
                // Resampled into the thread's scratch plane, stretched from there into `out`.
                Some(scaling) => {
                    scratch.resize(out.len(), 0.0);
                    resample(plane.data, plane.width, axes, flux, scratch);
                    match stretch::limits(scratch, &scaling.interval) {
                        Some(limits) => stretch::apply(scratch, limits, &scaling.stretch, out),
                        None => out.fill(f32::NAN),
                    }
                }
            }
            fill_non_finite(out, recipe.fill);
        });
    Ok(())
}

/// An error unless `len` values are the batch's tensor.
pub(crate) fn check_len(batch: &Batch<'_>, recipe: &Recipe, len: usize) -> Result<()> {
    let want = batch.planes.len() * recipe.width * recipe.height;
    if len != want {
        return Err(Error::Input(format!(
            "the output holds {len} values; the {}×{}×{}×{} tensor needs {want}",
            batch.items, batch.channels, recipe.height, recipe.width
        )));
    }
    Ok(())
}

/// Replaces NaN and ±inf by `fill`: a select per value, which vectorises.
fn fill_non_finite(values: &mut [f32], fill: f32) {
    for v in values {
        *v = if v.is_finite() { *v } else { fill };
    }
}
