//! Writing a float32 `.npy` stack (NumPy format 1.0) item by item, from many threads at once.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::partial_file::PartialFile;
use crate::{Error, Result};

/// A `.npy` file of little-endian float32 with a fixed shape, filled item by item (an item is
/// one index of the first axis), complete once [`finish`]ed.
///
/// [`finish`]: NpyWriter::finish
pub struct NpyWriter {
    file: PartialFile,
    data_offset: u64,
    item_len: usize,
}

impl NpyWriter {
    pub fn create(path: &Path, shape: &[usize]) -> Result<NpyWriter> {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let tuple = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
        // Magic (6) + version (2) + header length (2) + dict + '\n', padded to 64 bytes.
        let unpadded = 10 + dict.len() + 1;
        let header_len = unpadded.div_ceil(64) * 64 - 10;
        let mut header = Vec::with_capacity(10 + header_len);
        header.extend_from_slice(b"\x93NUMPY\x01\x00");
        let len16 =
            u16::try_from(header_len).map_err(|_| Error::Cutout("npy header too long".into()))?;
        header.extend_from_slice(&len16.to_le_bytes());
        header.extend_from_slice(dict.as_bytes());
        header.resize(10 + header_len - 1, b' ');
        header.push(b'\n');

        let file = PartialFile::create(path)?;
        file.file()
            .write_all_at(&header, 0)
            .map_err(|e| file.error(e))?;
        let item_len = shape.iter().skip(1).product::<usize>();
        let total = header.len() as u64 + (shape.iter().product::<usize>() * 4) as u64;
        file.file().set_len(total).map_err(|e| file.error(e))?;
        Ok(NpyWriter {
            file,
            data_offset: header.len() as u64,
            item_len,
        })
    }

    /// Writes item `index` (`values.len()` must be the product of the trailing axes);
    /// `scratch` is a buffer the caller reuses between calls.
    pub fn write_item(&self, index: usize, values: &[f32], scratch: &mut Vec<u8>) -> Result<()> {
        debug_assert_eq!(values.len(), self.item_len);
        scratch.clear();
        scratch.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let offset = self.data_offset + (index * self.item_len * 4) as u64;
        self.file
            .file()
            .write_all_at(scratch, offset)
            .map_err(|e| self.file.error(e))
    }

    /// Moves the finished stack to its final name.
    pub fn finish(self) -> Result<()> {
        self.file.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_lands_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let w = NpyWriter::create(&path, &[2, 1, 3]).unwrap();
        w.write_item(1, &[4.0, 5.0, 6.0], &mut Vec::new()).unwrap();
        w.write_item(0, &[1.0, 2.0, 3.0], &mut Vec::new()).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 1, 3)"), "{header}");
        let values: Vec<f32> = bytes[10 + header_len..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(!dir.path().join("x.npy.partial").exists());
    }
}
