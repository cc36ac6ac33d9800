// Shared by every tensor kernel (prepended to each by gpu.rs): NaN and infinity told apart by
// their bits, since WGSL lets compilers assume arithmetic never sees them.

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}
