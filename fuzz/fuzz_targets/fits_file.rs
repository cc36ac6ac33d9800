//! Fuzzes the FITS header parser and HDU layout scan: any bytes must give Ok or Err, never a
//! panic. Run with `cargo fuzz run fits_file` from `fuzz/` (nightly toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hdus) = insitu_engine::fits::layout::scan(data) {
        for hdu in hdus {
            let _ = insitu_engine::fits::layout::axes(&hdu.header);
        }
    }
});
