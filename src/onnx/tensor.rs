//! ONNX `TensorProto` ⇄ host tensors (f32 or i64), with every size checked before anything
//! is allocated so that a hostile file cannot ask for more memory than it holds.

use onnx_ir::TensorProto;

/// Element types of `TensorProto.data_type`.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    pub fn is_float(t: i32) -> bool {
        matches!(t, FLOAT | FLOAT16 | DOUBLE | BFLOAT16)
    }
}

/// Largest tensor Graft reads, in elements (1 G values = 4 GiB of f32).
const MAX_ELEMENTS: usize = 1 << 30;

#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant known at import time: an initializer, a `Constant`, or a value folded from them.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: HostData::F32(data),
        }
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        Self {
            shape,
            data: HostData::I64(data),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, HostData::F32(_))
    }

    /// Values as i64 (floats truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
        }
    }

    /// Values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn to_weights(&self) -> crate::weights::Tensor {
        crate::weights::Tensor {
            shape: self.shape.clone(),
            data: self.to_f32(),
        }
    }

    /// The single value of a scalar or one-element tensor.
    pub fn scalar_f32(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.to_f32()[0])
    }

    /// The single integer of a scalar or one-element tensor.
    pub fn scalar_i64(&self) -> Option<i64> {
        (self.len() == 1).then(|| self.to_i64()[0])
    }
}

fn shape_of(t: &TensorProto) -> Result<(Vec<usize>, usize), String> {
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension {d}"));
        }
        shape.push(usize::try_from(d).map_err(|_| format!("dimension {d} is too large"))?);
    }
    let n = crate::weights::numel(&shape)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    Ok((shape, n))
}

/// Converts a `TensorProto`. External data (weights in a side file) is refused with a message.
pub fn from_proto(t: &TensorProto) -> Result<HostTensor, String> {
    let (shape, n) = shape_of(t)?;
    if t.data_location.value() == 1 || !t.external_data.is_empty() {
        return Err("its data is stored in an external file, which Graft does not read".into());
    }
    let raw = &t.raw_data[..];
    let dt = t.data_type;
    let check = |got: usize| {
        if got == n {
            Ok(())
        } else {
            Err(format!(
                "shape {shape:?} needs {n} values but the tensor holds {got}"
            ))
        }
    };
    // Bytes per element in raw_data.
    let width = match dt {
        dtype::FLOAT | dtype::INT32 | dtype::UINT32 => 4,
        dtype::DOUBLE | dtype::INT64 | dtype::UINT64 => 8,
        dtype::FLOAT16 | dtype::BFLOAT16 | dtype::INT16 | dtype::UINT16 => 2,
        dtype::INT8 | dtype::UINT8 | dtype::BOOL => 1,
        dtype::STRING => return Err("string tensors are not supported".into()),
        other => return Err(format!("element type {other} is not supported")),
    };
    if !raw.is_empty() {
        if !raw.len().is_multiple_of(width) {
            return Err(format!(
                "raw data of {} bytes is not a whole number of elements",
                raw.len()
            ));
        }
        check(raw.len() / width)?;
        let chunks = raw.chunks_exact(width);
        let tensor = match dt {
            dtype::FLOAT => HostTensor::f32(
                shape,
                chunks
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            dtype::DOUBLE => HostTensor::f32(
                shape,
                chunks
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
            ),
            dtype::FLOAT16 => HostTensor::f32(
                shape,
                chunks
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            dtype::BFLOAT16 => HostTensor::f32(
                shape,
                chunks
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            dtype::INT64 | dtype::UINT64 => HostTensor::i64(
                shape,
                chunks
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            dtype::INT32 => HostTensor::i64(
                shape,
                chunks
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            dtype::UINT32 => HostTensor::i64(
                shape,
                chunks
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            dtype::INT16 => HostTensor::i64(
                shape,
                chunks
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            dtype::UINT16 => HostTensor::i64(
                shape,
                chunks
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            dtype::INT8 => HostTensor::i64(shape, chunks.map(|c| c[0] as i8 as i64).collect()),
            _ => HostTensor::i64(shape, chunks.map(|c| c[0] as i64).collect()),
        };
        return Ok(tensor);
    }
    Ok(match dt {
        dtype::FLOAT => {
            check(t.float_data.len())?;
            HostTensor::f32(shape, t.float_data.clone())
        }
        dtype::DOUBLE => {
            check(t.double_data.len())?;
            HostTensor::f32(shape, t.double_data.iter().map(|&x| x as f32).collect())
        }
        dtype::FLOAT16 => {
            check(t.int32_data.len())?;
            HostTensor::f32(
                shape,
                t.int32_data
                    .iter()
                    .map(|&b| half::f16::from_bits(b as u16).to_f32())
                    .collect(),
            )
        }
        dtype::BFLOAT16 => {
            check(t.int32_data.len())?;
            HostTensor::f32(
                shape,
                t.int32_data
                    .iter()
                    .map(|&b| half::bf16::from_bits(b as u16).to_f32())
                    .collect(),
            )
        }
        dtype::INT64 => {
            check(t.int64_data.len())?;
            HostTensor::i64(shape, t.int64_data.clone())
        }
        dtype::UINT32 | dtype::UINT64 => {
            check(t.uint64_data.len())?;
            HostTensor::i64(shape, t.uint64_data.iter().map(|&x| x as i64).collect())
        }
        _ => {
            check(t.int32_data.len())?;
            HostTensor::i64(shape, t.int32_data.iter().map(|&x| x as i64).collect())
        }
    })
}

/// A float tensor as a `TensorProto` (raw little-endian data).
pub fn f32_proto(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_owned();
    t.dims = shape.iter().map(|&d| d as i64).collect();
    t.data_type = dtype::FLOAT;
    let mut raw = Vec::with_capacity(data.len() * 4);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    t.raw_data = raw.into();
    t
}

/// An int64 tensor as a `TensorProto`.
pub fn i64_proto(name: &str, shape: &[usize], data: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_owned();
    t.dims = shape.iter().map(|&d| d as i64).collect();
    t.data_type = dtype::INT64;
    t.int64_data = data.to_vec();
    t
}
