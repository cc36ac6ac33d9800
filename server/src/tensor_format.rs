//! The encodings `/tensors` streams a `[N, C, H, W]` float32 tensor in, a header first and then
//! one chunk per batch of rows, so nothing waits for the whole tensor: NumPy `.npy`,
//! safetensors (one tensor, `images`, with the bands in its metadata), and an Arrow IPC stream
//! of one record batch per batch of rows (`row`: the catalogue row; `tensor`: Arrow's canonical
//! `arrow.fixed_shape_tensor` extension over `FixedSizeList<Float32>[C·H·W]`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use insitu_adql::arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt64Array,
};
use insitu_adql::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use insitu_adql::arrow::ipc::writer::StreamWriter;

/// Which encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorFormat {
    Npy,
    Safetensors,
    Arrow,
}

impl TensorFormat {
    /// `npy`, `safetensors` or `arrow` (also their media types), any case.
    pub fn parse(text: &str) -> Result<TensorFormat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "npy" | "application/x-npy" => Ok(TensorFormat::Npy),
            "safetensors" => Ok(TensorFormat::Safetensors),
            "arrow" | "arrow-ipc" | "application/vnd.apache.arrow.stream" => {
                Ok(TensorFormat::Arrow)
            }
            other => Err(format!("FORMAT {other:?} is not npy, safetensors or arrow")),
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            TensorFormat::Npy => "application/x-npy",
            TensorFormat::Safetensors => "application/octet-stream",
            TensorFormat::Arrow => "application/vnd.apache.arrow.stream",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            TensorFormat::Npy => "npy",
            TensorFormat::Safetensors => "safetensors",
            TensorFormat::Arrow => "arrows",
        }
    }
}

/// Turns batches of a tensor of known shape into the bytes of one encoding.
pub enum Encoder {
    /// The values' own bytes; their memory comes back to `spare` once sent.
    Raw { spare: Arc<Spare> },
    Arrow {
        writer: Box<StreamWriter<Vec<u8>>>,
        schema: SchemaRef,
        item: i32,
        next_row: u64,
    },
}

/// Buffers of batches already sent, for the next batches to be made in: tens of MiB each,
/// which, freshly allocated, cost a page fault and a page of zeros every 4 KiB.
#[derive(Default)]
pub struct Spare(Mutex<Vec<Vec<f32>>>);

/// As many buffers as can be in flight (the channel's two batches, the one being sent, the
/// one being made): more would only hold memory.
const SPARE_BUFFERS: usize = 4;

impl Spare {
    fn put(&self, buffer: Vec<f32>) {
        if let Ok(mut spare) = self.0.lock() {
            if spare.len() < SPARE_BUFFERS {
                spare.push(buffer);
            }
        }
    }

    fn take(&self) -> Vec<f32> {
        self.0
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_default()
    }
}

impl Encoder {
    fn raw() -> Encoder {
        Encoder::Raw {
            spare: Arc::default(),
        }
    }

    /// A buffer to make the next batch's values in: one a sent batch left, or a new one.
    pub fn buffer(&self) -> Vec<f32> {
        match self {
            Encoder::Raw { spare } => spare.take(),
            Encoder::Arrow { .. } => Vec::new(),
        }
    }

    /// The encoder and the header bytes of a `shape` tensor whose channels are `bands`.
    pub fn start(
        format: TensorFormat,
        shape: [usize; 4],
        bands: &[String],
    ) -> Result<(Encoder, Bytes), String> {
        match format {
            TensorFormat::Npy => Ok((Encoder::raw(), Bytes::from(npy_header(&shape)))),
            TensorFormat::Safetensors => Ok((
                Encoder::raw(),
                Bytes::from(safetensors_header(shape, bands)),
            )),
            TensorFormat::Arrow => {
                let [_, c, h, w] = shape;
                let item = i32::try_from(c * h * w)
                    .map_err(|_| "the tensor's items are too large for Arrow")?;
                let metadata = HashMap::from([
                    (
                        "ARROW:extension:name".to_string(),
                        "arrow.fixed_shape_tensor".to_string(),
                    ),
                    (
                        "ARROW:extension:metadata".to_string(),
                        serde_json::json!({ "shape": [c, h, w], "dim_names": ["C", "H", "W"] })
                            .to_string(),
                    ),
                ]);
                let values = Arc::new(Field::new("item", DataType::Float32, true));
                let schema = Arc::new(
                    Schema::new(vec![
                        Field::new("row", DataType::UInt64, false),
                        Field::new("tensor", DataType::FixedSizeList(values, item), false)
                            .with_metadata(metadata),
                    ])
                    .with_metadata(HashMap::from([("bands".to_string(), bands.join(","))])),
                );
                let mut writer =
                    StreamWriter::try_new(Vec::new(), &schema).map_err(|e| e.to_string())?;
                let header = Bytes::from(std::mem::take(writer.get_mut()));
                Ok((
                    Encoder::Arrow {
                        writer: Box::new(writer),
                        schema,
                        item,
                        next_row: 0,
                    },
                    header,
                ))
            }
        }
    }

    /// The bytes of the next `rows` items, `values` holding them in C order.
    pub fn batch(&mut self, values: Vec<f32>, rows: usize) -> Result<Bytes, String> {
        match self {
            Encoder::Raw { spare } => Ok(little_endian_bytes(values, spare)),
            Encoder::Arrow {
                writer,
                schema,
                item,
                next_row,
            } => {
                let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(
                    *next_row..*next_row + rows as u64,
                ));
                *next_row += rows as u64;
                let field = Arc::new(Field::new("item", DataType::Float32, true));
                let list = FixedSizeListArray::try_new(
                    field,
                    *item,
                    Arc::new(Float32Array::from(values)),
                    None,
                )
                .map_err(|e| e.to_string())?;
                let batch = RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(list)])
                    .map_err(|e| e.to_string())?;
                writer.write(&batch).map_err(|e| e.to_string())?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
        }
    }

    /// What closes the stream (Arrow's end-of-stream marker), if anything.
    pub fn finish(self) -> Result<Option<Bytes>, String> {
        match self {
            Encoder::Raw { .. } => Ok(None),
            Encoder::Arrow { mut writer, .. } => {
                writer.finish().map_err(|e| e.to_string())?;
                Ok(Some(Bytes::from(std::mem::take(writer.get_mut()))))
            }
        }
    }
}

/// float32 values as little-endian bytes: on a little-endian machine their own memory, handed
/// to the response without a copy (gigabytes for a large catalogue); elsewhere swapped once.
fn little_endian_bytes(values: Vec<f32>, spare: &Arc<Spare>) -> Bytes {
    struct Owned(Vec<f32>, Arc<Spare>);
    impl AsRef<[u8]> for Owned {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }
    impl Drop for Owned {
        fn drop(&mut self) {
            self.1.put(std::mem::take(&mut self.0));
        }
    }
    if cfg!(target_endian = "little") {
        Bytes::from_owner(Owned(values, spare.clone()))
    } else {
        let bytes = values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>();
        spare.put(values);
        Bytes::from(bytes)
    }
}

/// The NumPy 1.0 header of a little-endian float32 C-order array of `shape`.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ")
    );
    // Magic, version, 2-byte length, the dict and '\n', padded to 64 bytes (NEP 1).
    let len = (10 + dict.len() + 1).div_ceil(64) * 64 - 10;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(10 + len - 1, b' ');
    out.push(b'\n');
    out
}

/// The safetensors header of one F32 tensor `images` of `shape`: its length (u64 LE), then
/// the JSON, padded with spaces to 8 bytes so the data is aligned.
fn safetensors_header(shape: [usize; 4], bands: &[String]) -> Vec<u8> {
    let bytes = shape.iter().product::<usize>() * 4;
    let json = serde_json::json!({
        "images": { "dtype": "F32", "shape": shape, "data_offsets": [0, bytes] },
        "__metadata__": { "bands": bands.join(","), "layout": "NCHW" },
    })
    .to_string();
    let mut text = json.into_bytes();
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use insitu_adql::arrow::array::{Array, AsArray};
    use insitu_adql::arrow::ipc::reader::StreamReader;

    #[test]
    fn raw_batches_are_little_endian_float32() {
        let mut encoder = Encoder::start(TensorFormat::Npy, [1, 1, 1, 3], &[])
            .unwrap()
            .0;
        let bytes = encoder.batch(vec![1.0, -2.5, f32::NAN], 1).unwrap();
        let back: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!((back[0], back[1]), (1.0, -2.5));
        assert!(back[2].is_nan() && bytes.len() == 12);
    }

    #[test]
    fn npy_header_is_aligned_and_names_the_shape() {
        let h = npy_header(&[3, 2, 8, 4]);
        assert_eq!(h.len() % 64, 0);
        assert!(h.starts_with(b"\x93NUMPY\x01\x00"));
        let text = String::from_utf8_lossy(&h);
        assert!(text.contains("'shape': (3, 2, 8, 4)"), "{text}");
        assert_eq!(h.last(), Some(&b'\n'));
    }

    #[test]
    fn safetensors_header_is_aligned_json() {
        let bands = ["VIS".to_string(), "NIR_H".to_string()];
        let h = safetensors_header([5, 2, 3, 4], &bands);
        let len = u64::from_le_bytes(h[..8].try_into().unwrap()) as usize;
        assert_eq!((len % 8, h.len()), (0, 8 + len));
        let json: serde_json::Value = serde_json::from_slice(&h[8..]).unwrap();
        assert_eq!(json["images"]["shape"], serde_json::json!([5, 2, 3, 4]));
        assert_eq!(json["images"]["data_offsets"], serde_json::json!([0, 480]));
        assert_eq!(json["__metadata__"]["bands"], "VIS,NIR_H");
    }

    #[test]
    fn arrow_stream_reads_back_batch_by_batch() {
        let bands = ["VIS".to_string()];
        let (mut encoder, mut bytes) = {
            let (e, h) = Encoder::start(TensorFormat::Arrow, [3, 1, 2, 2], &bands).unwrap();
            (e, h.to_vec())
        };
        bytes.extend_from_slice(
            &encoder
                .batch((0..8).map(|v| v as f32).collect(), 2)
                .unwrap(),
        );
        bytes.extend_from_slice(&encoder.batch(vec![9.0; 4], 1).unwrap());
        bytes.extend_from_slice(&encoder.finish().unwrap().unwrap());
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let field = reader.schema().field(1).clone();
        assert_eq!(
            field
                .metadata()
                .get("ARROW:extension:name")
                .map(String::as_str),
            Some("arrow.fixed_shape_tensor")
        );
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        let rows = batches[1]
            .column(0)
            .as_primitive::<insitu_adql::arrow::datatypes::UInt64Type>();
        assert_eq!(rows.value(0), 2);
        let list = batches[0].column(1).as_fixed_size_list();
        let second = list.value(1);
        let values = second.as_primitive::<insitu_adql::arrow::datatypes::Float32Type>();
        assert_eq!(values.values().to_vec(), [4.0, 5.0, 6.0, 7.0]);
        assert_eq!(list.len(), 2);
    }
}
