// Scales each resampled value with its plane's limits and a stretch, as astropy's
// ImageNormalize(clip=True) (stretch.rs `apply` is the reference), then replaces what is not
// finite by `fill`. In place, one invocation a value.

struct Params {
    plane_len: u32,
    // 0: none (fill only), 1: linear, 2: sqrt, 3: log, 4: asinh
    stretch: u32,
    a: f32,
    // ln(a + 1) for log, asinh(1 / a) for asinh, computed on the host as the CPU does
    norm: f32,
    fill: f32,
    total: u32,
    row: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> values: array<f32>;
@group(0) @binding(1) var<storage, read> limits: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> params: Params;

// ln(1 + u), accurate near u = 0 (Goldberg's correction; WGSL has no log1p).
fn log1p(u: f32) -> f32 {
    let w = 1.0 + u;
    if w == 1.0 {
        return u;
    }
    return log(w) * (u / (w - 1.0));
}

@compute @workgroup_size(256, 1, 1)
fn scale(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * params.row;
    if i >= params.total {
        return;
    }
    let v = values[i];
    if !is_finite(v) {
        values[i] = params.fill;
        return;
    }
    if params.stretch == 0u {
        return;
    }
    let lim = limits[i / params.plane_len];
    if !is_finite(lim.x) || !is_finite(lim.y) {
        values[i] = params.fill;
        return;
    }
    let range = lim.y - lim.x;
    let shifted = v - lim.x;
    let x = clamp(select(shifted, shifted / range, range != 0.0), 0.0, 1.0);
    var y = x;
    switch params.stretch {
        case 2u: { y = sqrt(x); }
        case 3u: { y = log1p(params.a * x) / params.norm; }
        case 4u: { y = asinh(x / params.a) / params.norm; }
        default: {}
    }
    values[i] = y;
}
