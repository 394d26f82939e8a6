//! NumPy `.npy` files of float32, for `graft infer` and cross-checks with Python.

use npyz::WriterBuilder;
use std::path::Path;

/// Reads a C-order array of float32 (float64 is converted).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| format!("{} is not a .npy file: {e}", path.display()))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(format!(
            "{} is in Fortran order; save it with C order",
            path.display()
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let data = match &dtype {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>().map_err(|e| e.to_string())?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|v| v as f32)
                .collect()
        }
        other => {
            return Err(format!(
                "{} holds {}; Graft reads float32",
                path.display(),
                other.descr()
            ));
        }
    };
    Ok((shape, data))
}

/// Writes a C-order float32 array (atomically).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), String> {
    let mut bytes = Vec::new();
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut bytes)
            .begin_nd()
            .map_err(|e| e.to_string())?;
        w.extend(data.iter().copied()).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    crate::files::write_atomic(path, &bytes)
}
